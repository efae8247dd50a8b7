from django.contrib.auth import REDIRECT_FIELD_NAME
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.http import require_GET


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html")


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


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
