"""Cloudflare layer of the portal: API client, errors, models, call budget, retries and the Rules-language builder.

Plain Python that imports neither Django nor the emulator (cloudflare_emulator/, a development tool), so it can
be used and tested on its own.
"""

__version__ = "0.1.0"
