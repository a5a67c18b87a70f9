"""Every failure becomes one status code and a body `{"error": "<one line>"}`, here and only here.

`STATUS` is the whole mapping from r3mem's error types to HTTP; the handlers for
request validation, malformed JSON and Starlette's own HTTP errors give the same body
shape, so a client needs exactly one way to read an error.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from r3mem.errors import (
    AccessDenied,
    CheckpointMismatch,
    CorruptRecord,
    CostTooHigh,
    DeadlineExceeded,
    DuplicateRecord,
    InvalidInput,
    MemoryFileError,
    ModelNotFound,
    R3MemError,
    RecordNotFound,
    StoreError,
)
from r3mem.store.validation import MAX_METADATA_DEPTH

log = logging.getLogger("r3mem.service")
ERROR_HEADER = "X-R3mem-Error"


class NamespaceForbidden(AccessDenied):
    """The key is valid, but the namespace asked for lies outside the key's scope."""


class ServiceBusy(R3MemError, RuntimeError):
    """Too many model calls are already waiting for the model; retry later."""


class RateLimited(R3MemError, RuntimeError):
    """The key has used up one of its rate limits (`Settings.rate_limit`); retry after `retry_after` s."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# Most specific first: the first class an error is an instance of decides its status.
STATUS: tuple[tuple[type[R3MemError], int], ...] = (
    (NamespaceForbidden, 403),
    (DuplicateRecord, 409),
    (AccessDenied, 401),
    (InvalidInput, 422),
    (MemoryFileError, 422),
    (RecordNotFound, 404),
    (CheckpointMismatch, 409),
    (RateLimited, 429),
    (CostTooHigh, 413),  # this request, as asked, is over `max_request_tokens`: retrying cannot help
    (ServiceBusy, 503),
    (DeadlineExceeded, 503),  # stopped at `request_timeout`: a less loaded moment may finish it
    # not transient, unlike the store errors below it: retrying cannot help, so no 503
    (CorruptRecord, 500),
    (StoreError, 503),
    (ModelNotFound, 503),
)
_RETRY_AFTER_S = "1"


def _one_line(text: object) -> str:
    return " ".join(str(text).split()) or "error"


def error_response(status: int, message: object, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": _one_line(message)}, status_code=status, headers=headers)


async def r3mem_error(request: Request, exc: Exception) -> JSONResponse:
    status = next((code for cls, code in STATUS if isinstance(exc, cls)), 500)
    headers = None
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    elif status == 503:
        headers = {"Retry-After": _RETRY_AFTER_S}
    elif isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after)}
    message: object = exc
    if isinstance(exc, CorruptRecord):  # names the record, which lies in the caller's namespace
        log.error("corrupt record on %s %s: %s", request.method, request.url.path, exc)
    elif isinstance(exc, StoreError):  # its text names the database file or server: keep that in the log
        log.error("store error on %s %s: %s", request.method, request.url.path, exc)
        message = "the memory store is unavailable or failed; the server log has the cause"
    elif status == 500:
        log.error("unmapped r3mem error on %s %s: %r", request.method, request.url.path, exc)
    # the class, so a client raises what the local store would have (`r3mem.client.calls.ERROR_HEADER`)
    headers = {**(headers or {}), ERROR_HEADER: type(exc).__name__}
    return error_response(status, message, headers)


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """The first problem, as `field.path: message`; malformed JSON says so."""
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if not errors:
        return error_response(422, "invalid request")
    first = errors[0]
    if first.get("type") == "json_invalid":
        detail = first.get("ctx", {}).get("error", "")
        return error_response(422, f"the request body is not valid JSON: {detail}")
    where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path"))
    detail = str(first.get("msg"))
    message = f"{where}: {detail}" if where and not detail.startswith(where) else detail
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem(s))"
    return error_response(422, message)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):  # FastAPI's body parser
        return error_response(422, "the request body is not valid JSON: it is not UTF-8 text")
    if exc.status_code == 400 and isinstance(exc.__cause__, RecursionError):  # nested past the JSON parser
        return error_response(422, "the request body is not valid JSON here: it is nested too deeply "
                                   f"(metadata may nest {MAX_METADATA_DEPTH} levels)")
    return error_response(exc.status_code, exc.detail, dict(exc.headers or {}) or None)


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    """A bug, not a bad request: log it in full, tell the client nothing about the internals."""
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(R3MemError, r3mem_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)
