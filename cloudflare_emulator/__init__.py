"""A local, stateful emulator of the Cloudflare v4 API endpoints the portal uses.

    emu = Emulator(token="dev-token")
    mount_wsgi_app(session, "http://cloudflare.local/client/v4", emu.wsgi_app)

or `python -m cloudflare_emulator --port 8787`. `Emulator.evaluate` runs a request through a zone's custom
rules (edge.py); `python -m cloudflare_emulator edge` serves that edge over HTTPS (edge_server.py). See app.py
for the request pipeline, codes.py for the error codes it answers with, and faults.py for fault injection.
"""

from .app import Emulator, LoggedRequest
from .edge import EdgeRequest, Evaluation, MatchedRule, Verdict
from .envelope import ApiError
from .faults import Faults

__all__ = ["ApiError", "EdgeRequest", "Emulator", "Evaluation", "Faults", "LoggedRequest", "MatchedRule", "Verdict"]
