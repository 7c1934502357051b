"""The OpenAPI 3.1 document served at ``GET /openapi.json`` (the contract of DESIGN.md)."""

from __future__ import annotations

_PROBLEM = {"$ref": "#/components/schemas/Problem"}


def _problem_response(description: str) -> dict[str, object]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": _PROBLEM}},
    }


_EVENT = {
    "type": "object",
    "required": ["unit_id", "name"],
    "additionalProperties": False,
    "properties": {
        "unit_id": {"type": "string", "minLength": 1, "maxLength": 256},
        "name": {"type": "string", "minLength": 1, "maxLength": 128, "examples": ["purchase"]},
        "value": {"type": ["number", "null"]},
        "item_id": {"type": ["string", "null"]},
        "ts": {
            "type": "string",
            "format": "date-time",
            "description": "Defaults to the time received",
        },
    },
}

OPENAPI: dict[str, object] = {
    "openapi": "3.1.0",
    "info": {
        "title": "abgate",
        "version": "1",
        "description": "Online A/B experimentation gateway for precomputed ML results.",
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Problem": {
                "type": "object",
                "description": "RFC 9457 problem details",
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "instance": {"type": "string"},
                    "field": {"type": "string", "description": "The request field at fault"},
                },
            },
            "RecommendationRequest": {
                "type": "object",
                "required": ["surface", "unit_id"],
                "additionalProperties": False,
                "properties": {
                    "surface": {"type": "string", "examples": ["home_top"]},
                    "unit_id": {"type": "string", "minLength": 1, "maxLength": 256},
                    "exclude": {"type": "array", "items": {"type": "string"}, "maxItems": 1000},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 200},
                    "attributes": {
                        "type": "object",
                        "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
                    },
                },
            },
            "Recommendation": {
                "type": "object",
                "properties": {
                    "request_id": {"type": "string"},
                    "surface": {"type": "string"},
                    "unit_id": {"type": "string"},
                    "experiment": {"type": ["string", "null"]},
                    "variant": {"type": ["string", "null"]},
                    "model": {
                        "type": "object",
                        "properties": {"name": {"type": "string"}, "version": {"type": "string"}},
                    },
                    "items": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"id": {"type": "string"}, "score": {"type": "number"}},
                        },
                    },
                    "source": {"type": "string", "enum": ["cache", "db", "fallback"]},
                },
            },
            "Event": _EVENT,
        },
    },
    "security": [{"bearer": []}, {}],
    "paths": {
        "/v1/recommendations": {
            "post": {
                "summary": "Results for a unit on a surface, assigned to an experiment variant",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/RecommendationRequest"}
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "The results",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Recommendation"}
                            }
                        },
                    },
                    "400": _problem_response("Bad input; `field` names the field"),
                    "401": _problem_response("No bearer token"),
                    "403": _problem_response("Token not accepted"),
                    "404": _problem_response("Unknown surface"),
                    "413": _problem_response("Body larger than the limit"),
                    "503": _problem_response("No list and no fallback list could be read"),
                },
            }
        },
        "/v1/events": {
            "post": {
                "summary": "Record outcomes (one event or a list of up to 1,000)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    {"$ref": "#/components/schemas/Event"},
                                    {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Event"},
                                    },
                                ]
                            }
                        }
                    },
                },
                "responses": {
                    "202": {"description": 'Accepted: {"accepted": n}'},
                    "400": _problem_response("Bad input; `field` names the field"),
                    "413": _problem_response("Body larger than the limit"),
                },
            }
        },
        "/v1/experiments": {
            "get": {
                "summary": "What this replica serves",
                "responses": {"200": {"description": "Surfaces and experiments"}},
            }
        },
        "/healthz": {
            "get": {"summary": "Liveness", "responses": {"200": {"description": "Alive"}}}
        },
        "/readyz": {
            "get": {
                "summary": "Readiness with Postgres and Redis checks (?strict=1: 503 when either is down)",
                "responses": {
                    "200": {"description": "Ready or degraded"},
                    "503": {"description": "Not ready"},
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {"200": {"description": "Text format"}},
            }
        },
    },
}
