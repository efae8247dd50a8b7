from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.urls import include, path

from certificates.api import api
from portal import views

# The admin's own login form asks for a password only; sending it to allauth's sign-in makes staff pass
# their two-factor check there too.
admin.site.login = login_required(admin.site.login)  # type: ignore[method-assign]

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("accounts/", include("allauth.urls")),
    path("api/v1/", api.urls),
    path("", include("certificates.urls")),
    path("admin/", admin.site.urls),
]
