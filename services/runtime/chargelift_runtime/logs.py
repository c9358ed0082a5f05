"""Logging set-up: plain lines on stderr, with secrets kept out of every record.

Two defences, because MHCP carries the PIN in the query string (``?DevKey=<PIN>``):

1. the loggers that print request URLs (``httpx`` logs every request at INFO,
   ``httpcore`` at DEBUG) are capped at WARNING, and our code never logs a URL with a
   query;
2. a filter on the handlers rewrites every record: ``DevKey=...``/``Pin=...`` become
   ``DevKey=***`` and each configured secret, as a whole token, becomes ``***`` — in
   the message and in the formatted traceback.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable

_QUERY_SECRET = re.compile(r"\b(DevKey|Pin)=[^&\s\"']*", re.IGNORECASE)

#: Libraries whose INFO/DEBUG output is noise or, worse, contains request URLs.
QUIET_LOGGERS = ("httpx", "httpcore", "gmqtt", "hpack")
#: Libraries capped at CRITICAL: pymodbus logs every failed request (a timeout, a
#: garbage frame) at ERROR with hex dumps of the last frames; the poller's Modbus
#: drivers translate each failure into one error of their own, which is what is logged.
SILENCED_LOGGERS = ("pymodbus",)


class RedactSecrets(logging.Filter):
    """Replace secrets in a record's message and traceback (never drops a record)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._tokens: set[str] = set()
        self._secret: re.Pattern[str] | None = None
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Also redact ``secrets`` from now on."""
        self._tokens.update(s for s in secrets if s)
        if self._tokens:
            alternatives = "|".join(
                re.escape(t) for t in sorted(self._tokens, key=len, reverse=True)
            )
            self._secret = re.compile(rf"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])")

    def redact(self, text: str) -> str:
        """``text`` with query-string secrets and the configured secrets masked."""
        text = _QUERY_SECRET.sub(r"\1=***", text)
        if self._secret is not None:
            text = self._secret.sub("***", text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


def configure_logging(level: str, secrets: Iterable[str] = ()) -> RedactSecrets:
    """Log to stderr at ``level`` with secrets redacted; return the filter (to add secrets)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    redactor = RedactSecrets(secrets)
    handler.addFilter(redactor)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    quiet_libraries()
    return redactor


def quiet_libraries() -> None:
    """Cap the :data:`QUIET_LOGGERS` at WARNING (httpx logs request URLs at INFO), and
    the :data:`SILENCED_LOGGERS` at CRITICAL."""
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(max(logging.WARNING, logger.getEffectiveLevel()))
    for name in SILENCED_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
