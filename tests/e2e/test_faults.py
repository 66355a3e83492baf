"""Faults under load and scale-out (issue 3, done-means 3 and 4; PRODUCT.md
section 5: nothing accepted is ever lost).

Each test sends a burst of events produced with kcat to two endpoints on a
receiver that takes DELAY_S per request, so the burst lasts a few seconds
and the fault lands in the middle of it. Afterwards every event must reach
both endpoints at least once; duplicates are allowed (at least once) and
printed. Run with -s to see the figures.

These tests restart Kafka and PostgreSQL, so they run on a private stack of
their own (module scope), never the session's: the tests after them find
the shared stack as it was.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler

import pytest

from harness import (TEST_OVERRIDES, Stack, make_event, private_stack, serve_http,
                     wait_until)

N_EVENTS = 500
DELAY_S = 0.05        # per request: 10 in flight per endpoint -> ~200 requests/s each
PATHS = ("/a", "/b")
SUCCEEDED = 'bankhook_deliveries_total{outcome="succeeded"}'


# ----------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def fstack():
    yield from private_stack("bh-faults-", TEST_OVERRIDES, "fault-test")


class SlowReceiver:
    """Answers 200 to every request after DELAY_S (or 500 to the first per
    event and path, when fail_first), and records the event id of each body
    it accepted, per path."""

    def __init__(self):
        self.got: dict[str, Counter] = {p: Counter() for p in PATHS}
        self.failed: set[tuple[str, str]] = set()
        self.fail_first = False  # answer 500 to the first request per event and path
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                time.sleep(DELAY_S)
                path = self.path.split("?", 1)[0]
                try:
                    event_id = json.loads(body)["id"]
                except (ValueError, KeyError, TypeError):
                    event_id = None
                status = 200
                with outer.lock:
                    if outer.fail_first and (path, event_id) not in outer.failed:
                        outer.failed.add((path, event_id))
                        status = 500
                    else:
                        outer.got.setdefault(path, Counter())[event_id] += 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):  # quiet
                pass

        self.server = serve_http(Handler)
        self.port = self.server.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def counts(self, path: str, ids: list[str]) -> Counter:
        with self.lock:
            return Counter({i: self.got[path][i] for i in ids if self.got[path][i]})

    def arrived(self, ids: list[str]) -> int:
        """Distinct events of ids that reached every path."""
        sets = [set(self.counts(p, ids)) for p in PATHS]
        return len(set.intersection(*sets))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def load(fstack):
    """A slow receiver, and two endpoints on it that match only this test's
    bank id."""
    rcv = SlowReceiver()
    bank = f"bank-{uuid.uuid4().hex[:12]}"
    admin = fstack.api()
    for p in PATHS:
        admin.create_endpoint(rcv.url(p), filter={"bank_id": bank})
    yield rcv, bank
    rcv.close()


# ------------------------------------------------------------ helpers


def produce_burst(st: Stack, bank: str, tag: str, n: int = N_EVENTS) -> list[str]:
    """n events with known ids, keyed over 16 accounts (every partition)."""
    ids = [f"{tag}-{uuid.uuid4().hex[:8]}-{i}" for i in range(n)]
    accounts = [str(uuid.uuid4()) for _ in range(16)]
    events = [make_event(bank, accounts[i % len(accounts)], event_id=ids[i]) for i in range(n)]
    st.produce([json.dumps(e, separators=(",", ":")) for e in events],
               keys=[e["account_id"] for e in events])
    return ids


def wait_some(rcv: SlowReceiver, ids: list[str], at_least: int) -> int:
    return wait_until(lambda: (lambda k: k if k >= at_least else 0)(rcv.arrived(ids)), 30,
                      f"{at_least} events at both endpoints", interval=0.05)


def duplicates_after_all_arrived(rcv: SlowReceiver, ids: list[str], what: str,
                                 timeout: float = 45) -> int:
    """Waits until every event reached every endpoint; returns (and prints)
    how many requests beyond one per event and endpoint there were."""
    wait_until(lambda: rcv.arrived(ids) == len(ids), timeout,
               f"all {len(ids)} events at both endpoints", interval=0.5)
    time.sleep(1)  # late copies (a lease running out) land in the count too
    dups = 0
    for p in PATHS:
        c = rcv.counts(p, ids)
        assert set(c) == set(ids), f"{p}: {len(set(ids) - set(c))} events missing"
        dups += sum(c.values()) - len(ids)
    print(f"\n{what}: {len(ids)} events x {len(PATHS)} endpoints delivered, "
          f"{dups} duplicate requests")
    return dups


def wait_all_ready(st: Stack) -> None:
    for name in st.procs:
        if st.procs[name].poll() is None:
            st.wait_ready(name, timeout=60)


def succeeded(st: Stack, worker: str) -> float:
    return st.metrics(worker).get(SUCCEEDED, 0.0)


def attempted(st: Stack, worker: str) -> float:
    """Attempts of any outcome: the retries that succeed travel on
    bankhook.deliveries keyed by subscription, whose partitions may all be
    the other worker's, so a busy worker2 may have no success to show."""
    m = st.metrics(worker)
    return sum(m.get(f'bankhook_deliveries_total{{outcome="{o}"}}', 0.0)
               for o in ("succeeded", "retrying", "failed"))


# -------------------------------------------------------------- tests


def test_worker_kill9_mid_burst_loses_nothing(fstack, load):
    rcv, bank = load
    ids = produce_burst(fstack, bank, "kill9")
    at_fault = wait_some(rcv, ids, 30)
    fstack.stop("worker", kill9=True)  # no drain, no offset commit
    assert at_fault < len(ids), "the burst was over before the fault: nothing was tested"
    fstack.start("worker")
    fstack.wait_ready("worker")
    duplicates_after_all_arrived(rcv, ids, f"kill -9 after {at_fault} events")


def test_kafka_restart_mid_burst_loses_nothing(fstack, load):
    rcv, bank = load
    first = produce_burst(fstack, bank, "kafka-a", N_EVENTS // 2)
    at_fault = wait_some(rcv, first, 20)
    restart = threading.Thread(target=fstack.infra, args=("kafka-restart",))
    restart.start()
    # The second half is produced while the broker goes down and comes back:
    # kcat holds it until the broker accepts it, then it counts as accepted.
    second = produce_burst(fstack, bank, "kafka-b", N_EVENTS - N_EVENTS // 2)
    restart.join(120)
    assert not restart.is_alive(), "kafka-restart did not finish"
    assert at_fault < len(first), "the burst was over before the fault: nothing was tested"
    wait_all_ready(fstack)
    duplicates_after_all_arrived(rcv, first + second, f"Kafka restart after {at_fault} events")


def test_postgres_restart_mid_burst_loses_nothing(fstack, load):
    rcv, bank = load
    first = produce_burst(fstack, bank, "pg-a", N_EVENTS // 2)
    at_fault = wait_some(rcv, first, 20)
    restart = threading.Thread(target=fstack.infra, args=("pg-restart",))
    restart.start()
    second = produce_burst(fstack, bank, "pg-b", N_EVENTS - N_EVENTS // 2)
    restart.join(120)
    assert not restart.is_alive(), "pg-restart did not finish"
    assert at_fault < len(first), "the burst was over before the fault: nothing was tested"
    wait_all_ready(fstack)
    duplicates_after_all_arrived(rcv, first + second,
                                 f"PostgreSQL restart after {at_fault} events")


def join_under_load(st: Stack, rcv: SlowReceiver, bank: str) -> None:
    """Starts worker2 while the first worker is busy with a burst: one adds
    a worker because there is load. The join is a rebalance, so duplicates
    are allowed in that burst (and printed); nothing may be lost."""
    ids = produce_burst(st, bank, "join")
    wait_some(rcv, ids, 10)
    st.start_extra_worker("worker2")
    st.wait_ready("worker2")
    duplicates_after_all_arrived(rcv, ids, "burst while worker2 joined")
    # The rebalance after a join takes two rounds (cooperative-sticky): let
    # it finish, so no partition moves during the bursts that follow.
    time.sleep(5)


def test_two_workers_share_the_event_load(fstack, load):
    rcv, bank = load
    join_under_load(fstack, rcv, bank)
    try:
        before = {w: succeeded(fstack, w) for w in ("worker", "worker2")}
        ids = produce_burst(fstack, bank, "pair")
        dups = duplicates_after_all_arrived(rcv, ids, "two workers")
        share = {w: succeeded(fstack, w) - before[w] for w in before}
        print(f"deliveries per worker: {share}")
        assert sum(share.values()) >= len(ids) * len(PATHS)
        # Both consume part of bankhook.events, which is what scaling out is for.
        assert all(v > 0 for v in share.values()), f"a worker got none of the events: {share}"
        # No member joined or left during the burst: no partition moved, so
        # each event reached each endpoint exactly once, as with one worker.
        assert dups == 0, f"{dups} duplicates with a settled group"
    finally:
        fstack.stop("worker2")


def test_worker_joining_an_idle_worker_gets_part_of_the_events(fstack, load):
    rcv, bank = load
    warm = produce_burst(fstack, bank, "idle-warm", 16)
    duplicates_after_all_arrived(rcv, warm, "warm-up with one worker")
    time.sleep(2)  # the first worker is idle when the second joins
    fstack.start_extra_worker("worker2")
    try:
        fstack.wait_ready("worker2")
        time.sleep(5)  # both rebalance rounds
        before = {w: succeeded(fstack, w) for w in ("worker", "worker2")}
        ids = produce_burst(fstack, bank, "idle-pair", 64)
        duplicates_after_all_arrived(rcv, ids, "two workers after an idle join")
        share = {w: succeeded(fstack, w) - before[w] for w in before}
        print(f"deliveries per worker: {share}")
        assert all(v > 0 for v in share.values()), f"a worker got none of the events: {share}"
    finally:
        fstack.stop("worker2")


def test_sigterm_to_one_of_two_workers_hands_over_without_loss(fstack, load):
    rcv, bank = load
    join_under_load(fstack, rcv, bank)
    try:
        # Every first attempt fails, so the burst also flows through the
        # scheduler's bankhook.deliveries jobs: work on both topics, whichever
        # partitions worker2 owns.
        rcv.fail_first = True
        before = attempted(fstack, "worker2")
        ids = produce_burst(fstack, bank, "handover")
        wait_until(lambda: attempted(fstack, "worker2") - before >= 10, 30,
                   "worker2 to work on part of the burst", interval=0.1)
        at_stop = rcv.arrived(ids)
        assert fstack.stop("worker2") == 0, "worker2 did not exit cleanly on SIGTERM"
        assert at_stop < len(ids), "the burst was over before the stop: nothing was tested"
        duplicates_after_all_arrived(rcv, ids, f"SIGTERM to worker2 after {at_stop} events")
    finally:
        rcv.fail_first = False
        fstack.stop("worker2")
    # Every partition is the remaining worker's now: events on all keys arrive.
    before = succeeded(fstack, "worker")
    after_ids = produce_burst(fstack, bank, "alone", 32)
    duplicates_after_all_arrived(rcv, after_ids, "one worker after the hand-over")
    assert succeeded(fstack, "worker") - before >= len(after_ids) * len(PATHS)
