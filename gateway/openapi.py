"""The OpenAPI 3.1 document served at ``GET /openapi.json``: the exact contract of this gateway.

It is built from what parses and answers requests, never written beside it:

- request schemas from the limits of gateway/parsing.py (one constant each, imported here) and
  from the configuration being served: ``surface`` is an enum of the declared surfaces and each
  surface's ``limit`` has that surface's ``max_limit`` (one ``oneOf`` branch per surface), so the
  document changes when the configuration reloads;
- the characters the backends cannot store (gateway/parsing.py ``STORABLE_PATTERN``) and the
  syntax of events' ``ts`` (``TS_PATTERN``) as patterns; the window of ``ts`` around the
  gateway's clock, which JSON Schema cannot state, in its description and ``x-abgate-window``;
- security and the 401/403/429 answers from whether callers must authenticate;
- response schemas with their required fields from the handlers' bodies, and each problem
  answer's possible ``type``s from the error classes of gateway/errors.py.

tests/gateway/test_contract.py checks that the parser and this schema agree on generated valid
and invalid bodies, and tests/integration/test_schemathesis.py runs schemathesis (every check)
against a live gateway.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from experiments.schema import Surface
from gateway.errors import (
    PROBLEM_BASE,
    BadRequest,
    Forbidden,
    LoggingUnavailable,
    NoAnswer,
    Overloaded,
    PayloadTooLarge,
    ProblemError,
    RateLimited,
    Unauthorized,
    UnknownSurface,
)
from gateway.parsing import (
    EVENT_ID_PATTERN,
    EVENTS_MAX_AGE,
    EVENTS_MAX_AHEAD,
    LIMIT_MAX,
    MAX_EVENTS,
    MAX_EXCLUSIONS,
    MAX_NAME,
    MAX_SURFACE,
    MAX_UNIT_ID,
    STORABLE_PATTERN,
    TS_PATTERN,
)

Schema = dict[str, Any]

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_REQUEST_ID_HEADER = {
    "X-Request-ID": {
        "description": "The caller's X-Request-ID when it is 1-128 printable ASCII characters, "
        "else one the gateway made",
        "required": True,
        "schema": {"type": "string", "minLength": 1, "maxLength": 128},
    }
}
_RETRY_AFTER = {
    "description": "Seconds to wait before retrying",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}


def _nullable(schema: Schema) -> Schema:
    """``schema`` or null: the parser treats null as absent for every optional field."""
    return {"anyOf": [schema, {"type": "null"}]}


def _text(min_len: int, max_len: int | None = None) -> Schema:
    out: Schema = {"type": "string", "minLength": min_len, "pattern": STORABLE_PATTERN}
    if max_len is not None:
        out["maxLength"] = max_len
    return out


def _problem_of(*errors: type[ProblemError]) -> Schema:
    """A problem whose ``type`` and ``status`` are those of one of ``errors``."""
    return {
        "allOf": [
            _PROBLEM_REF,
            {
                "properties": {
                    "type": {"enum": [PROBLEM_BASE + e.type_ for e in errors]},
                    "status": {"enum": sorted({e.status for e in errors})},
                }
            },
        ]
    }


def _problem(
    description: str, *errors: type[ProblemError], headers: Schema | None = None
) -> Schema:
    return {
        "description": description,
        "headers": {**_REQUEST_ID_HEADER, **(headers or {})},
        "content": {"application/problem+json": {"schema": _problem_of(*errors)}},
    }


def _json(description: str, schema: Schema) -> Schema:
    return {
        "description": description,
        "headers": _REQUEST_ID_HEADER,
        "content": {"application/json": {"schema": schema}},
    }


def _object(properties: Schema, required: Iterable[str] | None = None, **extra: Any) -> Schema:
    return {
        "type": "object",
        "required": sorted(properties if required is None else required),
        "properties": properties,
        **extra,
    }


# ``pattern`` constrains the string values only.
_ATTRIBUTE = {"type": ["string", "number", "boolean", "null"], "pattern": STORABLE_PATTERN}


def _recommendation_request(surfaces: list[Surface]) -> Schema:
    """The request body: one branch per declared surface, each with its own ``limit`` bound."""

    def branch(surface: Schema, max_limit: int) -> Schema:
        return {
            "type": "object",
            "required": ["surface", "unit_id"],
            "additionalProperties": False,
            "properties": {
                "surface": surface,
                "unit_id": _text(1, MAX_UNIT_ID),
                "exclude": _nullable(
                    {
                        "type": "array",
                        "items": {"type": "string", "pattern": STORABLE_PATTERN},
                        "maxItems": MAX_EXCLUSIONS,
                    }
                ),
                "limit": _nullable({"type": "integer", "minimum": 1, "maximum": max_limit}),
                "attributes": _nullable(
                    {
                        "type": "object",
                        "propertyNames": {"pattern": STORABLE_PATTERN},
                        "additionalProperties": _ATTRIBUTE,
                    }
                ),
            },
        }

    if not surfaces:  # nothing is servable: any surface is a 404
        return branch(_text(1, MAX_SURFACE), LIMIT_MAX)
    return {
        "oneOf": [branch({"type": "string", "const": s.name}, s.max_limit) for s in surfaces],
        "discriminator": {"propertyName": "surface"},
    }


_EVENT: Schema = {
    "type": "object",
    "required": ["unit_id", "name"],
    "additionalProperties": False,
    "properties": {
        "unit_id": _text(1, MAX_UNIT_ID),
        "name": {**_text(1, MAX_NAME), "examples": ["purchase"]},
        "value": _nullable({"type": "number"}),
        "item_id": _nullable(_text(1, MAX_UNIT_ID)),
        "event_id": _nullable(
            {
                "type": "string",
                "pattern": f"^{EVENT_ID_PATTERN}$",
                "description": "Your id for this event, so that a retry is deduplicated",
            }
        ),
        "ts": _nullable(
            {
                "type": "string",
                "format": "date-time",
                "pattern": f"^{TS_PATTERN}$",
                "description": "RFC 3339 with a time zone (no leap second); omitted: the time "
                f"received. Accepted only from {EVENTS_MAX_AGE.days} days before to "
                f"{EVENTS_MAX_AHEAD.seconds // 3600} hour after the gateway's clock, else 400: "
                "JSON Schema cannot state a window relative to now, x-abgate-window gives it "
                "in seconds.",
                "x-abgate-window": {
                    "maxAgeSeconds": int(EVENTS_MAX_AGE.total_seconds()),
                    "maxAheadSeconds": int(EVENTS_MAX_AHEAD.total_seconds()),
                },
            }
        ),
    },
}

_RECOMMENDATION = _object(
    {
        "request_id": {"type": "string"},
        "surface": {"type": "string"},
        "unit_id": {"type": "string"},
        "experiment": {"type": ["string", "null"]},
        "variant": {"type": ["string", "null"]},
        "model": _object({"name": {"type": "string"}, "version": {"type": "string"}}),
        "items": {
            "type": "array",
            "items": _object({"id": {"type": "string"}, "score": {"type": "number"}}),
        },
        "source": {"type": "string", "enum": ["cache", "db", "fallback"]},
    }
)

_EVENT_RESULTS = _object(
    {
        "accepted": {"type": "integer"},
        "rejected": {"type": "integer"},
        "dropped": {"type": "integer"},
        "results": {
            "type": "array",
            "items": _object(
                {
                    "index": {"type": "integer", "description": "The element's position"},
                    "status": {"type": "string", "enum": ["accepted", "rejected", "dropped"]},
                    "event_id": {
                        "type": "string",
                        "description": "Accepted or dropped: the event's id (given or new)",
                    },
                    "field": {
                        "type": "string",
                        "description": "Rejected: the field at fault, e.g. `[3].ts`",
                    },
                    "detail": {"type": "string", "description": "Rejected: what is wrong"},
                },
                required=["index", "status"],
            ),
        },
    },
    required=["accepted", "rejected", "dropped", "results"],
)

_PROBLEM = _object(
    {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "field": {"type": "string", "description": "The request field at fault"},
    },
    required=["type", "title", "status", "detail", "instance"],
    description="RFC 9457 problem details",
)

_NULLABLE_STRING = {"type": ["string", "null"]}

_SERVING = _object(
    {
        "origin": {"type": "string"},
        "revision": {"type": "integer"},
        "from_disk_cache": {"type": "boolean"},
        "surfaces": {
            "type": "array",
            "items": _object(
                {
                    "name": {"type": "string"},
                    "default_model": {"type": "string"},
                    "resolved": {"type": "string"},
                    "running": {"type": "array", "items": {"type": "string"}},
                }
            ),
        },
        "experiments": {
            "type": "array",
            "items": _object(
                {
                    "key": {"type": "string"},
                    "surface": {"type": "string"},
                    "status": {"type": "string"},
                    "running": {"type": "boolean"},
                    "config_version": {"type": "integer"},
                    "layer": _NULLABLE_STRING,
                    "traffic": {"type": "number"},
                    "winner": _NULLABLE_STRING,
                    "phase": {
                        "type": ["string", "null"],
                        "description": "The allocation phase (12 hex characters) while running",
                    },
                    "variants": {
                        "type": "array",
                        "items": _object(
                            {
                                "key": {"type": "string"},
                                "weight": {"type": "number"},
                                "model": {"type": "string"},
                                "resolved": {
                                    "type": "string",
                                    "description": "The version served now, or 'unresolved'",
                                },
                                "pinned": {
                                    "type": ["string", "null"],
                                    "description": "The pinned version (running experiments)",
                                },
                            },
                            required=["key", "weight", "model", "resolved"],
                        ),
                    },
                }
            ),
        },
    }
)

_READY = _object(
    {
        "status": {"type": "string", "enum": ["ready", "degraded", "starting"]},
        "checks": _object(
            {
                "postgres": {"type": "string", "description": "'ok' or 'down: ...'"},
                "redis": {"type": "string", "description": "'ok' or 'down: ...'"},
                "log": {
                    "type": "string",
                    "description": "'ok', or what is wrong with which log sink (spool filling, "
                    "spool full, writes failing)",
                },
                "config": {
                    "type": "string",
                    "description": "present when serving the snapshot kept on disk",
                },
            },
            required=["postgres", "redis", "log"],
            additionalProperties={"type": "string"},
        ),
        "config": _object(
            {
                "origin": {"type": "string"},
                "revision": {"type": "integer"},
                "from_disk_cache": {"type": "boolean"},
                "last_error": _NULLABLE_STRING,
            }
        ),
        "experiments": {
            "type": "object",
            "additionalProperties": _object(
                {
                    "phase": {"type": "string"},
                    "arms": {"type": "object", "additionalProperties": {"type": "string"}},
                }
            ),
        },
    },
    required=["status"],
)


def build_openapi(surfaces: Iterable[Surface], *, auth: bool, rate_limits: bool = False) -> bytes:
    """The OpenAPI document (encoded) for these surfaces and auth mode."""
    declared = sorted(surfaces, key=lambda s: s.name)
    overloaded = _problem(
        "The gateway is at its concurrency limit; retry after Retry-After seconds",
        Overloaded,
        headers={"Retry-After": _RETRY_AFTER},
    )

    def guarded(responses: Schema) -> Schema:
        """The answers of an authenticated endpoint, added when auth is on."""
        if auth:
            responses["401"] = _problem(
                "No credentials, or an unknown or revoked key",
                Unauthorized,
                headers={"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}},
            )
            responses["403"] = _problem("The key may not use this surface", Forbidden)
        if rate_limits:
            responses["429"] = _problem(
                "The key's rate limit is exceeded",
                RateLimited,
                headers={"Retry-After": _RETRY_AFTER},
            )
        return dict(sorted(responses.items()))

    security: list[Schema] = [{"bearer": []}] if auth else [{}]
    open_endpoint: list[Schema] = [{}]
    bad = _problem("Bad input; `field` names the field when one is at fault", BadRequest)
    too_large = _problem("Body larger than ABGATE_MAX_BODY_BYTES", PayloadTooLarge)
    paths: Schema = {
        "/v1/recommendations": {
            "post": {
                "operationId": "getRecommendations",
                "summary": "Results for a unit on a surface, assigned to an experiment variant",
                "security": security,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/RecommendationRequest"}
                        }
                    },
                },
                "responses": guarded(
                    {
                        "200": _json(
                            "The results", {"$ref": "#/components/schemas/Recommendation"}
                        ),
                        "400": bad,
                        "404": _problem("Unknown surface", UnknownSurface),
                        "413": too_large,
                        "503": _problem(
                            "no-answer: no list and no default list could be read (do not "
                            "retry); logging-unavailable: the unit is in an experiment and the "
                            "exposure log is full under ABGATE_SPOOL_FULL=refuse (retry later or "
                            "use your default); overloaded: the gateway is at its concurrency "
                            "limit (Retry-After)",
                            NoAnswer,
                            LoggingUnavailable,
                            Overloaded,
                            headers={"Retry-After": _RETRY_AFTER},
                        ),
                    }
                ),
            }
        },
        "/v1/events": {
            "post": {
                "operationId": "recordEvents",
                "summary": f"Record outcomes: one event or a list of 1 to {MAX_EVENTS}",
                "security": security,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    {"$ref": "#/components/schemas/Event"},
                                    {
                                        "type": "array",
                                        # Not $ref Event: an invalid element is rejected in
                                        # the answer, not the request (202, results[i]).
                                        "items": {
                                            "description": "An Event (components/schemas/"
                                            "Event), validated on its own: an invalid one is "
                                            "rejected in the answer's results, the others are "
                                            "recorded"
                                        },
                                        "minItems": 1,
                                        "maxItems": MAX_EVENTS,
                                    },
                                ]
                            }
                        }
                    },
                },
                "responses": guarded(
                    {
                        "202": _json(
                            "Each element's fate in `results` (in request order): `accepted` "
                            "(queued for the log), `rejected` (invalid: `field` and `detail` say "
                            "why; do not resend it)",
                            _EVENT_RESULTS,
                        ),
                        "400": bad,
                        "413": too_large,
                        "503": {
                            "description": "The log queue is full, or the on-disk spool is "
                            "full under ABGATE_SPOOL_FULL=refuse: the elements with status "
                            "`dropped` were not queued, resend them (same `event_id`); or the "
                            "gateway is overloaded (problem, Retry-After)",
                            "headers": {**_REQUEST_ID_HEADER, "Retry-After": _RETRY_AFTER},
                            "content": {
                                "application/json": {"schema": _EVENT_RESULTS},
                                "application/problem+json": {"schema": _problem_of(Overloaded)},
                            },
                        },
                    }
                ),
            }
        },
        "/v1/experiments": {
            "get": {
                "operationId": "listExperiments",
                "summary": "What this replica serves: surfaces, experiments, resolved versions",
                "security": security,
                "responses": guarded(
                    {
                        "200": _json("Surfaces and experiments", _SERVING),
                        "503": overloaded,
                    }
                ),
            }
        },
        "/healthz": {
            "get": {
                "operationId": "liveness",
                "summary": "Liveness",
                "security": open_endpoint,
                "responses": {
                    "200": _json("Alive", _object({"status": {"type": "string", "enum": ["ok"]}})),
                    "503": overloaded,
                },
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readiness",
                "summary": "Readiness with Postgres, Redis and log sink checks",
                "security": open_endpoint,
                "parameters": [
                    {
                        "name": "strict",
                        "in": "query",
                        "required": False,
                        "description": "'1' or 'true': answer 503 when degraded",
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": _json("Ready or degraded", _READY),
                    "503": {
                        "description": "Degraded with ?strict=1, starting, or overloaded",
                        "headers": _REQUEST_ID_HEADER,
                        "content": {
                            "application/json": {"schema": _READY},
                            "application/problem+json": {"schema": _problem_of(Overloaded)},
                        },
                    },
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics (text format)",
                "security": open_endpoint,
                "responses": {
                    "200": {
                        "description": "Prometheus text format",
                        "headers": _REQUEST_ID_HEADER,
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "503": overloaded,
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "security": open_endpoint,
                "responses": {
                    "200": _json("The OpenAPI document", {"type": "object"}),
                    "503": overloaded,
                },
            }
        },
    }
    doc: Schema = {
        "openapi": "3.1.0",
        "info": {
            "title": "abgate",
            "version": "1",
            "description": "Online A/B experimentation gateway for precomputed ML results. "
            "Generated from the gateway's parser limits and the configuration it serves now.",
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An API key"}
            },
            "schemas": {
                "Problem": _PROBLEM,
                "RecommendationRequest": _recommendation_request(declared),
                "Recommendation": _RECOMMENDATION,
                "Event": _EVENT,
            },
        },
        "paths": paths,
    }
    return orjson.dumps(doc)
