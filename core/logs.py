"""Log lines that are safe to ship: the session and kiosk they belong to, no secret, no audio.

`SafeLogFilter` sits on every handler (settings.LOGGING). It adds `session_id` and `kiosk_id` from the
context the kiosk consumer binds, drops conversation content (the `CONVERSATION_FIELDS` extras and the
frame-by-frame debug lines of the socket and HTTP client libraries) unless REALTIME_ENABLE_DETAILED_LOGGING
is on, and redacts keys, tokens, passwords, audio and base64 blobs from the message and any traceback.
"""

from __future__ import annotations

import contextvars
import logging
import re

from django.conf import settings

# Extras that carry what a visitor said or who they are: logged only with detailed logging on.
CONVERSATION_FIELDS = ("transcript", "reply", "visit")
# Libraries whose debug lines print whole frames or requests (transcripts, names, audio).
CONTENT_LOGGERS = ("websockets", "openai", "httpx", "httpcore")
REDACTED = "[redacted]"

_context: contextvars.ContextVar[dict[str, object]] = contextvars.ContextVar("log_context", default={})  # noqa: B039 - never mutated

_KEYWORDS = r"api[_-]?key|token|secret|password|passwd|authorization|cookie|kiosk_device|sessionid|csrftoken"
_PATTERNS: list[tuple[re.Pattern, str]] = [
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"), "sk-" + REDACTED),
    (re.compile(r"(?i)\bbearer\s+[^\s\"',;]+"), "Bearer " + REDACTED),
    (re.compile(rf"(?i)\b({_KEYWORDS})(\"?'?\s*[:=]\s*\"?'?)(?!\[redacted\])([^\s\"'&,;}}\]]+)"), r"\1\2" + REDACTED),
    (re.compile(r"://([^:/@\s]+):([^@/\s]+)@"), r"://\1:" + REDACTED + "@"),  # passwords in URLs
    (re.compile(r"(/kiosk/pair/)[^/\s\"']+"), r"\1" + REDACTED),  # one-time pairing links
    (re.compile(r"\"(audio|delta)\"\s*:\s*\"[^\"]*\"?"), r'"\1": "' + REDACTED + '"'),  # audio in JSON frames
    (re.compile(r"\bb(['\"])(?:\\.|(?!\1).){16,}\1"), "[bytes]"),  # reprs of binary data
]
_BASE64 = re.compile(r"[A-Za-z0-9+/_\-]{40,}={0,2}")


def bind_log_context(**fields: object) -> None:
    """Tag every later log line of this task (and the tasks and threads it starts) with `fields`."""
    _context.set({**_context.get(), **fields})


def adopt_loggers(prefix: str) -> None:
    """Send the lines of a library that installs its own handlers (at import) through ours, filtered."""
    for name in list(logging.Logger.manager.loggerDict):
        if name == prefix or name.startswith(prefix + "."):
            library_logger = logging.getLogger(name)
            for handler in list(library_logger.handlers):
                library_logger.removeHandler(handler)
            library_logger.propagate = True


def _secret_values() -> list[str]:
    values = [
        settings.OPENAI_API_KEY,
        settings.METRICS_SCRAPE_TOKEN,
        settings.SECRET_KEY,
        settings.ALERT_WEBHOOK_URL,
        getattr(settings, "EMAIL_HOST_PASSWORD", ""),
    ]
    return [value for value in values if value and len(value) >= 6]


def _blob(match: re.Match) -> str:
    text = match.group(0)
    mixed = any(c.isupper() for c in text) and any(c.islower() for c in text) and any(c.isdigit() for c in text)
    return f"[base64 {len(text)} chars]" if mixed or text.endswith("=") else text


def redact(text: str) -> str:
    """`text` without the configured secrets, key-, token- and password-like values, audio or base64 blobs."""
    for value in _secret_values():
        text = text.replace(value, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return _BASE64.sub(_blob, text)


class SafeLogFilter(logging.Filter):
    """Context in, secrets and (unless detailed logging is on) conversation content out."""

    def filter(self, record: logging.LogRecord) -> bool:
        detailed = settings.REALTIME_ENABLE_DETAILED_LOGGING
        if not detailed and record.levelno < logging.INFO and record.name.startswith(CONTENT_LOGGERS):
            return False
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        for key in CONVERSATION_FIELDS:
            if hasattr(record, key):
                setattr(record, key, redact(str(getattr(record, key))) if detailed else REDACTED)
        record.msg, record.args = redact(record.getMessage()), ()
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
