"""The client's records are the server's contract: their fields are the OpenAPI document's."""

from __future__ import annotations

import dataclasses
from typing import get_args

import orjson

from abgate.client import Event, EventResult, Item, ModelInfo, Recommendation
from abgate.client._models import EventStatus, Source
from gateway.openapi import build_openapi

DOC = orjson.loads(build_openapi([], auth=False))
SCHEMAS = DOC["components"]["schemas"]


def fields(record: type) -> set[str]:
    return {f.name for f in dataclasses.fields(record)}


def test_recommendation_fields_are_the_documents() -> None:
    schema = SCHEMAS["Recommendation"]
    client_only = {"error"}  # set on client-side fallbacks only
    assert fields(Recommendation) - client_only == set(schema["properties"])
    assert fields(Item) == set(schema["properties"]["items"]["items"]["properties"])
    assert fields(ModelInfo) == set(schema["properties"]["model"]["properties"])
    server_sources = set(schema["properties"]["source"]["enum"])
    assert set(get_args(Source)) == server_sources | {"client-fallback"}


def test_event_fields_are_the_documents() -> None:
    assert fields(Event) == set(SCHEMAS["Event"]["properties"])


def test_event_result_fields_are_the_documents() -> None:
    answer = DOC["paths"]["/v1/events"]["post"]["responses"]["202"]["content"]
    results = answer["application/json"]["schema"]["properties"]["results"]["items"]
    assert fields(EventResult) == set(results["properties"])
    assert set(results["properties"]["status"]["enum"]) == set(get_args(EventStatus))
