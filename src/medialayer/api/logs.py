"""Logging for the service: every record carries the request id, as JSON lines when asked.

Operators grep one request's story across the access log, errors and the work done in the
threadpool by its id; JSON lines are what log shippers parse without a regex.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime

from medialayer.config import Settings

REQUEST_ID: ContextVar[str | None] = ContextVar("medialayer_request_id", default=None)
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_HANDLER_NAME = "medialayer-api"
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def request_id_from(header: str | None) -> str:
    """The client's X-Request-ID if it is a sane token (no log injection), else a fresh one."""
    if header and _CLIENT_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Stamps the current request's id, unless the caller passed one (after the request ended)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id and any extras."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
               "level": record.levelname.lower(), "logger": record.name,
               "message": record.getMessage()}
        out.update({k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(settings: Settings) -> None:
    """Give the `medialayer` logger one handler (replacing ours from an earlier app).

    Records still propagate, so test log capture keeps working; uvicorn leaves the root logger
    without handlers, so nothing is printed twice in production.
    """
    logger = logging.getLogger("medialayer")
    for handler in [h for h in logger.handlers if h.get_name() == _HANDLER_NAME]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler()
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if settings.log_json else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(settings.log_level.upper())
