"""The Cloudflare emulator as a process, with its API rate limit configurable (the CLI has no option for it).

`python bench/chaos_emulator.py --port P --state FILE --rate-limit N --rate-window S [emulator CLI options]`
Otherwise exactly `python -m cloudflare_emulator`: the same Emulator, werkzeug server and start-up line.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from werkzeug.serving import make_server

from cloudflare_emulator.__main__ import parse_args
from cloudflare_emulator.app import API_PREFIX, Emulator


def main() -> None:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--rate-limit", type=int, default=1200)
    extra.add_argument("--rate-window", type=float, default=300.0)
    limits, rest = extra.parse_known_args()
    args = parse_args(rest)
    # werkzeug's request log (one line a request) is how bench/chaos.py counts the calls it served.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    emulator = Emulator(
        token=args.token,
        state_path=args.state,
        revocation_delay=args.revocation_delay,
        reactivation_delay=args.reactivation_delay,
        zone_capacity=args.zone_capacity,
        custom_rules_limit=args.custom_rules_limit,
        rate_limit=limits.rate_limit,
        rate_window=limits.rate_window,
    )
    server = make_server(args.host, args.port, emulator.wsgi_app, threaded=True)
    print(f"Cloudflare API emulator listening on http://{args.host}:{server.port}{API_PREFIX}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
