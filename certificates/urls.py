from django.urls import path

from certificates import views

app_name = "certificates"

urlpatterns = [
    path("certificates/", views.dashboard, name="dashboard"),
    path("certificates/new/", views.certificate_new, name="new"),
    path("certificates/<int:pk>/", views.certificate_detail, name="detail"),
    path("certificates/<int:pk>/certificate.pem", views.certificate_pem, name="pem"),
    path("certificates/<int:pk>/revoke/", views.certificate_revoke, name="revoke"),
    path("certificates/access-requests/", views.access_request, name="access_request"),
    path("allowlist/", views.allowlist, name="allowlist"),
    path("tokens/", views.token_list, name="tokens"),
    path("staff/firewall/", views.firewall_status, name="firewall"),
    path("tokens/<int:pk>/revoke/", views.token_revoke, name="token_revoke"),
]
