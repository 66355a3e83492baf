"""Graceful shutdown (PRODUCT.md section 8): on SIGTERM the worker finishes
the transfers in flight, records them and exits 0 within its drain bound;
nothing it had taken is lost once a new worker runs. The api stops
accepting, finishes the request it is serving and exits 0; the scheduler
exits 0 and hands leadership over.

The api and the scheduler are stopped here, so these tests run on a
private stack of their own (module scope), never the session's.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler

import pytest
import requests

from harness import (ADMIN_TOKEN, TEST_OVERRIDES, free_ports, make_event, private_stack,
                     serve_http, wait_until)

# The worker's drain bound (worker/main.c DRAIN_MS), plus slack for closing
# the Kafka consumer and a busy 2-core machine.
WORKER_DRAIN_S = 10
EXIT_BOUND_S = WORKER_DRAIN_S + 10
DELAY_S = 2.0          # per request: long enough to SIGTERM with transfers in flight
N_EVENTS = 40
PATHS = ("/s1", "/s2", "/s3")  # 3 endpoints x 10 in flight each


@pytest.fixture(scope="module")
def sstack():
    yield from private_stack("bh-shutdown-", TEST_OVERRIDES, "shutdown-test")


class SlowReceiver:
    """Answers 200 after DELAY_S; records, per (path, event id), when each
    request arrived and when its answer was written."""

    def __init__(self):
        self.started: dict[tuple[str, str], float] = {}
        self.answered: dict[tuple[str, str], float] = {}
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                key = (self.path, json.loads(body)["id"])
                with outer.lock:
                    outer.started.setdefault(key, time.monotonic())
                time.sleep(DELAY_S)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                self.wfile.flush()
                with outer.lock:
                    outer.answered.setdefault(key, time.monotonic())

            def log_message(self, *args):  # quiet
                pass

        self.server = serve_http(Handler)
        self.port = self.server.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def in_flight(self) -> set[tuple[str, str]]:
        with self.lock:
            return set(self.started) - set(self.answered)

    def answered_keys(self) -> set[tuple[str, str]]:
        with self.lock:
            return set(self.answered)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def sigterm_and_wait(proc: subprocess.Popen, bound: float) -> tuple[int, float]:
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(bound)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"pid {proc.pid} still running {bound}s after SIGTERM")
    return rc, time.monotonic() - t0


def test_worker_sigterm_finishes_and_records_in_flight_deliveries(sstack):
    rcv = SlowReceiver()
    try:
        admin = sstack.api()
        bank = f"bank-{uuid.uuid4().hex[:12]}"
        eps = {p: admin.create_endpoint(rcv.url(p), filter={"bank_id": bank})["id"]
               for p in PATHS}
        ids = [f"term-{uuid.uuid4().hex[:8]}-{i}" for i in range(N_EVENTS)]
        accounts = [str(uuid.uuid4()) for _ in range(8)]
        events = [make_event(bank, accounts[i % len(accounts)], event_id=ids[i])
                  for i in range(N_EVENTS)]
        sstack.produce([json.dumps(e, separators=(",", ":")) for e in events],
                       keys=[e["account_id"] for e in events])

        # SIGTERM while several transfers wait on the slow receiver.
        wait_until(lambda: len(rcv.in_flight()) >= 5, 60, "5 transfers in flight",
                   interval=0.05)
        worker = sstack.procs["worker"]
        sstack.expected_exit.add(worker.pid)
        in_flight = rcv.in_flight()
        rc, took = sigterm_and_wait(worker, EXIT_BOUND_S)
        print(f"\nworker: SIGTERM with {len(in_flight)} transfers in flight; "
              f"exit {rc} after {took:.1f}s")
        assert rc == 0, f"worker exited with {rc} on SIGTERM"
        assert len(in_flight) < len(ids) * len(PATHS), "nothing was left to drain"

        # Finished: every transfer in flight at SIGTERM got its answer...
        answered = rcv.answered_keys()
        assert in_flight <= answered, f"abandoned: {sorted(in_flight - answered)[:5]}"
        # ...and recorded by the draining worker itself: no worker runs now.
        by_path = {eps[p]: p for p in PATHS}
        recorded = {(by_path[d["endpoint_id"]], d["event_id"])
                    for ep in eps.values() for d in admin.deliveries(endpoint_id=ep)
                    if d["status"] == "succeeded"}
        assert in_flight <= recorded, \
            f"finished but not recorded: {sorted(in_flight - recorded)[:5]}"
        log = (sstack.log_dir / "worker.log").read_text(errors="replace")
        assert "finishing" in log and "transfers abandoned" not in log

        # Nothing lost: a new worker delivers the rest, each once recorded.
        sstack.start("worker")
        sstack.wait_ready("worker")
        want = {(p, i) for p in PATHS for i in ids}
        wait_until(lambda: want <= rcv.answered_keys(), 120,
                   f"all {len(want)} deliveries at the receiver", interval=0.5)

        def all_succeeded():
            ds = [d for ep in eps.values() for d in admin.deliveries(endpoint_id=ep)]
            return ds if (len(ds) == len(want) and
                          all(d["status"] == "succeeded" for d in ds)) else None

        ds = wait_until(all_succeeded, 60, "every delivery recorded succeeded", interval=1)
        assert {(by_path[d["endpoint_id"]], d["event_id"]) for d in ds} == want
    finally:
        rcv.close()


def test_api_sigterm_finishes_the_request_in_flight_and_stops_accepting(sstack):
    api = sstack.procs["api"]
    port = sstack.ports["api"]
    body = json.dumps({"name": "drained-" + uuid.uuid4().hex[:8]}).encode()
    # A request in flight: headers and half the body sent, the rest later.
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(b"POST /v1/clients HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Authorization: Bearer " + ADMIN_TOKEN.encode() +
              b"\r\nConnection: close\r\nContent-Length: " + str(len(body)).encode() +
              b"\r\n\r\n" + body[:5])
    time.sleep(0.5)  # the api has the headers: the request is in flight
    sstack.expected_exit.add(api.pid)
    t0 = time.monotonic()
    api.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    # Stopped accepting: a new request is not served meanwhile.
    served = True
    try:
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1.5)
    except requests.RequestException:
        served = False
    assert not served, "the api served a new request after SIGTERM"
    assert api.poll() is None, "the api exited with a request in flight"
    s.sendall(body[5:])
    reply = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        reply += chunk
    s.close()
    assert reply.startswith(b"HTTP/1.1 201"), reply[:200]
    rc = api.wait(EXIT_BOUND_S - (time.monotonic() - t0))
    assert rc == 0, f"api exited with {rc} on SIGTERM"
    # Restart it for whatever runs after.
    sstack.start("api")
    sstack.wait_ready("api")


def test_scheduler_sigterm_exits_0_and_hands_over_leadership(sstack):
    port = free_ports(1)[0]
    sstack.ports["scheduler2_http"] = port
    sstack.start("scheduler2", binary="scheduler",
                 env={"BANKHOOK_SCHEDULER_HTTP_PORT": str(port)})
    sstack.wait_ready("scheduler2")
    lead = 'bankhook_scheduler_leader'
    wait_until(lambda: sstack.metrics("scheduler").get(lead) == 1, 30, "scheduler leads")
    assert sstack.metrics("scheduler2").get(lead) == 0, "two leaders"
    first = sstack.procs["scheduler"]
    sstack.expected_exit.add(first.pid)
    rc, took = sigterm_and_wait(first, EXIT_BOUND_S)
    print(f"\nscheduler: exit {rc} after {took:.1f}s")
    assert rc == 0, f"scheduler exited with {rc} on SIGTERM"
    wait_until(lambda: sstack.metrics("scheduler2").get(lead) == 1, 30,
               "the standby scheduler to take the lead")
    log = (sstack.log_dir / "scheduler.log").read_text(errors="replace")
    assert "leadership released" in log, log[-2000:]
