"""Names vulture (make lint) must not report: used by Django, Celery, django-ninja or the settings by name.

Regenerate a candidate with `.venv/bin/vulture --make-whitelist`; add a name here only with the reason it is
used. A name only tests use is dead code: remove it instead.
"""

# ruff: noqa
# mypy: ignore-errors

# certificates/admin.py: ModelAdmin options and list filter arguments Django reads
model_admin
list_display
list_filter
search_fields
list_select_related
actions
readonly_fields
fields
add_view  # ModelAdmin's add page, replaced by the portal CA's creation form
format_value  # forms.Widget hook: SecretTextarea never renders the submitted key back
paginator
show_full_result_count
show_facets
list_per_page
search_help_text
_.get_changelist
_.get_search_results
_.estimated  # read by the template admin/certificates/pagination.html

# certificates/api.py: django-ninja: the auth class hook and the schema resolvers it calls by name
_.authenticate
detail_url
_.resolve_certificate
_.resolve_detail_url
_.resolve_issuer
ca_certificate_url

# certificates/apps.py: AppConfig (INSTALLED_APPS), ready() imports the signal receivers
CertificatesConfig
verbose_name
verbose_name_plural
_.ready
signals

# certificates/allowlist.py: AddressOffer's field the networks page's template reads
never_seen

# certificates/management/commands/check_cloudflare.py: management commands
help

# certificates/models.py: model fields and Meta options the database and the ORM use by name
last_attempt_at
ordering
constraints
indexes
token_sha256
old_status
new_status
lease_owner
lease_until
last_plan
ruleset_version
sync_requested_at
last_seen_at
decided_by

# certificates/urls.py: URLconf
urlpatterns

# cloudflare/client.py: the account mTLS certificate endpoints: kept for the portal CA (issue 10 point 1), covered by the emulator tests
_.list_mtls_certificates
_.upload_mtls_certificate
_.get_mtls_certificate
_.delete_mtls_certificate
_.list_mtls_certificate_associations

# cloudflare/expressions.py: the Rules-language builder: a library API (eq/ne), covered by its tests
_.eq
_.ne

# cloudflare/models.py: fields of Cloudflare API objects, parsed whole
ski
country
location
signature
certificate_authority
issuer
uploaded_on
service
last_updated

# cloudflare/retry.py: a library constant for callers who want no retries
NO_RETRIES

# portal/accounts.py: referenced from settings (dotted paths) or called by the framework
AccountAdapter

# portal/apps.py: referenced from settings (dotted paths) or called by the framework
PortalConfig

# portal/checks.py: referenced from settings (dotted paths) or called by the framework
check_base_url
check_ca_encryption_key
app_configs

# portal/context_processors.py: referenced from settings (dotted paths) or called by the framework
cloudflare_mode

# portal/middleware.py: referenced from settings (dotted paths) or called by the framework
StaffTwoFactorMiddleware

# portal/celery.py: Celery signal receivers, connected by their decorators
_remember_this_is_beat
_record_queued
_record_started
_record_succeeded
_record_failed
_record_retried

# certificates/models.py: TaskRun's counters, exported by name (portal/metrics.py reads them with getattr)
retried

# portal/metrics.py: prometheus-client calls a collector's collect() at each scrape
_.collect

# portal/views.py: Django's log_response skips a response marked as logged
_has_been_logged

# portal/outages.py: referenced from settings (dotted paths) or called by the framework
RedisOutageMiddleware
_.process_exception

# portal/settings.py: Django settings, read by name
ALLOWED_HOSTS
CSRF_TRUSTED_ORIGINS
INSTALLED_APPS
MIDDLEWARE
ROOT_URLCONF
WSGI_APPLICATION
TEMPLATES
DATABASES
DEFAULT_AUTO_FIELD
CACHES
AUTH_PASSWORD_VALIDATORS
AUTHENTICATION_BACKENDS
ACCOUNT_LOGIN_METHODS
ACCOUNT_SIGNUP_FIELDS
ACCOUNT_EMAIL_VERIFICATION
ACCOUNT_UNIQUE_EMAIL
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE
ACCOUNT_EMAIL_SUBJECT_PREFIX
ACCOUNT_ADAPTER
ACCOUNT_RATE_LIMITS
MFA_SUPPORTED_TYPES
MFA_TOTP_ISSUER
LOGIN_URL
LOGIN_REDIRECT_URL
ACCOUNT_LOGOUT_REDIRECT_URL
LANGUAGE_CODE
TIME_ZONE
USE_I18N
USE_TZ
STATIC_URL
STATICFILES_DIRS
SESSION_COOKIE_SECURE
CSRF_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY
SECURE_CONTENT_TYPE_NOSNIFF
SECURE_REFERRER_POLICY
X_FRAME_OPTIONS
SECURE_PROXY_SSL_HEADER
SECURE_SSL_REDIRECT
SECURE_REDIRECT_EXEMPT
SECURE_HSTS_SECONDS
SECURE_HSTS_INCLUDE_SUBDOMAINS
SECURE_HSTS_PRELOAD
SILENCED_SYSTEM_CHECKS
CONTENT_SECURITY_POLICY
EMAIL_BACKEND
EMAIL_PORT
EMAIL_HOST_USER
EMAIL_HOST_PASSWORD
EMAIL_USE_TLS
DEFAULT_FROM_EMAIL
LOGGING
CELERY_BROKER_URL
CELERY_BROKER_TRANSPORT_OPTIONS
CELERY_BEAT_SCHEDULE_FILENAME
CELERY_BEAT_SYNC_EVERY
CELERY_TASK_ACKS_LATE
CELERY_WORKER_PREFETCH_MULTIPLIER
CELERY_BROKER_CONNECTION_RETRY
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP
CELERY_BROKER_CONNECTION_MAX_RETRIES
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS
CELERY_TASK_PUBLISH_RETRY_POLICY
CELERY_BEAT_SCHEDULE
CELERY_WORKER_HIJACK_ROOT_LOGGER

# certificates/services/crls.py: a database function's result type, and its SQLite form, which Django's compiler
# calls by the backend's name
output_field
_.as_sqlite

# portal/stand_ins.py: referenced from settings (dotted paths) or called by the framework
EmulatedHeaderMiddleware

# portal/urls.py: referenced from settings (dotted paths) or called by the framework; the admin's titles, read by
# its templates
_.login
_.site_header
_.site_title
_.index_title

# portal/logs.py: the middleware is referenced from settings, the gunicorn configuration from gunicorn.conf.py (not
# scanned); the record attributes the filters set are read by the formatters, which walk the record's attributes
RequestIdMiddleware
gunicorn_logging_config
_.task_id
_.task_name
_.msg

# certificates/services/overview.py: fields the admin overview's template reads
_.waiting_since
_.rules_used
_.managed_in_use
_.expiring
_.poll
_.reconcile
_.sync

# certificates/views.py: read by the dashboard template
_.soonest
