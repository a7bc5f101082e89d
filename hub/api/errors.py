"""HubError over HTTP: its status (4xx), the message in English, and its code, field and params.

The body keeps the shape clients already read: a refusal of one field is FastAPI's own 422
(`detail: [{loc, msg, type}]`), anything else `detail: "message"`. `code`, `field` and `params`
sit beside `detail` in both, so a client can match the stable code instead of the words.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from hub.core.errors import HubError, InvalidValue, describe

log = logging.getLogger(__name__)


def error_body(error: HubError) -> dict[str, object]:
    message = describe(error)
    detail: object = message
    if isinstance(error, InvalidValue) and error.field is not None:
        detail = [{"type": error.code, "loc": ["body", error.field], "msg": message, "input": None}]
    return {"detail": detail, "code": error.code, "field": error.field, "params": error.params}


async def hub_error_response(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HubError)
    log.info("%s %s refused: %r", request.method, request.url.path, error)
    return JSONResponse(error_body(error), status_code=error.status)


def _finite(value: Any) -> Any:
    """JSON has no NaN nor infinity: a body that sent one (Python's parser takes `NaN`) gets
    it back as text in its 422, instead of a 500 while writing the refusal."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


async def validation_error_response(request: Request, error: Exception) -> JSONResponse:
    """FastAPI's own 422 (`detail: [{loc, msg, type, input}]`), with non-finite numbers made
    text."""
    assert isinstance(error, RequestValidationError)
    return JSONResponse({"detail": _finite(jsonable_encoder(error.errors()))}, status_code=422)


def install(app: FastAPI) -> None:
    app.add_exception_handler(HubError, hub_error_response)
    app.add_exception_handler(RequestValidationError, validation_error_response)
