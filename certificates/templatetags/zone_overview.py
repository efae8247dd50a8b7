"""{% zone_overview %}: the admin index's overview of the zone (certificates.services.overview), staff only."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils import timezone

from certificates.cloudflare_client import get_zone_id
from certificates.services.overview import zone_overview as overview_of

register = template.Library()


@register.inclusion_tag("admin/certificates/_zone_overview.html", takes_context=True)
def zone_overview(context: template.Context) -> dict[str, Any]:
    # The form's token: an inclusion tag renders with a context of its own.
    return {"overview": overview_of(zone_id=get_zone_id(), now=timezone.now()), "csrf_token": context.get("csrf_token")}
