"""Django settings. Every value comes from ``config.env``; see `.env.example` for the list."""

from __future__ import annotations

from pathlib import Path

import dj_database_url

from storeloop.config.env import (
    env_bool,
    env_float,
    env_int,
    env_list,
    env_str,
    persisted_secret,
)

BASE_DIR = Path(__file__).resolve().parents[3]
DATA_DIR = Path(env_str("DATA_DIR", str(BASE_DIR / "var"))).resolve()

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = persisted_secret("SECRET_KEY", DATA_DIR)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# Public base URL the shop uses to reach our webhook receiver (and links in messages).
PUBLIC_URL = env_str("PUBLIC_URL", f"http://127.0.0.1:{env_int('PORT', 8000)}").rstrip("/")

# Encryption keys for secrets at rest (Fernet). The first key encrypts; all keys decrypt, which is
# how rotation works: prepend a new key, run `storeloop keys rotate`, then drop the old one.
ENCRYPTION_KEYS = env_list("ENCRYPTION_KEYS", []) or [persisted_secret("ENCRYPTION_KEY", DATA_DIR, "fernet")]

WEBHOOK_MAX_BYTES = env_int("WEBHOOK_MAX_BYTES", 5 * 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = WEBHOOK_MAX_BYTES + 1024
RECONCILE_INTERVAL_SECONDS = env_int("RECONCILE_INTERVAL", 300, minimum=10)
TASK_LEASE_SECONDS = env_int("TASK_LEASE_SECONDS", 60, minimum=5)
TASK_MAX_ATTEMPTS = env_int("TASK_MAX_ATTEMPTS", 8, minimum=1)
TASK_RETRY_BASE_SECONDS = env_float("TASK_RETRY_BASE_SECONDS", 2.0)
TASK_RETRY_MAX_SECONDS = env_float("TASK_RETRY_MAX_SECONDS", 900.0)
TASK_RESULT_RETENTION_DAYS = env_int("TASK_RESULT_RETENTION_DAYS", 7, minimum=1)
INBOX_RETENTION_DAYS = env_int("INBOX_RETENTION_DAYS", 30, minimum=1)
WOOCOMMERCE_TIMEOUT_SECONDS = env_float("WOOCOMMERCE_TIMEOUT", 20.0)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "ninja",  # serves Swagger UI's files itself: /api/v1/docs works without a CDN (closed networks, CSP)
    "django_tasks",
    "django_tasks_db",
    "storeloop.core",
    "storeloop.stores",
    "storeloop.contacts",
    "storeloop.orders",
    "storeloop.inbox",
    "storeloop.metrics",
    "storeloop.crm",
    "storeloop.backfill",
    "storeloop.consent",
    "storeloop.messaging",
    "storeloop.messaging.campaigns",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "storeloop.config.urls"
WSGI_APPLICATION = "storeloop.config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'storeloop.sqlite3'}")
_db = dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # Writers queue on a file lock and WAL checkpoints run off the commit path (see the backend).
    if env_bool("SQLITE_WRITE_QUEUE", True):
        _db["ENGINE"] = "storeloop.core.sqlite_backend"
    _db["CONN_MAX_AGE"] = 0 if DATABASE_URL.endswith(":memory:") else 60
    _db["OPTIONS"] = {
        # IMMEDIATE takes the write lock at BEGIN, so two writers queue on the busy timeout instead
        # of failing half-way with "database is locked"; WAL lets readers run beside the writer.
        "transaction_mode": "IMMEDIATE",
        "timeout": env_int("SQLITE_BUSY_TIMEOUT", 20),
        # wal_autocheckpoint is only the safety net: the backend checkpoints in the background.
        # A 64 MiB page cache and memory-mapped reads: index pages of a million-order mirror stay
        # hot instead of being re-read through syscalls on every lookup (backfill, metrics).
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; "
        "PRAGMA wal_autocheckpoint=10000; PRAGMA cache_size=-65536; PRAGMA mmap_size=1073741824; "
        "PRAGMA temp_store=MEMORY;",
    }
    _db["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TASKS = {
    "default": {
        "BACKEND": "django_tasks_db.DatabaseBackend",
        "QUEUES": ["default", "webhooks", "sync", "maintenance"],
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# The web server: `storeloop web` (gunicorn) binds HOST:PORT with WEB_WORKERS processes.
HOST = env_str("HOST", "127.0.0.1")
PORT = env_int("PORT", 8000, minimum=1)
WEB_WORKERS = env_int("WEB_WORKERS", 4, minimum=1)
DEMO = env_str("DEMO", "auto")  # auto: run the demo shop when no real shop is connected; on | off
DEMO_PORT = env_int("DEMO_PORT", 8100, minimum=1)

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = PUBLIC_URL.startswith("https://")
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        # django_tasks logs every state change; our worker logs one line per outcome instead.
        "django_tasks": {"level": "WARNING"},
    },
}
