from django.conf import settings
from django.http import HttpRequest


def cloudflare_mode(request: HttpRequest) -> dict[str, object]:
    return {"cloudflare_emulated": settings.CLOUDFLARE_EMULATED}
