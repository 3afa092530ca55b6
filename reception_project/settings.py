"""Settings of ai-reception, read once from the environment (or `.env`).

Every variable of the contract has its default here; `.env.realtime.template` documents them.
"""

from __future__ import annotations

import os
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

SECRET_KEY = env("DJANGO_SECRET_KEY", default="insecure-dev-key-change-me-in-production")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
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
    "simple_history",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'data' / 'ai_reception.db'}")}
# Persistent connections: Channels runs every database call through close_old_connections, which
# would otherwise reconnect (and re-run the SQLite pragmas) on each turn.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=300)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
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
if REDIS_URL:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Where the reception workflow checkpoints its state when the database is SQLite
# (PostgreSQL deployments keep checkpoints in the same database).
WORKFLOW_CHECKPOINT_PATH = env("WORKFLOW_CHECKPOINT_PATH", default=str(BASE_DIR / "data" / "workflow_checkpoints.db"))

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

# OpenAI and the voice paths (contract section 2).
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
# Legacy path: silence that ends an utterance, and where the joined Whisper model is kept.
LEGACY_END_OF_SPEECH_SILENCE_MS = env.int("LEGACY_END_OF_SPEECH_SILENCE_MS", default=600)
SPEECH_WARM_UP = env.bool("SPEECH_WARM_UP", default=True)
WHISPER_MODEL_DIR = env("WHISPER_MODEL_DIR", default=str(BASE_DIR / "data" / "models" / "whisper-base"))
FEATURE_REALTIME_MODE_ENABLED = env.bool("FEATURE_REALTIME_MODE_ENABLED", default=False)
FEATURE_REALTIME_ROLLOUT_PERCENTAGE = env.float("FEATURE_REALTIME_ROLLOUT_PERCENTAGE", default=0.0)
FEATURE_REALTIME_ALLOWLIST_SESSIONS = env.list("FEATURE_REALTIME_ALLOWLIST_SESSIONS", default=[])
REALTIME_COST_LIMIT_PER_HOUR = env.float("REALTIME_COST_LIMIT_PER_HOUR", default=50.0)
# USD; a stage promotion needs Realtime's cost per completed visit over the soak at or below this.
REALTIME_MAX_COST_PER_VISIT = env.float("REALTIME_MAX_COST_PER_VISIT", default=0.50)
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

# Reception behaviour.
VISITOR_RETENTION_DAYS = env.int("VISITOR_RETENTION_DAYS", default=90)
NOTIFICATION_MAX_ATTEMPTS = env.int("NOTIFICATION_MAX_ATTEMPTS", default=3)
NOTIFICATION_RETRY_DELAY_SECONDS = env.float("NOTIFICATION_RETRY_DELAY_SECONDS", default=1.0)
NOTIFICATION_WEBHOOK_TIMEOUT_SECONDS = env.float("NOTIFICATION_WEBHOOK_TIMEOUT_SECONDS", default=5.0)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="reception@localhost")
EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
KIOSK_PAIRING_LINK_HOURS = env.int("KIOSK_PAIRING_LINK_HOURS", default=24)
KIOSK_MAX_TEXT_CHARS = 1000
KIOSK_MAX_FRAME_BYTES = env.int("KIOSK_MAX_FRAME_BYTES", default=256 * 1024)
# No visitor speech or text this long after a reply: the session ends and the kiosk forgets the visitor.
KIOSK_IDLE_TIMEOUT_SECONDS = env.float("KIOSK_IDLE_TIMEOUT_SECONDS", default=60.0)

# Logging: one line per event; audio and keys never reach a log.
FEATURE_ENABLE_DEBUG_LOGGING = env.bool("FEATURE_ENABLE_DEBUG_LOGGING", default=False)
REALTIME_ENABLE_DETAILED_LOGGING = env.bool("REALTIME_ENABLE_DETAILED_LOGGING", default=False)
LOG_LEVEL = "DEBUG" if FEATURE_ENABLE_DEBUG_LOGGING else env("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # httpx logs every request URL at INFO; webhook URLs carry tokens, so it logs warnings only.
    "loggers": {
        "django": {"level": "INFO"},
        "daphne": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}

# REST API (metrics app): the OpenAPI schema at /api/v1/schema.
REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}
SPECTACULAR_SETTINGS = {
    "TITLE": "ai-reception operations API",
    "VERSION": "1.0.0",
    "DESCRIPTION": "Realtime status, metrics, cost and emergency controls (docs/api.md).",
    "SERVE_INCLUDE_SCHEMA": False,
}
