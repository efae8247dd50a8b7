"""gunicorn settings for the portal's web process (Dockerfile, docker-compose.yml).

Every call a web request makes to Cloudflare fits in CLOUDFLARE_WEB_DEADLINE (10 s by default), so `timeout`
is well above it: a worker is killed only if something other than Cloudflare hangs. Threads keep one slow call
from blocking unrelated requests: each worker serves `threads` requests at once. Values come from the
environment (GUNICORN_*) so that an operator can size them without rebuilding the image.
"""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
worker_class = "gthread"
workers = int(os.environ.get("GUNICORN_WORKERS", "3"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# Above CLOUDFLARE_WEB_DEADLINE plus the database's share of a request.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# On restart, requests in flight get as long as a web request can take with Cloudflare to finish.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = 5
accesslog = "-"
# Access and error lines in the portal's LOG_FORMAT (JSON lines with LOG_FORMAT=json), through the same filter that
# scrubs secrets (an access line's path can hold a password-reset key). Importing portal.logs loads the settings,
# so a bad LOG_FORMAT stops gunicorn at start-up with the settings' one-line message.
from django.conf import settings  # noqa: E402

from portal.logs import gunicorn_logging_config  # noqa: E402

logconfig_dict = gunicorn_logging_config(settings.LOG_FORMAT)
