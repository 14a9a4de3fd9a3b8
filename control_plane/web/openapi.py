"""The OpenAPI document says what the API really answers: every error is RFC 9457 problem+json.

FastAPI documents a 422 as `application/json` with its own `HTTPValidationError` shape and no other
error at all; our handlers (web.problems) answer every error as problem+json. A client generated from
the document, or schemathesis checking answers against it, would otherwise be told the wrong thing.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from control_plane.web.problems import PROBLEM

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["path", "message"],
                "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
            },
        },
        "rule": {"type": ["string", "null"]},
        "details": {"type": "object"},
    },
}
_REF = {"$ref": "#/components/schemas/Problem"}
_METHODS = ("get", "put", "post", "delete", "patch")


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM: {"schema": _REF}}}


def problem_responses(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` with every error response documented as problem+json, and 4XX answers as such."""
    doc.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    doc["components"]["schemas"].pop("HTTPValidationError", None)
    doc["components"]["schemas"].pop("ValidationError", None)
    for item in doc.get("paths", {}).values():
        for method in _METHODS:
            op = item.get(method)
            if op is None:
                continue
            responses = op.setdefault("responses", {})
            for code, response in list(responses.items()):
                if code[0] in "45":
                    responses[code] = _problem(response.get("description", "a problem"))
            responses.setdefault("422", _problem("invalid input, naming each field"))
            responses["4XX"] = _problem("bad input, authentication, a refusal or a limit (problem+json)")
            responses.setdefault("503", _problem("the database connection was lost: retry after Retry-After"))
    return doc


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            app.openapi_schema = problem_responses(doc)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
