"""`python -m cloudflare_emulator --host 127.0.0.1 --port 8787 [--token T] [--state FILE] ...`"""

from __future__ import annotations

import argparse
import logging
import sys

from werkzeug.serving import make_server

from .app import API_PREFIX, DEFAULT_CUSTOM_RULES_LIMIT, Emulator


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cloudflare_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787, help="0 picks a free port (printed on start)")
    parser.add_argument("--token", default=None, help="required bearer token (default: accept any)")
    parser.add_argument("--state", default=None, help="JSON state file shared by processes (default: memory)")
    parser.add_argument("--revocation-delay", type=float, default=30.0)
    parser.add_argument("--reactivation-delay", type=float, default=30.0)
    parser.add_argument("--zone-capacity", type=int, default=100)
    parser.add_argument(
        "--custom-rules-limit",
        type=int,
        default=DEFAULT_CUSTOM_RULES_LIMIT,
        help="custom rules a zone may hold, as the plan allows (Free 5, Pro 20, Business 100, Enterprise 1000)",
    )
    parser.add_argument("--rate-limit", type=int, default=1200, help="API calls allowed per window (Cloudflare: 1200)")
    parser.add_argument("--rate-window", type=float, default=300.0, help="the rate limit's window, seconds")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    emulator = Emulator(
        token=args.token,
        state_path=args.state,
        revocation_delay=args.revocation_delay,
        reactivation_delay=args.reactivation_delay,
        zone_capacity=args.zone_capacity,
        custom_rules_limit=args.custom_rules_limit,
        rate_limit=args.rate_limit,
        rate_window=args.rate_window,
    )
    # make_server binds before we announce, so whoever waits for the line can connect at once
    # (run_simple would print only after binding, with no hook to announce the chosen port).
    server = make_server(args.host, args.port, emulator.wsgi_app, threaded=True)
    print(f"Cloudflare API emulator listening on http://{args.host}:{server.port}{API_PREFIX}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
