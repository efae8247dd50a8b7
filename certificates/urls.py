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
    path("staff/firewall/sync/", views.firewall_sync_now, name="firewall_sync_now"),
    path("tokens/<int:pk>/revoke/", views.token_revoke, name="token_revoke"),
    # Stable: written into every certificate a portal CA signs (CRL distribution point). Never rename.
    path("pki/ca-<int:pk>.crl", views.authority_crl, name="crl"),
    path("pki/ca-<int:pk>.crl.pem", views.authority_crl_pem, name="crl_pem"),
    path("pki/ca-<int:pk>.pem", views.authority_certificate, name="authority_certificate"),
]
