"""Errors as RFC 7807 problem documents (``application/problem+json``), with the library's
own messages: a queue error's class decides the status, its text is the ``detail``."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from worker.core.errors import (
    DuplicateTaskError,
    InvalidInputError,
    InvalidStateTransitionError,
    QueueClosedError,
    QueueError,
    StorageError,
    TaskNotFoundError,
    UnknownRequestKindError,
)
from worker.core.validation_errors import error_message

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"

#: The status of each queue error class; the first that matches wins (subclasses first).
STATUS_OF: tuple[tuple[type[QueueError], int], ...] = (
    (TaskNotFoundError, 404),
    (InvalidStateTransitionError, 409),
    (DuplicateTaskError, 409),
    (InvalidInputError, 422),
    (UnknownRequestKindError, 422),
    (QueueClosedError, 503),
    (StorageError, 503),
)


class ProblemResponse(JSONResponse):
    media_type = MEDIA_TYPE


def problem(
    status: int, detail: str, *, error: str | None = None, headers: dict[str, str] | None = None
) -> ProblemResponse:
    """A problem document: ``type`` about:blank, ``title`` the status phrase, ``detail`` the
    message, ``error`` the library's exception class when there is one."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if error is not None:
        body["error"] = error
    return ProblemResponse(body, status_code=status, headers=headers)


def status_of(exc: QueueError) -> int:
    for cls, status in STATUS_OF:
        if isinstance(exc, cls):
            return status
    return 400


def validation_detail(errors: Any) -> str:
    """Pydantic's errors as one line naming each field (``request.text: Field required``)."""
    parts = []
    for error in errors:
        if error.get("type") == "json_invalid":  # its location is a position in the text
            cause = (error.get("ctx") or {}).get("error", "")
            at = [p for p in error.get("loc", ()) if isinstance(p, int)]
            where = f" at position {at[0]}" if at else ""
            parts.append(f"body: not JSON ({cause}{where})" if cause else "body: not JSON")
            continue
        location = [str(p) for p in error.get("loc", ()) if p != "body"]
        parts.append(f"{'.'.join(location) or 'body'}: {error_message(error)}")
    return "; ".join(parts)


async def _queue_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, QueueError)
    status = status_of(exc)
    if status >= 500:
        log.error("%s %s: %s", request.method, request.url.path, exc)
    return problem(status, str(exc), error=type(exc).__name__)


async def _invalid_request(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, RequestValidationError)
    return problem(422, validation_detail(exc.errors()), error="InvalidInputError")


async def _http_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, HTTPException)
    headers = None if exc.headers is None else dict(exc.headers)
    return problem(exc.status_code, str(exc.detail), headers=headers)


def install(app: FastAPI) -> None:
    """Have ``app`` answer errors with problem documents."""
    app.add_exception_handler(QueueError, _queue_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
