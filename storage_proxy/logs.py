"""Logging of the proxy: one line per notable event, as text or JSON, tagged with the namespace
and gRPC method of the call it happened in.

The call context lives in context variables: grpc.aio runs every call in its own task, so a
value set while handling one call never leaks into another. Only what the service chooses to
put there is logged; a token never is (the namespace is the user name the token maps to).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar

current_method: ContextVar[str | None] = ContextVar("current_method", default=None)
current_namespace: ContextVar[str | None] = ContextVar("current_namespace", default=None)

# Attributes every LogRecord has; anything else was passed with extra={...} and is logged.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class CallContextFilter(logging.Filter):
    """Adds `method` and `namespace` of the current call (None outside calls) to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "method"):
            record.method = current_method.get()
        if not hasattr(record, "namespace"):
            record.namespace = current_namespace.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, call context, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and value is not None:
                out[key] = value if isinstance(value, (int, float, bool)) else str(value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The classic line, with `namespace=... method=...` appended inside a call."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        tags = [f"{k}={getattr(record, k)}" for k in ("namespace", "method")
                if getattr(record, k, None) is not None]
        return f"{line} [{' '.join(tags)}]" if tags else line


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    """Configure the root logger for `storage-proxy serve` (stderr, text or json)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(CallContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
