"""The delivery engine (issue 3): retry schedule timing, 410, Retry-After,
ordered mode, rate limit, redirects, connect-time address policy,
metrics and retention (PRODUCT.md section 5, docs/DESIGN.md).

The session stack runs schedule `0,1,1`, lease 3 s, tick 200 ms, jitter 0
(conftest.py): attempt 2 one second after attempt 1 failed, attempt 3 one
second after attempt 2.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from typing import Callable

import pytest
import requests

from conftest import Received, make_event, serve_http, unique, wait_until

DELIVERY_TIMEOUT = 30
SLACK = 0.5  # seconds either side of an expected attempt offset


# --------------------------------------------------------------- helpers

# What a scripted receiver answers: (status, extra headers).
Answer = tuple[int, dict[str, str]]


class ScriptedReceiver:
    """Like conftest's Receiver, but each answer comes from a function of
    the request, so a test can send headers (Retry-After, Location) and
    answer by event id (ordered mode)."""

    def __init__(self, answer: Callable[[Received, int], Answer] | None = None):
        self.requests: list[Received] = []
        self.answer = answer or (lambda req, n: (200, {}))
        self.lock = threading.RLock()  # answer() may call got()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                req = Received(self.command, self.path,
                               {k.lower(): v for k, v in self.headers.items()}, body,
                               time.time())
                with outer.lock:
                    outer.requests.append(req)
                    status, headers = outer.answer(req, len(outer.requests))
                reply = json.dumps({"status": status}).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_POST = do_PUT = do_GET = _handle

            def log_message(self, *args):
                pass

        self.server = serve_http(Handler)
        self.port = self.server.server_address[1]

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def got(self, path: str | None = None) -> list[Received]:
        with self.lock:
            return [r for r in self.requests
                    if path is None or r.path.split("?", 1)[0] == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted():
    made: list[ScriptedReceiver] = []

    def make(answer=None) -> ScriptedReceiver:
        r = ScriptedReceiver(answer)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def produce_events(stack, evs: list[dict]) -> None:
    """In one kcat run, same key: one partition, in this order."""
    stack.produce([json.dumps(e, separators=(",", ":")) for e in evs],
                  key=evs[0]["account_id"])


def one_delivery(admin, ep_id: str, status: str | None = None) -> dict:
    def get():
        ds = admin.deliveries(endpoint_id=ep_id)
        if ds and (status is None or ds[0]["status"] == status):
            return admin.expect("GET", f"/v1/deliveries/{ds[0]['id']}", 200)
        return None
    return wait_until(get, DELIVERY_TIMEOUT, f"a {status or 'any'} delivery of {ep_id}")


def attempts_of(d: dict) -> list[dict]:
    return sorted(d["attempts"], key=lambda a: a["attempt"])


# ----------------------------------------------------------------- tests


def test_retry_schedule_attempts_at_expected_offsets(stack, admin, receiver, scope):
    receiver.plan("/sched", [500, 500, 500])
    ep = admin.create_endpoint(receiver.url("/sched"), filter={"bank_id": scope["bank_id"]})
    produced = time.time()
    produce_events(stack, [make_event(scope["bank_id"], scope["account_id"],
                                      event_id=unique("evt"))])
    wait_until(lambda: len(receiver.got("/sched")) >= 3, DELIVERY_TIMEOUT, "three attempts")
    at = [r.at for r in receiver.got("/sched")]
    assert at[0] - produced < 5, "attempt 1 is immediate"
    # schedule 0,1,1: each retry one second after the previous failure
    for i, gap in enumerate((at[1] - at[0], at[2] - at[1]), start=2):
        assert 1 - SLACK <= gap <= 1 + SLACK, f"attempt {i} {gap:.2f}s after the previous one"
    d = one_delivery(admin, ep["id"], "failed")
    assert [a["http_status"] for a in attempts_of(d)] == [500, 500, 500]
    time.sleep(1.5)
    assert len(receiver.got("/sched")) == 3, "nothing after the schedule is used up"


def test_410_gone_disables_the_endpoint_at_once(stack, admin, receiver, scope):
    receiver.plan("/gone", [410])
    ep = admin.create_endpoint(receiver.url("/gone"), filter={"bank_id": scope["bank_id"]})
    produce_events(stack, [make_event(scope["bank_id"], scope["account_id"],
                                      event_id=unique("evt"))])
    d = one_delivery(admin, ep["id"], "failed")
    assert d["attempt_count"] == 1, "no retry after 410"
    got = admin.expect("GET", f"/v1/endpoints/{ep['id']}", 200)
    assert got["enabled"] is False
    assert "410" in (got.get("disabled_reason") or ""), got

    later = make_event(scope["bank_id"], scope["account_id"], event_id=unique("evt"))
    produce_events(stack, [later])
    # A marker endpoint on the same filter proves the later event went through.
    marker = admin.create_endpoint(receiver.url("/marker"), filter={"bank_id": scope["bank_id"]})
    produce_events(stack, [make_event(scope["bank_id"], scope["account_id"],
                                      event_id=unique("evt"))])
    wait_until(lambda: receiver.got("/marker"), DELIVERY_TIMEOUT, "the marker delivery")
    time.sleep(1.5)
    assert len(receiver.got("/gone")) == 1, "a disabled endpoint receives nothing"
    assert len(admin.deliveries(endpoint_id=ep["id"])) == 1
    assert marker["id"]


def test_retry_after_is_honoured_on_503_and_429(stack, admin, scripted, scope):
    def answer(req: Received, n: int) -> tuple[int, dict]:
        if req.path == "/seconds" and len(rcv.got("/seconds")) == 1:
            return 503, {"Retry-After": "2"}
        if req.path == "/date" and len(rcv.got("/date")) == 1:
            # HTTP-date 3 s ahead (whole seconds: at least 2 s from now)
            return 429, {"Retry-After": formatdate(time.time() + 3, usegmt=True)}
        return 200, {}

    rcv = scripted(answer)
    eps = {p: admin.create_endpoint(rcv.url(p), filter={"bank_id": scope["bank_id"]})
           for p in ("/seconds", "/date")}
    produce_events(stack, [make_event(scope["bank_id"], scope["account_id"],
                                      event_id=unique("evt"))])
    for path in eps:
        wait_until(lambda: len(rcv.got(path)) >= 2, DELIVERY_TIMEOUT, f"the retry of {path}")
        at = [r.at for r in rcv.got(path)]
        # the schedule alone would retry after 1 s
        assert at[1] - at[0] >= 2 - 0.05, f"{path}: retried {at[1] - at[0]:.2f}s later"
        assert at[1] - at[0] <= 4 + SLACK, f"{path}: retried {at[1] - at[0]:.2f}s later"
        d = one_delivery(admin, eps[path]["id"], "succeeded")
        first = attempts_of(d)[0]
        assert first["http_status"] in (503, 429)
        assert first.get("retry_after_s") and first["retry_after_s"] >= 2, first


def test_ordered_endpoint_keeps_order_across_failures(stack, admin, scripted, scope):
    evs = [make_event(scope["bank_id"], scope["account_id"], event_id=unique(f"e{i}"))
           for i in range(1, 6)]
    e2 = evs[1]["id"]
    failures = {"left": 2}

    def answer(req: Received, n: int) -> tuple[int, dict]:
        if req.json()["id"] == e2 and failures["left"] > 0:
            failures["left"] -= 1
            return 500, {}
        return 200, {}

    rcv = scripted(answer)
    ep = admin.create_endpoint(rcv.url("/ordered"), filter={"bank_id": scope["bank_id"]},
                               ordered=True)
    assert admin.expect("GET", f"/v1/endpoints/{ep['id']}", 200).get("ordered") is True
    produce_events(stack, evs)
    want = [e["id"] for e in evs]
    # e1, e2 three times (two failures, then success), e3, e4, e5
    wait_until(lambda: len(rcv.got("/ordered")) >= 7, DELIVERY_TIMEOUT, "all five delivered")
    time.sleep(1)  # room for a stray extra attempt to show up
    seq = [r.json()["id"] for r in rcv.got("/ordered")]
    # e2 failed twice and then succeeded, and nothing overtook it meanwhile.
    assert seq == [want[0], e2, e2, e2] + want[2:], seq
    ds = admin.deliveries(endpoint_id=ep["id"])
    assert sorted(d["event_id"] for d in ds) == sorted(want)
    assert all(d["status"] == "succeeded" for d in ds), ds


def test_rate_limit_spreads_deliveries(stack, admin, receiver, scope):
    ep = admin.create_endpoint(receiver.url("/rated"), filter={"bank_id": scope["bank_id"]},
                               rate_limit_per_s=5)
    assert admin.expect("GET", f"/v1/endpoints/{ep['id']}", 200).get("rate_limit_per_s") == 5
    evs = [make_event(scope["bank_id"], scope["account_id"], event_id=unique("evt"))
           for _ in range(20)]
    produce_events(stack, evs)
    wait_until(lambda: len({r.json()["id"] for r in receiver.got("/rated")}) == 20, 60,
               "all 20 delivered")
    at = sorted(r.at for r in receiver.got("/rated"))
    assert at[-1] - at[0] >= 3 - 0.2, f"20 at 5/s took only {at[-1] - at[0]:.2f}s"
    worst = max(sum(1 for t in at if s <= t < s + 1) for s in at)
    assert worst <= 6, f"{worst} requests within one second at 5/s"


def test_redirect_is_not_followed(stack, admin, scripted, scope):
    def answer(req: Received, n: int) -> tuple[int, dict]:
        if req.path == "/moved" and len(rcv.got("/moved")) == 1:
            return 302, {"Location": rcv.url("/elsewhere")}
        return 200, {}

    rcv = scripted(answer)
    ep = admin.create_endpoint(rcv.url("/moved"), filter={"bank_id": scope["bank_id"]})
    produce_events(stack, [make_event(scope["bank_id"], scope["account_id"],
                                      event_id=unique("evt"))])
    d = one_delivery(admin, ep["id"], "succeeded")
    first = attempts_of(d)[0]
    assert first["http_status"] == 302 and first["error"], first
    assert d["attempt_count"] == 2, "the 302 counted as a failed attempt"
    time.sleep(0.5)
    assert rcv.got("/elsewhere") == [], "the redirect was followed"


def test_literal_private_address_refused_by_the_api(admin):
    r = admin.post("/v1/endpoints", json={"url": "http://10.0.0.1/hook"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert "url" in err["message"], err


def test_name_resolving_to_private_address_refused_at_connect(stack, admin, scope):
    """http://0x0a000001/ is 10.0.0.1 once libcurl normalizes it, but not a
    literal address to the URL check: the worker's open-socket callback must
    refuse it before any socket exists, so no packet ever leaves."""
    url = "http://0x0a000001:9/hook"  # port 9 (discard), should anything slip
    r = admin.post("/v1/endpoints", json={"url": url, "filter": {"bank_id": scope["bank_id"]}})
    if r.status_code == 400:  # refused even earlier: just as good
        assert "url" in r.json()["error"]["message"]
        return
    assert r.status_code == 201, r.text
    ep = r.json()
    produce_events(stack, [make_event(scope["bank_id"], scope["account_id"],
                                      event_id=unique("evt"))])
    d = one_delivery(admin, ep["id"], "failed")
    for a in attempts_of(d):
        assert a["http_status"] is None, a
        assert "refused by policy" in (a["error"] or ""), a


def test_metrics_cover_the_engine(stack):
    def metrics(name: str) -> str:
        r = requests.get(f"http://127.0.0.1:{stack.http_port(name)}/metrics", timeout=5)
        assert r.status_code == 200
        return r.text

    w = metrics("worker")
    for m in ('bankhook_deliveries_total{outcome="succeeded"}',
              "bankhook_attempt_duration_seconds_bucket", "bankhook_in_flight",
              "bankhook_consumer_lag"):
        assert m in w, m
    s = metrics("scheduler")
    for m in ("bankhook_retries_due", "bankhook_subscriptions_disabled ",
              "bankhook_subscriptions_disabled_total", "bankhook_retention_deleted_total"):
        assert m in s, m


def psql(stack, sql: str) -> str:
    r = subprocess.run(["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h",
                        "127.0.0.1", "-p", str(stack.ports["pg"]), "-U", "postgres",
                        "-d", "bankhook", "-c", sql],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_retention_deletes_old_attempts_and_finished_events(stack, admin, scripted, scope):
    def answer(req: Received, n: int) -> tuple[int, dict]:
        if req.path == "/parked":  # stays pending for an hour
            return 503, {"Retry-After": "3600"}
        return 200, {}

    rcv = scripted(answer)
    done = admin.create_endpoint(rcv.url("/done"), filter={"bank_id": scope["bank_id"]})
    parked = admin.create_endpoint(rcv.url("/parked"), filter={"bank_id": scope["bank_id"]})
    ev = make_event(scope["bank_id"], scope["account_id"], event_id=unique("evt"))
    ev2 = make_event(scope["bank_id"], scope["account_id"], event_id=unique("evt"))
    produce_events(stack, [ev])
    d_done = one_delivery(admin, done["id"], "succeeded")
    d_parked = wait_until(
        lambda: [d for d in admin.deliveries(endpoint_id=parked["id"]) if d["attempt_count"]],
        DELIVERY_TIMEOUT, "the parked attempt")[0]
    assert d_parked["status"] == "pending"
    # ev2 only finishes: with ev its delivery to /parked keeps it.
    admin.expect("PATCH", f"/v1/endpoints/{parked['id']}", 200, json={"enabled": False})
    produce_events(stack, [ev2])
    wait_until(lambda: len(admin.deliveries(endpoint_id=done["id"])) == 2 and all(
        d["status"] == "succeeded" for d in admin.deliveries(endpoint_id=done["id"])),
        DELIVERY_TIMEOUT, "the second delivery")

    ids = "', '".join([ev["id"], ev2["id"]])
    # On the shared stack, catch-all subscriptions of other tests may hold
    # deliveries of ev2 still pending: finish them, only ours matter here.
    psql(stack, f"UPDATE deliveries SET status = 'failed', next_attempt_at = NULL"
                f" WHERE event_id = '{ev2['id']}' AND status = 'pending'")
    psql(stack, f"UPDATE events SET received_at = now() - interval '40 days'"
                f" WHERE id IN ('{ids}');"
                f" UPDATE attempts SET started_at = now() - interval '40 days'"
                f" WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_id IN ('{ids}'))")
    # The scheduler runs a retention pass at start, then every minute.
    stack.stop("scheduler")
    stack.start("scheduler")
    stack.wait_ready("scheduler")

    wait_until(lambda: admin.get(f"/v1/events/{ev2['id']}").status_code == 404, 30,
               "the finished old event to be deleted")
    # ev still has a pending delivery: kept, but its old attempts are gone.
    got = admin.expect("GET", f"/v1/events/{ev['id']}", 200)
    assert {d["id"] for d in got["deliveries"]} >= {d_done["id"], d_parked["id"]}
    d = admin.expect("GET", f"/v1/deliveries/{d_parked['id']}", 200)
    assert d["status"] == "pending" and d["attempts"] == [], d
