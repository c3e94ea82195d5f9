"""Settings of the example project: a stock ``startproject`` plus ``INGEST_MW``.

For a local demo only (DEBUG, a fixed secret key, example credentials).
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-example-only")
DEBUG = True
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "eventlog",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "exampleproject.urls"

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

WSGI_APPLICATION = "exampleproject.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "db.sqlite3",
    }
}

USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The ingest endpoints (mounted at /ingest/ in urls.py) store into the
# project's own model. Real credentials belong in the environment.
INGEST_MW = {
    "BETTERSTACK_TOKENS": {"example": os.environ.get("INGEST_TOKEN", "example-token")},
    "BASELIME_API_KEYS": {"example": os.environ.get("INGEST_API_KEY", "example-key")},
    "MODEL": "eventlog.LogEvent",
    # Better Stack's 500/minute per client is on by default. To count it in
    # Redis, shared by every worker, behind a proxy on this host:
    # "RATE_LIMIT_STORAGE": "redis://localhost:6379/0",
    # "TRUSTED_PROXIES": ["127.0.0.1/32"],
}
