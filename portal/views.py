import hmac

from django.conf import settings
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from portal import health, metrics


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html")


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """The process answers; nothing else is checked (that is /readyz)."""
    return JsonResponse({"status": "ok"})


@require_GET
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    """200 when every check of `?for=` (all, web, worker or beat; all by default) passes, else 503 naming the failing
    ones. Public: the answer holds only check names, ok or failing, and ages in seconds (portal/health.py)."""
    scope = request.GET.get("for", "all")
    if scope not in health.SCOPES:
        return JsonResponse({"detail": f"for must be one of {', '.join(health.SCOPES)}"}, status=400)
    result = health.readiness(scope=scope)
    response = JsonResponse(result.as_dict(), status=200 if result.ok else 503)
    # A failing check is an answer, not a fault of this request: Django would log every probe's 503 as an error (its
    # log_response skips a response marked this way); portal/health.py logs what was unreachable.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


@require_GET
@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus's scrape, with `Authorization: Bearer <METRICS_TOKEN>`. Without a token configured there is nothing
    here (404); a wrong or missing one gets 401. Compared in constant time."""
    token = settings.METRICS_TOKEN
    if not token:
        raise Http404
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        response = HttpResponse("A metrics token is required.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(metrics.exposition(), content_type=CONTENT_TYPE_LATEST)


def admin_login(request: HttpRequest, extra_context: object = None) -> HttpResponse:
    """Replaces the admin's own password form: the portal's sign-in (with TOTP) is the only door.

    Any method, GET or POST, is answered without reading credentials: nobody signs in here.
    """
    target = request.GET.get(REDIRECT_FIELD_NAME, "")
    safe = url_has_allowed_host_and_scheme(target, {request.get_host()}, require_https=request.is_secure())
    target = target if safe else reverse("admin:index")
    if not request.user.is_authenticated:
        return redirect(f"{reverse('account_login')}?{urlencode({REDIRECT_FIELD_NAME: target})}")
    if request.user.is_staff:
        return redirect(target)  # the staff middleware asks for the second factor if this session lacks it
    return render(request, "staff_only.html", status=403)
