"""Cloudflare layer of the portal: API client, Rules-language builder and a local API emulator.

Plain Python with no Django imports, so it can be used and tested on its own.
"""

__version__ = "0.1.0"
