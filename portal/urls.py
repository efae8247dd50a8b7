from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from certificates.api import api
from portal import views

# The admin's own login form asks for a password only, so it is never shown: staff sign in through allauth's
# pages, which ask for their TOTP code, and the staff middleware checks that this session gave one.
admin.site.login = views.admin_login  # type: ignore[method-assign]  # replacing this method is the point
admin.site.site_header = "mTLS developer portal: administration"
admin.site.site_title = "mTLS portal admin"
admin.site.index_title = "The zone and the portal's records"

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics_view, name="metrics"),
    path("accounts/", include("allauth.urls")),
    path("api/v1/", api.urls),
    path("", include("certificates.urls")),
    path("admin/", admin.site.urls),
    # Browsers and bookmark tools ask for /favicon.ico whatever the pages link (they link static/favicon.svg).
    path("favicon.ico", RedirectView.as_view(url=static("favicon.ico")), name="favicon"),
]
