"""{% firewall_sync_warning %}: the admin index's one line when the last firewall sync left rules out or failed."""

from __future__ import annotations

from django import template
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from certificates.cloudflare_client import get_zone_id
from certificates.firewall.status import sync_trouble

register = template.Library()


@register.simple_tag
def firewall_sync_warning() -> SafeString | str:
    trouble = sync_trouble(zone_id=get_zone_id())
    if trouble is None:
        return ""
    return format_html(
        '<p class="errornote" role="alert" data-testid="firewall-warning">{}. <a href="{}">Firewall status</a></p>',
        trouble.summary(),
        reverse("certificates:firewall"),
    )
