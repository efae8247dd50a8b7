from django.contrib import admin
from django.urls import include, path

from certificates.api import api
from portal import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("accounts/", include("allauth.urls")),
    path("api/v1/", api.urls),
    path("", include("certificates.urls")),
    path("admin/", admin.site.urls),
]
