#!/usr/bin/env python3
"""A tiny webhook receiver that prints every request it gets.

    python3 tests/tools/receiver.py [PORT] [--status CODE] [--secret whsec_...]

Listens on 127.0.0.1:PORT (default 9000), answers every request with CODE
(default 200), and prints the method, path, the webhook-* headers and the
body. With --secret it also checks the Standard Webhooks signature.
"""

import argparse
import base64
import hashlib
import hmac
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def signature_ok(secret: str, headers, body: bytes) -> bool:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers.get('webhook-id')}.{headers.get('webhook-timestamp')}.".encode() + body
    want = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(s, want)
               for s in (headers.get("webhook-signature") or "").split(" "))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("port", nargs="?", type=int, default=9000)
    ap.add_argument("--status", type=int, default=200, help="status to answer with")
    ap.add_argument("--secret", help="endpoint secret (whsec_...) to verify signatures")
    args = ap.parse_args()

    class Handler(BaseHTTPRequestHandler):
        def handle_any(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            print(f"--> {self.command} {self.path}")
            for name in ("webhook-id", "webhook-timestamp", "webhook-signature",
                         "user-agent", "content-type", "authorization"):
                if self.headers.get(name):
                    print(f"    {name}: {self.headers[name]}")
            if args.secret:
                ok = signature_ok(args.secret, self.headers, body)
                print(f"    signature: {'valid' if ok else 'INVALID'}")
            try:
                print(json.dumps(json.loads(body), indent=2))
            except ValueError:
                print(body.decode(errors="replace"))
            sys.stdout.flush()
            self.send_response(args.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_PUT = do_GET = do_DELETE = do_PATCH = handle_any

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"receiver listening on http://127.0.0.1:{args.port}/ (answering {args.status})")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
