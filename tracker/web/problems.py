"""Every error leaves as RFC 9457 problem details (``application/problem+json``)."""

from __future__ import annotations

import json

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from kernel.errors import BatonError, MalformedJSON, TooManyRequests, Unauthorized, Unprocessable

log = logging.getLogger("baton.errors")
PROBLEM_JSON = "application/problem+json"


def problem_response(error: BatonError) -> JSONResponse:
    headers: dict[str, str] = {}
    if isinstance(error, TooManyRequests):
        headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, Unauthorized):
        headers["WWW-Authenticate"] = 'Signature, Bearer realm="baton"'
    return JSONResponse(error.problem(), status_code=error.status, media_type=PROBLEM_JSON, headers=headers)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ()) if part != "body"]
        message = str(err.get("msg", "invalid"))
        out.append({"field": ".".join(loc) or "body", "message": message.removeprefix("Value error, ")})
    return out


def _route(request: Request) -> str:
    """The route template (``/s/{token}``), never the raw path: it may carry a status-link token."""
    route = request.scope.get("route")
    return getattr(route, "path", None) or "unmatched route"


def install(app: FastAPI) -> None:
    @app.exception_handler(BatonError)
    async def _baton(_: Request, exc: BatonError) -> JSONResponse:
        return problem_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        refused = getattr(request.state, "on_refused", None)
        if refused is not None:  # a signed write refused for its body: its nonce is spent first (tracker.web.updates)
            replay = await refused()
            if replay is not None:
                return problem_response(replay)
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            ctx = errors[0].get("ctx") or {}
            return problem_response(MalformedJSON(f"The body is not valid JSON: {ctx.get('error', 'parse error')}."))
        details = _validation_errors(exc)
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
        return problem_response(Unprocessable(summary or "Invalid request.", errors=details))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and "parsing the body" in str(exc.detail):
            # FastAPI's answer to a body that is not UTF-8 or nests beyond the parser's limit.
            return problem_response(MalformedJSON("The body is not valid JSON (not UTF-8, or nested too deeply)."))
        error = BatonError(str(exc.detail))
        error.status = exc.status_code
        error.slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        error.title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
        return problem_response(error)

    @app.exception_handler(DataError)
    async def _data(request: Request, exc: DataError) -> JSONResponse:
        # The database refused a value the validators let through: the client's input, not our fault.
        log.warning("database refused a value on %s %s: %s", request.method, _route(request), type(exc.orig).__name__)
        return problem_response(Unprocessable("A value in the request cannot be stored (out of range or invalid)."))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, _route(request))
        return problem_response(BatonError("An unexpected error occurred; it has been logged."))


async def send_problem(send: Any, error: BatonError) -> None:
    """Answer from an ASGI middleware, before the app (and its exception handlers) ever runs."""
    body = json.dumps(error.problem()).encode()
    await send({"type": "http.response.start", "status": error.status,
                "headers": [(b"content-type", b"application/problem+json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
