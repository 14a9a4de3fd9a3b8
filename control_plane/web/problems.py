"""RFC 9457 problem+json: the one place where errors become HTTP answers."""

from __future__ import annotations

import json
import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

from control_plane.domain import Conflict, DomainError, Forbidden, InvalidInput, NotFound, field_path

log = logging.getLogger("drctl.api")
PROBLEM = "application/problem+json"


def problem(status: int, title: str, detail: str, type_: str = "about:blank", **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


async def send_problem(send: Send, status: int, title: str, detail: str) -> None:
    """A problem+json answer from ASGI middleware, which runs outside the app's exception handlers."""
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail}).encode()
    headers = [(b"content-type", PROBLEM.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _loc_path(loc: tuple[Any, ...]) -> str:
    parts = list(loc[1:]) if loc and loc[0] in ("body", "query", "path", "header") else list(loc)
    return field_path(parts) if parts else "(body)"


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        broken = [e for e in exc.errors() if e.get("type") == "json_invalid"]
        if broken:
            where = broken[0]["loc"][-1]
            detail = f"the request body is not valid JSON (error at character {where})"
            return problem(400, "Malformed JSON", detail, errors=[{"path": "(body)", "message": detail}])
        errors = [{"path": _loc_path(tuple(e["loc"])), "message": e["msg"]} for e in exc.errors()]
        first = errors[0] if errors else {"path": "", "message": ""}
        detail = f"{first['path']}: {first['message']}" + (
            f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        )
        return problem(422, "Invalid input", detail, errors=errors)

    @app.exception_handler(InvalidInput)
    async def _invalid(_: Request, exc: InvalidInput) -> JSONResponse:
        errors = [{"path": e.path, "message": e.message} for e in exc.errors]
        return problem(422, exc.title, str(exc), errors=errors)

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return problem(404, exc.title, str(exc))

    @app.exception_handler(Forbidden)
    async def _forbidden(_: Request, exc: Forbidden) -> JSONResponse:
        return problem(403, exc.title, str(exc))

    @app.exception_handler(Conflict)
    async def _conflict(_: Request, exc: Conflict) -> JSONResponse:
        return problem(
            409, exc.title, str(exc), rule=exc.rule, **({"details": exc.details} if exc.details else {})
        )

    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        return problem(400, exc.title, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {
            401: "Unauthorized",
            403: "Forbidden",
            404: "Not found",
            405: "Method not allowed",
            413: "Too large",
            429: "Too many requests",
        }
        resp = problem(exc.status_code, titles.get(exc.status_code, "Error"), str(exc.detail))
        for k, v in (exc.headers or {}).items():
            resp.headers[k] = v
        return resp

    # A connection the database dropped (restart, failover, pg_terminate_backend) fails the request
    # it was serving; its transaction rolled back, so a retry is safe (orders are idempotent on
    # channel + external_id) and the pool hands the retry a fresh connection. The intake fast path
    # speaks psycopg directly, so its errors arrive unwrapped.
    def _connection_lost(exc: Exception) -> JSONResponse:
        log.warning("database connection lost: %s", type(getattr(exc, "orig", None) or exc).__name__)
        detail = "the database connection was lost mid-request: retry (orders are idempotent on their key)"
        resp = problem(503, "Database unavailable", detail)
        resp.headers["Retry-After"] = "1"
        return resp

    @app.exception_handler(DBAPIError)
    async def _database(_: Request, exc: DBAPIError) -> JSONResponse:
        if isinstance(exc, (OperationalError, InterfaceError)) or exc.connection_invalidated:
            return _connection_lost(exc)
        log.exception("unhandled error")
        return problem(500, "Internal error", "the server failed; the error is logged")

    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(psycopg.InterfaceError)
    async def _psycopg(_: Request, exc: psycopg.Error) -> JSONResponse:
        return _connection_lost(exc)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return problem(500, "Internal error", "the server failed; the error is logged")
