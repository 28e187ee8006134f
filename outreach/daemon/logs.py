"""The daemon's log lines: text for a terminal, or JSON, one object a line, for journald and log collectors.

A JSON line has `time` (UTC, ISO 8601), `level`, `logger`, `message`, the exception when there is one, and the
ids of what the line is about where the call names them (`extra={"enrollment": 7}`): `enrollment`, `outbox`
(a message's row), `mailbox`, `daemon`, `task` (a loop of the daemon). Secrets are never logged: no log call passes one.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys

FIELDS = ("enrollment", "outbox", "mailbox", "daemon", "task")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(fmt: str = "text") -> None:
    """Log to stderr at INFO, as text (`time LEVEL message`) or JSON; the chatty libraries at WARNING."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("aioimaplib").setLevel(logging.WARNING)  # it logs every untagged response it drops at INFO
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
