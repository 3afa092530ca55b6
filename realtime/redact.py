"""Keep API keys out of logs: websockets logs every handshake header at DEBUG, the bearer key included."""

from __future__ import annotations

import logging

SECRET_HEADERS = frozenset({"authorization", "sec-websocket-protocol"})


class RedactCredentials(logging.Filter):
    """Mask the value of secret headers in websockets' `> name: value` / `< name: value` handshake records."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 2 and str(args[0]).lower() in SECRET_HEADERS:
            record.args = (args[0], "***")
        return True


def redacted_logger(name: str) -> logging.Logger:
    """A logger to hand to websockets (`logger=`) whose handshake records never show a key."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactCredentials) for f in logger.filters):
        logger.addFilter(RedactCredentials())
    return logger
