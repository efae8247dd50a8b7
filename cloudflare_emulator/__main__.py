"""`python -m cloudflare_emulator --host 127.0.0.1 --port 8787 [--token T] [--state FILE] ...`: the API.

`python -m cloudflare_emulator edge --state FILE [--listen 127.0.0.1:8443] ...`: the zone's edge over HTTPS
(edge_server.py); `edge --help` lists its options.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from werkzeug.serving import make_server

from .app import API_PREFIX, DEFAULT_CUSTOM_RULES_LIMIT, Emulator
from .context import IDENTIFIER

EDGE_CA_FILE = "cloudflare-edge-ca.pem"  # beside the state file unless --edge-ca says otherwise


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m cloudflare_emulator",
        description=__doc__,
        epilog="python -m cloudflare_emulator edge --help: the zone's edge over HTTPS",
    )
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
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["edge"]:
        edge_main(arguments[1:])
        return
    args = parse_args(arguments)
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


# --- python -m cloudflare_emulator edge ---------------------------------------------------------------------


def listen_address(value: str) -> tuple[str, int]:
    """`HOST:PORT`, `[IPv6]:PORT`; port 0 picks a free one."""
    host, separator, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not separator or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, e.g. 127.0.0.1:8443, got {value!r}")
    return host, int(port)


def zone_id(value: str) -> str:
    if not IDENTIFIER.match(value):
        raise argparse.ArgumentTypeError(f"a zone id is 32 lowercase hex digits, got {value!r}")
    return value


def origin_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"the origin is an http:// or https:// URL, got {value!r}")
    if parts.username or parts.password:
        # The origin URL is printed and logged: credentials do not belong in it.
        raise argparse.ArgumentTypeError("the origin URL may not carry a user name or password")
    return value


def parse_edge_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m cloudflare_emulator edge",
        description="The zone's edge over HTTPS: mTLS, the zone's custom rules, then the origin.",
    )
    parser.add_argument(
        "--state", required=True, help="the emulator's state file (the portal's: var/cloudflare-emulator.json)"
    )
    parser.add_argument(
        "--listen", type=listen_address, default=("127.0.0.1", 8443), help="HOST:PORT (default 127.0.0.1:8443)"
    )
    parser.add_argument("--zone", type=zone_id, default="0" * 32, help="the zone (default: the portal's emulated zone)")
    parser.add_argument(
        "--origin", type=origin_url, default=None, help="where allowed requests go (default: a built-in echo origin)"
    )
    parser.add_argument(
        "--edge-ca",
        type=Path,
        default=None,
        help=f"the edge CA's certificate, for clients' --cacert; made on first start, its key beside it (.key). "
        f"Default: {EDGE_CA_FILE} beside the state file",
    )
    parser.add_argument(
        "--revocation-delay",
        type=float,
        default=30.0,
        help="seconds until a revocation is processed: the portal's CLOUDFLARE_EMULATOR_TRANSITION_DELAY",
    )
    return parser.parse_args(argv)


def stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM (honcho, kill) stops the edge as Ctrl-C does


def edge_main(argv: list[str]) -> None:
    from .edge_server import Edge  # the API alone loads none of the TLS machinery

    args = parse_edge_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    state = Path(args.state)
    emulator = Emulator(state_path=state, revocation_delay=args.revocation_delay)
    host, port = args.listen
    ca_path = args.edge_ca or state.parent / EDGE_CA_FILE
    edge = Edge(emulator=emulator, zone_id=args.zone, host=host, port=port, ca_path=ca_path, origin=args.origin)
    signal.signal(signal.SIGTERM, stop)
    print(f"Cloudflare edge emulator listening on {edge.url} (zone {args.zone}, origin {edge.origin})", flush=True)
    print(f"Edge CA certificate for clients (curl --cacert): {ca_path}", flush=True)
    try:
        edge.serve_forever()
    finally:
        edge.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
