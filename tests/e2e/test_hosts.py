"""Per-destination isolation (issue 13; worker/destination.h, docs/DESIGN.md
"Per-destination queues").

Sixty subscriptions point at one receiving host that accepts connections and
never answers (different paths, same host:port): together they want 600
transfers, more than the worker's 512 slots. Isolation per subscription
alone let them hold every slot for the whole timeout, so a healthy
endpoint's deliveries waited behind them; per host they hold one window,
the host is marked dead after `delivery.host_dead_after` unanswered
transfers, and its deliveries wait in PostgreSQL. When the host answers
again its parked deliveries are all delivered: nothing is lost.

The session stack: timeout 5 s, lease 3 s, schedule 0,1,1 (conftest.py);
host defaults: dead after 5, back-off 10 s.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler

from conftest import make_event, serve_http, unique, wait_until

N_SILENT = 60  # x 10 per subscription > 512 global slots
N_EVENTS = 30
HEALTHY_BOUND_S = 3.0  # the timeout (5 s) is what a held slot costs


class SilentHost:
    """One host:port. While silent it reads each request and never answers
    (the connection is closed unanswered once it stops being silent); then
    it answers 200 and records (path, event id)."""

    def __init__(self):
        self.silent = True
        self.unanswered = 0  # requests that arrived while silent
        self.answered: set[tuple[str, str]] = set()
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                if outer.silent:
                    with outer.lock:
                        outer.unanswered += 1
                    deadline = time.monotonic() + 120
                    while outer.silent and time.monotonic() < deadline:
                        time.sleep(0.05)
                    self.close_connection = True
                    return
                with outer.lock:
                    outer.answered.add((self.path, json.loads(body)["id"]))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = serve_http(Handler)
        self.port = self.server.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.silent = False
        self.server.shutdown()
        self.server.server_close()


def test_silent_host_neither_delays_others_nor_loses_its_deliveries(stack, admin, receiver,
                                                                    scope):
    host = SilentHost()
    try:
        flt = {"bank_id": scope["bank_id"]}
        admin.create_endpoint(receiver.url("/healthy"), filter=flt)
        # Warm: the worker has joined its group and fetches (a fresh stack takes seconds).
        warm = unique("host-warm")
        stack.produce(json.dumps(make_event(scope["bank_id"], scope["account_id"],
                                            event_id=warm)), key=scope["account_id"])
        wait_until(lambda: warm in receiver.event_ids("/healthy"), 60, "the warm-up event")
        silent_ids = [admin.create_endpoint(host.url(f"/s/{i}"), filter=flt)["id"]
                      for i in range(N_SILENT)]
        ids = [unique("host-evt") for _ in range(N_EVENTS)]
        evs = [make_event(scope["bank_id"], scope["account_id"], event_id=i) for i in ids]
        produced = time.monotonic()
        stack.produce([json.dumps(e, separators=(",", ":")) for e in evs],
                      key=scope["account_id"])

        wait_until(lambda: receiver.event_ids("/healthy") >= set(ids), 30,
                   "every event at the healthy endpoint", interval=0.05)
        took = time.monotonic() - produced
        assert took < HEALTHY_BOUND_S, (
            f"the healthy endpoint got its {N_EVENTS} events {took:.1f} s after they were "
            f"produced: the silent host's {N_SILENT} subscriptions held the slots")

        # Dead after 5 unanswered transfers (each ends at the 5 s timeout).
        sub_list = ",".join(f"'{i}'" for i in silent_ids)
        failed_attempts = (f"SELECT count(*) FROM attempts a JOIN deliveries d "
                           f"ON d.id = a.delivery_id WHERE d.subscription_id IN ({sub_list}) "
                           f"AND a.http_status IS NULL")
        wait_until(lambda: int(stack.sql(failed_attempts)) >= 5, 30,
                   "the silent host's transfers to time out")
        time.sleep(1)  # its deliveries are being parked now
        held = host.unanswered
        assert held <= 20, (f"{held} requests were sent to the silent host: more than one "
                            "window, its subscriptions held slots each")

        host.silent = False  # it answers again: every parked delivery arrives
        want = {(f"/s/{i}", e) for i in range(N_SILENT) for e in ids}
        wait_until(lambda: host.answered >= want, 90,
                   f"all {len(want)} deliveries to the recovered host", interval=0.5)
        pending = (f"SELECT count(*) FROM deliveries WHERE subscription_id IN ({sub_list}) "
                   f"AND status <> 'succeeded'")
        wait_until(lambda: stack.sql(pending) == "0", 30, "every delivery recorded succeeded")
        print(f"\nhealthy endpoint: {took:.2f} s for {N_EVENTS} events; silent host: "
              f"{held} requests unanswered, then {len(want)} delivered")
    finally:
        host.close()
