"""A local, stateful emulator of the Cloudflare v4 API endpoints the portal uses.

    emu = Emulator(token="dev-token")
    mount_wsgi_app(session, "http://cloudflare.local/client/v4", emu.wsgi_app)

or `python -m cloudflare.emulator --port 8787`. See app.py for the request pipeline, codes.py for the
error codes it answers with, and faults.py for fault injection.
"""

from .app import Emulator, LoggedRequest
from .faults import Faults

__all__ = ["Emulator", "Faults", "LoggedRequest"]
