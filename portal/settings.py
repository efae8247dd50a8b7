"""Settings for the mTLS developer portal, all from the environment (see README, "Configuration").

With nothing configured, a fresh checkout runs on embedded defaults: SQLite under var/, the built-in
Cloudflare emulator, console email. Production sets DATABASE_URL, REDIS_URL and the Cloudflare variables.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
import django_stubs_ext
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from portal.env import (
    env_bool,
    env_float,
    env_hostnames,
    env_int,
    env_list,
    env_rate,
    env_secret,
    env_str,
    generated_fernet_key,
    generated_secret,
    stand_in_chosen,
)
from portal.logs import LOG_FORMATS, logging_config

# Lets classes that django-stubs types as generic be subscripted at run time, as in `admin.ModelAdmin[Certificate]`.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("PORTAL_VAR_DIR") or BASE_DIR / "var")

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_secret("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY is required when DEBUG is off (or set DEBUG=true for development)")
    SECRET_KEY = generated_secret(VAR_DIR / "secret_key")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "ninja",
    "portal.apps.PortalConfig",
    "certificates",
]

MIDDLEWARE = [
    # First: every log line of a request, other middleware's included, carries its id (portal/logs.py).
    "portal.logs.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "portal.stand_ins.EmulatedHeaderMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "portal.middleware.StaffTwoFactorMiddleware",
    "portal.outages.RedisOutageMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

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
                "portal.context_processors.cloudflare_mode",
            ],
        },
    },
]

# Database: SQLite under var/ unless DATABASE_URL says otherwise (PostgreSQL in production and CI).
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'portal.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # libpq waits for ever on a server that never answers: a request, a task and /readyz would hang with it. A
    # connect_timeout in DATABASE_URL's query string wins.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env_int("DATABASE_CONNECT_TIMEOUT", 5, minimum=1)
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis: optional. It backs the cache and the Cloudflare call budget shared by all processes.
REDIS_URL = env_str("REDIS_URL")
REDIS_SOCKET_OPTIONS = {"socket_connect_timeout": 2.0, "socket_timeout": 2.0}
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # A frozen Redis must fail a request quickly (a 503), not hold it until gunicorn's timeout.
            "OPTIONS": REDIS_SOCKET_OPTIONS,
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Accounts (django-allauth): email and password, verified email, TOTP for staff (portal/middleware.py).
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[mTLS portal] "
# Failed logins are throttled in the cache (portal/accounts.py): per client address ("ip"), per account at one
# client address ("key"), and per account from anywhere with a ceiling one client cannot reach alone.
ACCOUNT_ADAPTER = "portal.accounts.AccountAdapter"
ACCOUNT_RATE_LIMITS = {
    "login_failed": env_str("LOGIN_FAILED_RATE_LIMIT", "10/m/ip,5/5m/key"),
    "login_failed_account": env_str("LOGIN_FAILED_ACCOUNT_RATE_LIMIT", "100/h/key"),
    "signup": "20/m/ip",
    "reset_password": "20/m/ip,5/m/key",
}
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = env_str("MFA_TOTP_ISSUER", "mTLS developer portal")
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "certificates:dashboard"
ACCOUNT_LOGOUT_REDIRECT_URL = "home"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT") or VAR_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]
if DEBUG:
    # WhiteNoise serves from the finders in development but warns when STATIC_ROOT is missing;
    # production fills it with collectstatic (see Dockerfile).
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)

# Security headers; cookies are secure unless DEBUG (plain http on localhost).
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
BEHIND_TLS_PROXY = env_bool("BEHIND_TLS_PROXY", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_TLS_PROXY else None
# Behind the TLS proxy every request that reached the proxy over plain http is redirected to https (the proxy
# should do it first; this catches a proxy that forwards http). /healthz is exempt: probes from inside the
# cluster or the container reach the portal directly over http, with no X-Forwarded-Proto; so do /readyz and
# Prometheus's scrapes of /metrics (README, "Health, readiness and metrics").
SECURE_SSL_REDIRECT = BEHIND_TLS_PROXY
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
# HSTS goes out on https answers only (so never on localhost over http). includeSubDomains and preload bind
# hosts and a future the portal's operator may not control, so they are off unless asked for.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if BEHIND_TLS_PROXY else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# check --deploy warns about those two choices (W005, W021) on every run; they are decided above and in the
# README, so the warnings would only hide new ones.
SILENCED_SYSTEM_CHECKS = ["security.W005", "security.W021"]
# Content-Security-Policy (django-csp) on every answer: scripts and styles only from the portal's own static
# files, nothing inline. img-src allows data: for the TOTP QR code (allauth renders it as a data: URI) and
# the empty favicon of base.html.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    }
}
# Reverse proxies in front of the portal that append to X-Forwarded-For (for the audit log's addresses).
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0)

# Email: SMTP when EMAIL_HOST is set. The console backend prints every message into the log, password-reset
# links included, so whoever reads the log could take over accounts: it is the default only with DEBUG, and
# production must ask for it by name (EMAIL_CONSOLE=true, e.g. a demo).
EMAIL_HOST = env_str("EMAIL_HOST")
EMAIL_CONSOLE = stand_in_chosen(
    "EMAIL_CONSOLE",
    real="EMAIL_HOST",
    real_value=EMAIL_HOST,
    debug=DEBUG,
    why="console email, which prints mail, reset links included, into the log,",
)
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
    EMAIL_HOST_PASSWORD = env_secret("EMAIL_HOST_PASSWORD")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "mtls-portal@localhost")

# Logs (portal/logs.py): one JSON object per line with LOG_FORMAT=json, a plain line by default; every line carries
# the request id, user id and Celery task it belongs to, and goes through a filter that scrubs secrets.
LOG_FORMAT = env_str("LOG_FORMAT", "plain").lower()
if LOG_FORMAT not in LOG_FORMATS:
    raise ImproperlyConfigured(f"LOG_FORMAT must be {' or '.join(LOG_FORMATS)}, got {LOG_FORMAT!r}")
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
    raise ImproperlyConfigured(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {LOG_LEVEL!r}")
LOGGING = logging_config(LOG_FORMAT, LOG_LEVEL)
# The worker keeps this configuration instead of installing Celery's own handler on the root logger.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# Cloudflare
# The built-in emulator (cloudflare_emulator, in-process, state in var/) lets a fresh checkout work with no
# account: it is the default with DEBUG and no CLOUDFLARE_API_TOKEN. Its certificates come from a local test
# CA and are worthless against the real API, so production never falls back to it silently: without a token
# start-up fails unless CLOUDFLARE_EMULATOR=true asks for it (a demo). While it is in use, pages show a banner,
# every answer carries X-Cloudflare-Emulated: true and each process logs a warning (portal/apps.py).
CLOUDFLARE_API_BASE_URL = env_str("CLOUDFLARE_API_BASE_URL", "https://api.cloudflare.com/client/v4")
CLOUDFLARE_API_TOKEN = env_secret("CLOUDFLARE_API_TOKEN")
CLOUDFLARE_EMULATED = stand_in_chosen(
    "CLOUDFLARE_EMULATOR",
    real="CLOUDFLARE_API_TOKEN",
    real_value=CLOUDFLARE_API_TOKEN,
    debug=DEBUG,
    why="the built-in emulator",
)
CLOUDFLARE_ZONE_ID = env_str("CLOUDFLARE_ZONE_ID")
CLOUDFLARE_ACCOUNT_ID = env_str("CLOUDFLARE_ACCOUNT_ID")
if CLOUDFLARE_EMULATED:
    # Fixed ids for the emulator's one zone and account; any 32-hex id works there.
    CLOUDFLARE_ZONE_ID = CLOUDFLARE_ZONE_ID or "0" * 32
    CLOUDFLARE_ACCOUNT_ID = CLOUDFLARE_ACCOUNT_ID or "a" * 32
elif not CLOUDFLARE_ZONE_ID:
    raise ImproperlyConfigured("CLOUDFLARE_ZONE_ID is required when CLOUDFLARE_API_TOKEN is set")
if CLOUDFLARE_API_TOKEN and not DEBUG and not REDIS_URL:
    # Without Redis each process (web, worker, beat) counts only its own calls, and together they can pass
    # Cloudflare's limit and lock the portal out for 5 minutes, revocations included.
    raise ImproperlyConfigured(
        "REDIS_URL is required when CLOUDFLARE_API_TOKEN is set: every process must draw from one call budget"
    )
CLOUDFLARE_EMULATOR_STATE = Path(env_str("CLOUDFLARE_EMULATOR_STATE") or VAR_DIR / "cloudflare-emulator.json")
CLOUDFLARE_EMULATOR_TRANSITION_DELAY = env_float("CLOUDFLARE_EMULATOR_TRANSITION_DELAY", 30.0, minimum=0)
CLOUDFLARE_TIMEOUT = env_float("CLOUDFLARE_TIMEOUT", 30.0, minimum=1)
CLOUDFLARE_RETRY_ATTEMPTS = env_int("CLOUDFLARE_RETRY_ATTEMPTS", 4, minimum=1)
CLOUDFLARE_RETRY_BASE_DELAY = env_float("CLOUDFLARE_RETRY_BASE_DELAY", 0.5, minimum=0)
# A web request's time with Cloudflare in total (README, "Slow or failing Cloudflare"): well under gunicorn's
# timeout (gunicorn.conf.py), so a slow Cloudflare gets a 503 with a message instead of a killed worker.
CLOUDFLARE_WEB_DEADLINE = env_float("CLOUDFLARE_WEB_DEADLINE", 10.0, minimum=1)
# The read timeout of one attempt in a web request: below the deadline, so a timed-out revocation leaves time to
# ask Cloudflare whether it happened.
CLOUDFLARE_WEB_TIMEOUT = env_float("CLOUDFLARE_WEB_TIMEOUT", 4.0, minimum=0.5)
if CLOUDFLARE_WEB_TIMEOUT >= CLOUDFLARE_WEB_DEADLINE:
    raise ImproperlyConfigured(
        f"CLOUDFLARE_WEB_TIMEOUT must be less than CLOUDFLARE_WEB_DEADLINE ({CLOUDFLARE_WEB_DEADLINE:g}), "
        f"got {CLOUDFLARE_WEB_TIMEOUT:g}"
    )
# The longest a web request sleeps for a Retry-After or waits for the call budget (a longer wait fails at once).
CLOUDFLARE_WEB_MAX_WAIT = env_float("CLOUDFLARE_WEB_MAX_WAIT", 2.0, minimum=0)
# Cloudflare allows 1,200 calls per 300 s per user across all tokens, the dashboard's included (FACTS.md §9):
# the default leaves 200 to people using the dashboard with the same account (check_cloudflare warns above 1,100).
CLOUDFLARE_CALL_BUDGET = env_int("CLOUDFLARE_CALL_BUDGET", 1000, minimum=1)
CLOUDFLARE_CALL_BUDGET_WINDOW = env_float("CLOUDFLARE_CALL_BUDGET_WINDOW", 300.0, minimum=1)
# Calls of each window that interactive issuance leaves free: revocation and the firewall sync can always use them,
# however many certificates users request (README, "Fair use of Cloudflare").
CLOUDFLARE_BUDGET_RESERVED = env_int("CLOUDFLARE_BUDGET_RESERVED", CLOUDFLARE_CALL_BUDGET // 4, minimum=0)
if CLOUDFLARE_BUDGET_RESERVED >= CLOUDFLARE_CALL_BUDGET:
    raise ImproperlyConfigured(
        f"CLOUDFLARE_BUDGET_RESERVED must be less than CLOUDFLARE_CALL_BUDGET ({CLOUDFLARE_CALL_BUDGET}), "
        f"got {CLOUDFLARE_BUDGET_RESERVED}"
    )
PORTAL_API_HOSTNAMES = env_hostnames("PORTAL_API_HOSTNAMES", ["api.example.com"] if CLOUDFLARE_EMULATED else [])
if not PORTAL_API_HOSTNAMES and not CLOUDFLARE_EMULATED:
    # Without them the firewall rules would protect nothing (and a sync would remove the base rule).
    raise ImproperlyConfigured("PORTAL_API_HOSTNAMES is required when CLOUDFLARE_API_TOKEN is set")
PORTAL_RULE_REF_PREFIX = env_str("PORTAL_RULE_REF_PREFIX", "mtls_portal_")
# Custom rules a zone may hold, by plan (FACTS.md §7); CLOUDFLARE_CUSTOM_RULES_LIMIT overrides.
CUSTOM_RULES_BY_PLAN = {"free": 5, "pro": 20, "business": 100, "enterprise": 1000}
CLOUDFLARE_PLAN = env_str("CLOUDFLARE_PLAN", "free").lower()
if CLOUDFLARE_PLAN not in CUSTOM_RULES_BY_PLAN:
    raise ImproperlyConfigured(f"CLOUDFLARE_PLAN must be one of {', '.join(CUSTOM_RULES_BY_PLAN)}")
CLOUDFLARE_CUSTOM_RULES_LIMIT = env_int(
    "CLOUDFLARE_CUSTOM_RULES_LIMIT", CUSTOM_RULES_BY_PLAN[CLOUDFLARE_PLAN], minimum=1
)

# Celery: Redis when REDIS_URL is set, otherwise kombu's filesystem transport under var/ so that a real
# worker and beat still run with no services. Tasks are never run eagerly in the running portal.
CELERY_BROKER_URL = REDIS_URL or "filesystem://"
CELERY_QUEUE_DIR = VAR_DIR / "celery"
# With Redis, every socket has a timeout and a health check: a Redis that restarts or freezes shows up as a
# connection error within seconds (not a read blocked forever), and the worker then reconnects (below).
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {
        "socket_connect_timeout": 3,
        "socket_timeout": 5,  # above kombu's 1 s BRPOP timeout, so an idle worker is not mistaken for a dead link
        "socket_keepalive": True,
        "retry_on_timeout": True,
        "health_check_interval": 10,
    }
    if REDIS_URL
    else {
        "data_folder_in": str(CELERY_QUEUE_DIR / "queue"),
        "data_folder_out": str(CELERY_QUEUE_DIR / "queue"),
        "processed_folder": str(CELERY_QUEUE_DIR / "processed"),
        "control_folder": str(CELERY_QUEUE_DIR / "control"),
        "store_processed": False,
    }
)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Beat writes its schedule file after every task it sends, so that a restarted beat knows what it last sent.
CELERY_BEAT_SYNC_EVERY = 1
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Worker and beat outlive a Redis outage of any length: retry the broker forever, at start-up too (compose may
# start them before Redis answers), instead of exiting after 100 attempts.
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# A task running when the broker link drops is redelivered after the reconnect (acks_late): stop the running copy
# so that it does not run twice at once (Celery 6's default; every task here is claim, call, record anyway).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# A web request that queues a task while Redis is down gives up after two attempts (at most twice the socket
# timeout when Redis hangs, at once when it refuses); the database's "sync requested" mark
# (FirewallState.sync_requested_at) makes sure the work is done once Redis is back.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
CERTIFICATE_POLL_SECONDS = env_float("CERTIFICATE_POLL_SECONDS", 30.0, minimum=1)
RECONCILE_SECONDS = env_float("RECONCILE_SECONDS", 900.0, minimum=10)
# Cloudflare calls one reconciliation pass may make (list pages of 50 and single reads); a zone that needs more is
# swept over several passes, each resuming where the last stopped. 20 lists 1,000 certificates in use in one pass.
RECONCILE_CALLS_PER_PASS = env_int("RECONCILE_CALLS_PER_PASS", 20, minimum=1)
FIREWALL_SYNC_SECONDS = env_float("FIREWALL_SYNC_SECONDS", 600.0, minimum=10)
FIREWALL_SYNC_DEBOUNCE_SECONDS = env_int("FIREWALL_SYNC_DEBOUNCE_SECONDS", 5, minimum=0)
# How often beat queues the syncs that changes requested but that were never queued or never ran (Redis was down).
FIREWALL_SYNC_REQUESTED_SECONDS = env_float("FIREWALL_SYNC_REQUESTED_SECONDS", 30.0, minimum=1)
# Convergence after faults (README, "Workers and the firewall"). The sweep costs no Cloudflare call by itself; each
# stuck row it re-queues costs one listing (a page per 50 certificates) at most once per stuck-issuing period.
SWEEP_STUCK_SECONDS = env_float("SWEEP_STUCK_SECONDS", 30.0, minimum=5)
# A live issuance ends within its read timeout and Retry-After waits; a row still `issuing` after this lost its
# process. Marking a live one early is harmless: its own answer no longer applies and reconciliation adopts it.
CERTIFICATE_STUCK_ISSUING_SECONDS = env_float("CERTIFICATE_STUCK_ISSUING_SECONDS", 60.0, minimum=10)
# Counted from the moment the client gave up on an ambiguous create (after its read timeout), so a create that
# commits late has that timeout plus this long to show up in the listing before the row is failed.
CERTIFICATE_UNCONFIRMED_GRACE_SECONDS = env_float("CERTIFICATE_UNCONFIRMED_GRACE_SECONDS", 60.0, minimum=10)
# After a ruleset write whose outcome is unknown, the sync runs again this long after it (one listing, writes only
# if a late commit undid something); a chain of such follow-ups stops after FIREWALL_FOLLOW_UPS_AT_MOST.
FIREWALL_FOLLOW_UP_SECONDS = env_float("FIREWALL_FOLLOW_UP_SECONDS", 30.0, minimum=1)
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "poll-certificates": {"task": "certificates.tasks.poll_certificates", "schedule": CERTIFICATE_POLL_SECONDS},
    "reconcile-zone": {"task": "certificates.tasks.reconcile_zone", "schedule": RECONCILE_SECONDS},
    "sync-firewalls": {"task": "certificates.tasks.sync_all_firewalls", "schedule": FIREWALL_SYNC_SECONDS},
    "sync-requested-firewalls": {
        "task": "certificates.tasks.sync_all_firewalls",
        "schedule": FIREWALL_SYNC_REQUESTED_SECONDS,
        "kwargs": {"requested_only": True},
    },
    "sweep-stuck": {"task": "certificates.tasks.sweep_stuck", "schedule": SWEEP_STUCK_SECONDS},
    "expiry-reminders": {"task": "certificates.tasks.send_expiry_reminders", "schedule": 3600.0},
    "refresh-crls": {"task": "certificates.tasks.refresh_crls", "schedule": 900.0},
    # Portal CA rotation: notices to renew, retired CAs removed when unused, expiry warnings (README, "Issuers").
    "retire-authorities": {"task": "certificates.tasks.retire_authorities", "schedule": 3600.0},
}

# Portal CAs (bring your own CA, README "Issuers"). Their private keys are stored encrypted with this key: one or
# more Fernet keys, one per line (the first encrypts, all decrypt, so a new key can be put first and the CAs
# re-encrypted). Give it as PORTAL_CA_ENCRYPTION_KEY_FILE in production. Without it the portal still runs on
# Cloudflare's managed CA, and refuses, with a message naming the setting, anything that needs a CA's key.
# With DEBUG and nothing set, a key is generated into var/ (development only, like SECRET_KEY).
PORTAL_CA_ENCRYPTION_KEY = env_secret("PORTAL_CA_ENCRYPTION_KEY")
if not PORTAL_CA_ENCRYPTION_KEY and DEBUG:
    PORTAL_CA_ENCRYPTION_KEY = generated_fernet_key(VAR_DIR / "portal-ca-encryption.key")
# A CRL says when the next one is due; it is rebuilt on every revocation, and by beat once less than half of
# this is left.
PORTAL_CRL_VALIDITY_HOURS = env_int("PORTAL_CRL_VALIDITY_HOURS", 24, minimum=1)

# Certificate policy (certificates/policy.py): the subject every CSR must carry, validity, quotas.
CERTIFICATE_SUBJECT_ORGANIZATION = env_str("CERTIFICATE_SUBJECT_ORGANIZATION", "Example Inc.")
CERTIFICATE_SUBJECT_ORGANIZATIONAL_UNIT = env_str("CERTIFICATE_SUBJECT_ORGANIZATIONAL_UNIT", "API Developers")
CERTIFICATE_COMMON_NAME_PREFIX = env_str("CERTIFICATE_COMMON_NAME_PREFIX", "portal-user-")
CERTIFICATE_VALIDITY_CHOICES = [int(d) for d in env_list("CERTIFICATE_VALIDITY_CHOICES", ["30", "90", "180", "365"])]
CERTIFICATE_DEFAULT_VALIDITY_DAYS = env_int("CERTIFICATE_DEFAULT_VALIDITY_DAYS", 365, minimum=1)
if (
    not CERTIFICATE_VALIDITY_CHOICES
    or min(CERTIFICATE_VALIDITY_CHOICES) < 1
    or max(CERTIFICATE_VALIDITY_CHOICES) > 3650
):
    raise ImproperlyConfigured("CERTIFICATE_VALIDITY_CHOICES must be days between 1 and 3650")
if CERTIFICATE_DEFAULT_VALIDITY_DAYS not in CERTIFICATE_VALIDITY_CHOICES:
    raise ImproperlyConfigured("CERTIFICATE_DEFAULT_VALIDITY_DAYS must be one of CERTIFICATE_VALIDITY_CHOICES")
CERTIFICATE_MAX_ACTIVE_PER_USER = env_int("CERTIFICATE_MAX_ACTIVE_PER_USER", 5, minimum=1)
# Per-user fair use of the Cloudflare budget: certificates a user may request, and revoke, per period.
CERTIFICATE_ISSUE_RATE_LIMIT = env_rate("CERTIFICATE_ISSUE_RATE_LIMIT", "10/h")
# An owner must always be able to revoke every certificate they hold. In any period a user holds at most the
# certificates they held before it (CERTIFICATE_MAX_ACTIVE_PER_USER) plus those issued during it, so the revocation
# limit must allow that many; the default is exactly that.
_MOST_REVOCABLE_PER_ISSUE_PERIOD = CERTIFICATE_ISSUE_RATE_LIMIT.count + CERTIFICATE_MAX_ACTIVE_PER_USER
CERTIFICATE_REVOKE_RATE_LIMIT = env_rate(
    "CERTIFICATE_REVOKE_RATE_LIMIT", f"{_MOST_REVOCABLE_PER_ISSUE_PERIOD}/{CERTIFICATE_ISSUE_RATE_LIMIT.period}s"
)
_MOST_REVOCABLE = (
    CERTIFICATE_ISSUE_RATE_LIMIT.most_in(CERTIFICATE_REVOKE_RATE_LIMIT.period) + CERTIFICATE_MAX_ACTIVE_PER_USER
)
if CERTIFICATE_REVOKE_RATE_LIMIT.count < _MOST_REVOCABLE:
    raise ImproperlyConfigured(
        f"CERTIFICATE_REVOKE_RATE_LIMIT must allow at least {_MOST_REVOCABLE} revocations per "
        f"{CERTIFICATE_REVOKE_RATE_LIMIT.period} s (certificates a user can hold in that time), "
        f"got {CERTIFICATE_REVOKE_RATE_LIMIT.count}"
    )
# Cloudflare-managed CA: 100 certificates per zone on every plan unless Cloudflare raised it (FACTS.md §3).
CLOUDFLARE_ZONE_CAPACITY = env_int("CLOUDFLARE_ZONE_CAPACITY", 100, minimum=1)
# Which accounts may issue (certificates/admission.py): sign-up is open, the zone's capacity is not.
PORTAL_ADMISSION = env_str("PORTAL_ADMISSION", "open").lower()
PORTAL_ADMISSION_EMAIL_DOMAINS = [domain.lower().lstrip("@") for domain in env_list("PORTAL_ADMISSION_EMAIL_DOMAINS")]
if PORTAL_ADMISSION not in ("open", "email_domain", "approval"):
    raise ImproperlyConfigured(f"PORTAL_ADMISSION must be open, email_domain or approval, got {PORTAL_ADMISSION!r}")
if PORTAL_ADMISSION == "email_domain" and not PORTAL_ADMISSION_EMAIL_DOMAINS:
    raise ImproperlyConfigured("PORTAL_ADMISSION_EMAIL_DOMAINS is required when PORTAL_ADMISSION is email_domain")

# IP allowlists: at most this many networks per user.
ALLOWLIST_MAX_NETWORKS = env_int("ALLOWLIST_MAX_NETWORKS", 50, minimum=1)

# API tokens: days a new token lasts unless its maker chooses, and the longest anyone may choose.
API_TOKEN_MAX_DAYS = env_int("API_TOKEN_MAX_DAYS", 365, minimum=1)
API_TOKEN_DEFAULT_DAYS = env_int("API_TOKEN_DEFAULT_DAYS", 90, minimum=1)
if API_TOKEN_DEFAULT_DAYS > API_TOKEN_MAX_DAYS:
    raise ImproperlyConfigured(
        f"API_TOKEN_DEFAULT_DAYS ({API_TOKEN_DEFAULT_DAYS}) must not exceed API_TOKEN_MAX_DAYS ({API_TOKEN_MAX_DAYS})"
    )

# Where the portal is reached, for links in emails (no trailing slash).
# Default: the address `make run` serves on (PORTAL_ADDRESS, read by the worker too, which sends most emails).
PORTAL_BASE_URL = (env_str("PORTAL_BASE_URL") or f"http://{env_str('PORTAL_ADDRESS') or '127.0.0.1:8000'}").rstrip("/")
# Expiry reminders: days before expiry at which the owner is emailed, each once.
CERTIFICATE_EXPIRY_REMINDER_DAYS = [int(d) for d in env_list("CERTIFICATE_EXPIRY_REMINDER_DAYS", ["30", "7"])]

# Health, readiness and metrics (portal/health.py, portal/metrics.py; README, "Health, readiness and metrics").
# /readyz fails a check when what it watches is older than these. Polling runs every CERTIFICATE_POLL_SECONDS: a
# worker that started none for six periods (at least 3 minutes, so that one slow pass against a slow Cloudflare or a
# busy worker is not mistaken for a dead one) is not consuming, and a poll that has not succeeded as long is failing.
READY_POLL_MAX_AGE_SECONDS = env_int(
    "READY_POLL_MAX_AGE_SECONDS", max(180, round(6 * CERTIFICATE_POLL_SECONDS)), minimum=1
)
# Beat queues the poll every CERTIFICATE_POLL_SECONDS whatever the workers do: four periods (at least 2 minutes).
READY_BEAT_MAX_AGE_SECONDS = env_int(
    "READY_BEAT_MAX_AGE_SECONDS", max(120, round(4 * CERTIFICATE_POLL_SECONDS)), minimum=1
)
# The drift repair syncs every FIREWALL_SYNC_SECONDS: two missed periods and 5 minutes for a long sync.
READY_SYNC_MAX_AGE_SECONDS = env_int("READY_SYNC_MAX_AGE_SECONDS", round(2 * FIREWALL_SYNC_SECONDS) + 300, minimum=1)
# /metrics answers only with `Authorization: Bearer <METRICS_TOKEN>`; without a token it does not exist (404).
METRICS_TOKEN = env_secret("METRICS_TOKEN")
