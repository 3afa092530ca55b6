"""Settings of ai-reception, read once from the environment (or `.env`).

Every variable of the contract has its default here; `.env.realtime.template` documents them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from pathlib import Path

import environ
from csp.constants import NONCE
from django.core.exceptions import ImproperlyConfigured

from realtime.voices import DEFAULT_REALTIME_VOICE, REALTIME_VOICES, check_realtime_voice
from speech.voices import DEFAULT_LOCAL_VOICES, check_local_voice

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def env_path(name: str, default: str | Path = "") -> str:
    """A file or folder setting: empty means `default`; relative paths start at BASE_DIR, never the current folder."""
    value = env(name, default="") or default
    return str(BASE_DIR / value) if value else ""


def env_voice(name: str, default: str, check: Callable[[str], object]) -> str:
    """A voice setting: empty means `default`; a voice that is not available stops the start, saying which are."""
    value = env(name, default="") or default
    try:
        check(value)
    except ValueError as problem:
        raise ImproperlyConfigured(f"{name}: {problem}") from None
    return value


# No built-in key: `make run` generates one into data/secret_key (outside git) and exports it.
SECRET_KEY = env("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is not set. Set it in the environment or .env (e.g. the output of "
        "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`); `make run` creates data/secret_key."
    )
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# Production behind a TLS-terminating proxy that sets X-Forwarded-Proto (docs/security.md): HTTPS only,
# HSTS, Secure cookies (session, CSRF and the kiosk's pairing cookie).
SECURE_HTTPS = env.bool("DJANGO_SECURE_HTTPS", default=False)
if SECURE_HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SECURE_HTTPS
SECURE_REFERRER_POLICY = "same-origin"
# Content-Security-Policy (django-csp): scripts, styles and sockets from this site only. The kiosk page adds
# ws(s) of its own host (voice.views); admin pages with a <style> block carry the request's nonce.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        # The hash is Django admin's one inline <style> (change_list.html without actions);
        # tests/project/test_security.py checks it still matches the installed Django.
        "style-src": ["'self'", "'sha256-blvLUW3UscWqsXGByNOqdBboM+ShWAuugp2mC/wbafU='", NONCE],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "reception",
    "voice",
    "realtime",
    "fallback",
    "rest_framework",
    "drf_spectacular",
    "metrics",
    "csp",
    "axes",
    "simple_history",
    "huey.contrib.djhuey",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "core.permissions_policy.PermissionsPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "reception_project.urls"
ASGI_APPLICATION = "reception_project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: SQLite (WAL, immediate transactions, busy timeout) unless DATABASE_URL says otherwise.
(BASE_DIR / "data" / "staticfiles").mkdir(parents=True, exist_ok=True)
_database_url = env("DATABASE_URL", default="") or f"sqlite:///{BASE_DIR / 'data' / 'ai_reception.db'}"
DATABASES = {"default": env.db_url_config(_database_url)}
# Persistent connections: Channels runs every database call through close_old_connections, which
# would otherwise reconnect (and re-run the SQLite pragmas) on each turn.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=300)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["ENGINE"] = "core.sqlite"  # the same, with this process's writers taking turns
    DATABASES["default"]["NAME"] = str(BASE_DIR / DATABASES["default"]["NAME"])  # sqlite:///data/x.db: under BASE_DIR
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # Tests use a file too: an in-memory shared-cache database locks whole tables and ignores the
    # busy timeout, unlike the WAL file every deployment runs on.
    DATABASES["default"].setdefault("TEST", {})["NAME"] = str(BASE_DIR / "data" / f"test_ai_reception_{os.getpid()}.db")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Channel layer: in-process by default, Redis when several server processes share the work.
REDIS_URL = env("REDIS_URL", default="")
# channels-redis waits for a kiosk's next message with a 5 s BZPOPMIN; redis-py 8 gives up on any read after 5 s
# by default, so an idle session's wait raised "Timeout reading" and the server closed the kiosk with 1011. The
# layer's reads get a longer timeout than its blocking pop (a dead Redis is still noticed, 15 s later).
CHANNEL_LAYER_READ_TIMEOUT_SECONDS = 15


def redis_channel_layer(url: str) -> dict:
    """The channel layer over the Redis at `url`, its reads outlasting its blocking pop."""
    hosts = [{"address": url, "socket_timeout": CHANNEL_LAYER_READ_TIMEOUT_SECONDS}]
    return {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": hosts}}


if REDIS_URL:
    CHANNEL_LAYERS = {"default": redis_channel_layer(REDIS_URL)}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
# The cache holds the API throttles' and the refusal counters: shared (Redis) when several processes serve.
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Background work (huey, docs/deploy.md): host notifications and their retries, the daily purges, the
# rollout autopilot and the clean-up of abandoned visits run in `manage.py run_huey`, never in a conversation.
# Its queue is in Redis when REDIS_URL is set (every worker shares it), else in a SQLite file next to the database.
TASK_QUEUE_PATH = env_path("TASK_QUEUE_PATH", Path("data") / "task_queue.db")
TASK_QUEUE_WORKERS = env.int("TASK_QUEUE_WORKERS", default=2)
# True: every task runs at once in the process that queues it (tests; a shell without a consumer).
TASK_QUEUE_IMMEDIATE = env.bool("TASK_QUEUE_IMMEDIATE", default=False)
_task_storage = (
    {"huey_class": "huey.RedisHuey", "url": REDIS_URL}
    if REDIS_URL
    else {
        "huey_class": "huey.SqliteHuey",
        "filename": TASK_QUEUE_PATH,
    }
)
HUEY = {
    "name": "ai-reception",
    **_task_storage,
    "immediate": TASK_QUEUE_IMMEDIATE,
    "results": False,
    "consumer": {"workers": TASK_QUEUE_WORKERS, "worker_type": "thread", "periodic": True, "check_worker_health": True},
}

# The conversation's bookkeeping (each Realtime response's spend, the metrics writer's batches) in one helper
# process beside each server process (core.bookkeeping), so its ORM work does not hold the interpreter lock the
# audio relay needs. Off: it runs in this process's threads (the tests, whose database is their transaction).
BOOKKEEPING_PROCESS = env.bool("BOOKKEEPING_PROCESS", default=True)

# SQLite deployments only: a separate file for the workflow's checkpoints. Empty: the database file itself, so
# checkpoints always live with the visits they belong to (PostgreSQL deployments keep them in the same database).
WORKFLOW_CHECKPOINT_PATH = env_path("WORKFLOW_CHECKPOINT_PATH")

LANGUAGE_CODE = "ja"
LANGUAGES = [("ja", "日本語"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env("TIME_ZONE", default="Asia/Tokyo")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "data" / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# WhiteNoise also serves files straight from the app and project folders, so a server works
# before (or without) collectstatic, e.g. the test servers.
WHITENOISE_USE_FINDERS = True

# OpenAI and the voice paths.
OPENAI_API_KEY = env("OPENAI_API_KEY", default="")
OPENAI_BASE_URL = env("OPENAI_BASE_URL", default="https://api.openai.com/v1")
OPENAI_CHAT_MODEL = env("OPENAI_CHAT_MODEL", default="gpt-4o-mini")
# An empty value (as in the template) means "the default for this deployment".
# Without a key, the bundled emulator (`manage.py realtime_emulator`, started by `make run`) stands in.
REALTIME_EMULATOR_PORT = env.int("REALTIME_EMULATOR_PORT", default=8765)
REALTIME_API_URL = env("REALTIME_API_URL", default="") or (
    "wss://api.openai.com/v1/realtime" if OPENAI_API_KEY else f"ws://127.0.0.1:{REALTIME_EMULATOR_PORT}/v1/realtime"
)
REALTIME_MODEL = env("REALTIME_MODEL", default="gpt-realtime")
REALTIME_SESSION_RENEW_SECONDS = env.float("REALTIME_SESSION_RENEW_SECONDS", default=55 * 60.0)
REALTIME_STALL_SECONDS = env.float("REALTIME_STALL_SECONDS", default=8.0)
# A Realtime turn whose first audio comes later than this after the end of speech falls back to Legacy.
REALTIME_FIRST_AUDIO_DEADLINE_SECONDS = env.float("REALTIME_FIRST_AUDIO_DEADLINE_SECONDS", default=5.0)
REALTIME_EMULATOR_BRAIN = "realtime.emulator.reception_brain.build_reception_brain"
LEGACY_ENGINES = env("LEGACY_ENGINES", default="") or ("openai" if OPENAI_API_KEY else "local")
# Voices (docs/voice.md, "Voices"): the Realtime voice, one of the Realtime API's (realtime/voices.py), and the
# Legacy path's local voice per language, one of those installed (speech/voices.py). A kiosk may choose its own in
# the admin; blank there means these. The admin offers the Realtime API's list, which `reception` cannot import.
REALTIME_VOICE = env_voice("REALTIME_VOICE", DEFAULT_REALTIME_VOICE, check_realtime_voice)
REALTIME_VOICE_CHOICES = REALTIME_VOICES
LEGACY_VOICE_JA = env_voice("LEGACY_VOICE_JA", DEFAULT_LOCAL_VOICES["ja"], partial(check_local_voice, language="ja"))
LEGACY_VOICE_EN = env_voice("LEGACY_VOICE_EN", DEFAULT_LOCAL_VOICES["en"], partial(check_local_voice, language="en"))
# Legacy path: silence that ends an utterance, and where the joined Whisper model is kept.
LEGACY_END_OF_SPEECH_SILENCE_MS = env.int("LEGACY_END_OF_SPEECH_SILENCE_MS", default=600)
# Recognition starts after this much silence and is kept if the visitor stays quiet until the end of speech.
LEGACY_SPECULATIVE_SILENCE_MS = env.int("LEGACY_SPECULATIVE_SILENCE_MS", default=200)
# Whisper's words are acted on only below this probability that the audio held no speech (0.6, Whisper's own
# default) and at or above this average token log-probability (-1.0, Whisper's own); otherwise the kiosk asks again.
LEGACY_NO_SPEECH_THRESHOLD = env.float("LEGACY_NO_SPEECH_THRESHOLD", default=0.6)
LEGACY_LOGPROB_THRESHOLD = env.float("LEGACY_LOGPROB_THRESHOLD", default=-1.0)
SPEECH_WARM_UP = env.bool("SPEECH_WARM_UP", default=True)
WHISPER_MODEL_DIR = env_path("WHISPER_MODEL_DIR", Path("data") / "models" / "whisper-base")
FEATURE_REALTIME_MODE_ENABLED = env.bool("FEATURE_REALTIME_MODE_ENABLED", default=False)
# Set to false explicitly (not left empty): a kill switch that holds Realtime off whatever the admin says.
REALTIME_DISABLED_BY_ENVIRONMENT = (
    bool(os.environ.get("FEATURE_REALTIME_MODE_ENABLED", "").strip()) and not FEATURE_REALTIME_MODE_ENABLED
)
FEATURE_REALTIME_ROLLOUT_PERCENTAGE = env.float("FEATURE_REALTIME_ROLLOUT_PERCENTAGE", default=0.0)
FEATURE_REALTIME_ALLOWLIST_SESSIONS = env.list("FEATURE_REALTIME_ALLOWLIST_SESSIONS", default=[])
REALTIME_COST_LIMIT_PER_HOUR = env.float("REALTIME_COST_LIMIT_PER_HOUR", default=50.0)
# At session end, how long to wait for the usage of a Realtime reply still in flight (it is billed all the same).
REALTIME_CLOSE_DRAIN_SECONDS = env.float("REALTIME_CLOSE_DRAIN_SECONDS", default=3.0)
# USD; a stage promotion needs Realtime's cost per completed visit over the soak at or below this.
REALTIME_MAX_COST_PER_VISIT = env.float("REALTIME_MAX_COST_PER_VISIT", default=0.50)
# Promotion gates: Realtime may complete this share fewer visits than Legacy (0.05 = 5 points) ...
PROMOTION_COMPLETED_MARGIN = env.float("PROMOTION_COMPLETED_MARGIN", default=0.05)
# ... and be rated this much lower on the 1-3 satisfaction scale, once each path has this many ratings.
PROMOTION_SATISFACTION_MARGIN = env.float("PROMOTION_SATISFACTION_MARGIN", default=0.2)
PROMOTION_MIN_RATINGS = env.int("PROMOTION_MIN_RATINGS", default=20)
ALERT_COST_THRESHOLD = env.float("ALERT_COST_THRESHOLD", default=40.0)
ALERT_ERROR_RATE_THRESHOLD = env.float("ALERT_ERROR_RATE_THRESHOLD", default=0.1)
# Metrics app: alerts, Realtime cost reservations, the Prometheus scrape (docs/metrics.md).
ALERT_MIN_SAMPLE = env.int("ALERT_MIN_SAMPLE", default=20)  # no error-rate alert on fewer sessions or turns
ALERT_WEBHOOK_URL = env("ALERT_WEBHOOK_URL", default="")  # Slack-compatible incoming webhook; empty: none
ALERT_WEBHOOK_TIMEOUT_SECONDS = env.float("ALERT_WEBHOOK_TIMEOUT_SECONDS", default=3.0)
REALTIME_SESSION_COST_ESTIMATE = env.float("REALTIME_SESSION_COST_ESTIMATE", default=0.5)  # USD, reservation floor
REALTIME_RESERVATION_TTL_SECONDS = env.int("REALTIME_RESERVATION_TTL_SECONDS", default=1800)
METRICS_SCRAPE_TOKEN = env("METRICS_SCRAPE_TOKEN", default="")  # Bearer token for /metrics; empty: staff only
API_TOKEN_TTL_DAYS = env.int("API_TOKEN_TTL_DAYS", default=90)  # REST API tokens expire this long after issue
# Turn and session metrics, cost buckets and settled reservations older than this are deleted daily.
METRICS_RETENTION_DAYS = env.int("METRICS_RETENTION_DAYS", default=180)

# Reception behaviour.
VISITOR_RETENTION_DAYS = env.int("VISITOR_RETENTION_DAYS", default=90)
# Hour (UTC, huey's clock) of the daily visitor purge and metric pruning; the autopilot's and the abandoned-visit
# clean-up's period in minutes (background tasks, docs/deploy.md).
DAILY_PURGE_HOUR = env.int("DAILY_PURGE_HOUR", default=3)
ROLLOUT_AUTOPILOT_EVERY_MINUTES = env.int("ROLLOUT_AUTOPILOT_EVERY_MINUTES", default=15)
ABANDONED_VISITS_EVERY_MINUTES = env.int("ABANDONED_VISITS_EVERY_MINUTES", default=5)
NOTIFICATION_MAX_ATTEMPTS = env.int("NOTIFICATION_MAX_ATTEMPTS", default=3)
NOTIFICATION_RETRY_DELAY_SECONDS = env.float("NOTIFICATION_RETRY_DELAY_SECONDS", default=1.0)
NOTIFICATION_WEBHOOK_TIMEOUT_SECONDS = env.float("NOTIFICATION_WEBHOOK_TIMEOUT_SECONDS", default=5.0)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="reception@localhost")
# Outgoing mail: EMAIL_URL, e.g. smtp+tls://user:password@smtp.example.com:587 (django-environ sets the backend,
# host, port, user, password and TLS); default: the console backend (e-mails are printed).
vars().update({key: value for key, value in env.email_url("EMAIL_URL", default="consolemail://").items() if value})
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
KIOSK_PAIRING_LINK_HOURS = env.int("KIOSK_PAIRING_LINK_HOURS", default=24)
KIOSK_MAX_TEXT_CHARS = 1000
KIOSK_MAX_FRAME_BYTES = env.int("KIOSK_MAX_FRAME_BYTES", default=256 * 1024)
# No visitor speech or text this long after a reply: the session ends and the kiosk forgets the visitor.
KIOSK_IDLE_TIMEOUT_SECONDS = env.float("KIOSK_IDLE_TIMEOUT_SECONDS", default=60.0)

# Rate limits (voice/rate_limits.py; counters in Redis with REDIS_URL, else in the one server process).
# Per kiosk: frames per second (the kiosk page sends 50 audio frames/s), and audio no faster than
# FACTOR x real time averaged over BURST seconds; a refused frame gets `error` `rate_limited`.
KIOSK_RATE_MESSAGES_PER_SECOND = env.int("KIOSK_RATE_MESSAGES_PER_SECOND", default=100)
KIOSK_RATE_AUDIO_REALTIME_FACTOR = env.float("KIOSK_RATE_AUDIO_REALTIME_FACTOR", default=1.5)
KIOSK_RATE_AUDIO_BURST_SECONDS = env.int("KIOSK_RATE_AUDIO_BURST_SECONDS", default=2)
# More refusals than this within the window close the kiosk's socket with 4429.
KIOSK_RATE_FLOOD_REFUSALS = env.int("KIOSK_RATE_FLOOD_REFUSALS", default=100)
KIOSK_RATE_FLOOD_WINDOW_SECONDS = env.int("KIOSK_RATE_FLOOD_WINDOW_SECONDS", default=10)
# New sockets per minute: per kiosk, and per client address (a lobby of 100 kiosks behind one NAT address).
KIOSK_RATE_CONNECTS_PER_KIOSK_PER_MINUTE = env.int("KIOSK_RATE_CONNECTS_PER_KIOSK_PER_MINUTE", default=20)
KIOSK_RATE_CONNECTS_PER_ADDRESS_PER_MINUTE = env.int("KIOSK_RATE_CONNECTS_PER_ADDRESS_PER_MINUTE", default=600)
# Live sockets per kiosk: a newer one closes the oldest (4409) beyond this; 2 lets a reconnect overlap.
KIOSK_MAX_CONNECTIONS_PER_KIOSK = env.int("KIOSK_MAX_CONNECTIONS_PER_KIOSK", default=2)
# Operations API throttles (metrics/throttling.py), DRF rate strings: per staff user (token or session),
# per address for anonymous calls (the health check), and per user for the emergency/rollout POSTs.
API_THROTTLE_USER = env("API_THROTTLE_USER", default="300/minute")
API_THROTTLE_ANON = env("API_THROTTLE_ANON", default="120/minute")
API_THROTTLE_CONTROL = env("API_THROTTLE_CONTROL", default="10/minute")
# Admin login lockout (django-axes): this many failures for one user name from one address lock it for
# AXES_COOLOFF_MINUTES; `manage.py axes_reset` (or axes_reset_username NAME) unlocks at once.
AUTHENTICATION_BACKENDS = [
    "reception_project.login_lockout.LoginLockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_MINUTES = env.int("AXES_COOLOFF_MINUTES", default=15)
AXES_COOLOFF_TIME = timedelta(minutes=AXES_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True

# Logging: one JSON line per event (LOG_FORMAT=plain for a terminal), tagged with session_id and kiosk_id;
# core.logs.SafeLogFilter on every handler keeps keys, tokens and audio out, and visitor names and
# transcripts too unless REALTIME_ENABLE_DETAILED_LOGGING is on. LOG_FILE adds a rotating file.
FEATURE_ENABLE_DEBUG_LOGGING = env.bool("FEATURE_ENABLE_DEBUG_LOGGING", default=False)
REALTIME_ENABLE_DETAILED_LOGGING = env.bool("REALTIME_ENABLE_DETAILED_LOGGING", default=False)
LOG_LEVEL = "DEBUG" if FEATURE_ENABLE_DEBUG_LOGGING else env("LOG_LEVEL", default="INFO")
LOG_FORMAT = env("LOG_FORMAT", default="json")
LOG_FILE = env_path("LOG_FILE")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"safe": {"()": "core.logs.SafeLogFilter"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            "json_ensure_ascii": False,
        },
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["safe"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # httpx logs every request URL at INFO; webhook URLs carry tokens, so it logs warnings only.
    "loggers": {
        "django": {"level": "INFO"},
        "django.server": {"level": "INFO", "propagate": True},  # through the root's filtered handlers, not its own
        # uvicorn's own handlers give way to the root's filtered ones. Its access log stays off (deploy/serve.py
        # turns it off too): a request line can carry a kiosk pairing token.
        "uvicorn": {"level": "INFO", "handlers": [], "propagate": True},
        "uvicorn.access": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
if LOG_FILE:
    Path(LOG_FILE).parent.mkdir(parents=True, exist_ok=True)
    LOGGING["handlers"]["file"] = {
        "class": "logging.handlers.RotatingFileHandler",
        "filename": LOG_FILE,
        "maxBytes": env.int("LOG_FILE_MAX_BYTES", default=10 * 1024 * 1024),
        "backupCount": env.int("LOG_FILE_BACKUPS", default=5),
        "encoding": "utf-8",
        "formatter": "json",
        "filters": ["safe"],
    }
    LOGGING["root"]["handlers"].append("file")
# The task consumer (`run_huey`) adds a handler of its own to a "huey" logger that has none: this one has ours.
LOGGING["loggers"]["huey"] = {"handlers": LOGGING["root"]["handlers"], "level": "INFO", "propagate": False}

# REST API (metrics app): the OpenAPI schema at /api/v1/schema.
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": ["metrics.throttling.AnonThrottle", "metrics.throttling.UserThrottle"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "ai-reception operations API",
    "VERSION": "1.0.0",
    "DESCRIPTION": "Realtime status, metrics, cost and emergency controls (docs/api.md).",
    "SERVE_INCLUDE_SCHEMA": False,
}
