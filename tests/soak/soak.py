#!/usr/bin/env python3
"""The soak (issue 8, PRODUCT.md sections 5 and 7): mixed load on a private
stack for SOAK_SECONDS (default 600), with faults, then a drain and a report.

  make soak                      # 10 minutes
  SOAK_SECONDS=120 make soak     # shorter
  SOAK_RATE=8                    # events a second posted (default 8)

Load: events posted through POST /v1/events for four groups of
subscriptions, one per dialect (native endpoints, OBP account webhooks,
Banksocket webhooks, acquirer configurations), each group with a receiver
that answers at once, one that fails the first attempt of every delivery
with 500, and one that takes 0.5-3 s. Faults: the worker is killed with
SIGKILL at a third of the run and Kafka restarted at two thirds. At half
time a poison event (occurred_at "0001-01-01T00:00:00+01:00", year 0 once
in UTC, which PostgreSQL refuses) is written straight to Kafka, followed on
the same key by a canary for the native group: the poison is "held" when it
is on bankhook.events.dlq with a reason and the canary is delivered.

Every event's expected deliveries follow from the subscriptions' filters
(written out below, independently of the product's matcher). Afterwards:
events accepted, deliveries expected, delivered (distinct webhook-id
answered 2xx), duplicates (a webhook-id answered 2xx more than once: at
least once allows them, they are reported), lost (expected, never answered
2xx: must be 0), peak RSS per process, and the sanitizer and error lines
of the logs. Exits 1 when anything is lost or a sanitizer reported.

Cross-tenant (issue 12): every group's client holds a data grant of what
it subscribes to, and one more client, the intruder, subscribes to
everything it can (a native endpoint without filter, a Banksocket webhook
on "all") while holding a grant of a bank no event names. It must receive
nothing: its deliveries are reported as "cross-tenant" and any one fails
the soak.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from harness import (ADMIN_TOKEN, SANITIZER_RE, TOPIC_DLQ, make_event,  # noqa: E402
                     missing_binaries, missing_tools, new_stack, start_stack, stop_stack,
                     unique)

SOAK_SECONDS = int(os.environ.get("SOAK_SECONDS", "600"))
SOAK_RATE = float(os.environ.get("SOAK_RATE", "8"))
DRAIN_TIMEOUT = int(os.environ.get("SOAK_DRAIN_TIMEOUT", "600"))
ACQ_KEY = "0123456789abcdef0123456789ABCDEF"

# Production settings but a retry schedule that ends within a minute, so
# the drain is bounded; the lease is short enough that the killed worker's
# claims are re-dispatched during the run.
SOAK_OVERRIDES = {
    "BH_PG_FAST": "0",
    "BANKHOOK_DELIVERY_SCHEDULE": "0,2,5,10,20,30",
    "BANKHOOK_DELIVERY_LEASE_S": "20",
    "BANKHOOK_DELIVERY_TIMEOUT_MS": "10000",
    "BANKHOOK_SCHEDULER_TICK_MS": "200",
}


def log(msg: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------ receiver


@dataclass
class Receipts:
    """What the receiver answered 2xx, per webhook-id."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    ok: Counter = field(default_factory=Counter)           # webhook-id -> 2xx answers
    first: dict = field(default_factory=dict)              # webhook-id -> (path, body, ctype)
    failed_once: set = field(default_factory=set)          # webhook-ids answered 500 once
    requests: int = 0


class Receiver:
    """One HTTP server for every subscription: /ok/<label> answers 200,
    /flaky/<label> 500 to the first attempt of each delivery then 200,
    /slow/<label> 200 after 0.5-3 s."""

    def __init__(self):
        self.r = Receipts()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                wid = self.headers.get("webhook-id", "")
                path = self.path.split("?", 1)[0]
                behaviour = path.split("/")[1] if path.count("/") >= 2 else "ok"
                status = 200
                if behaviour == "slow":
                    time.sleep(random.uniform(0.5, 3.0))
                with outer.r.lock:
                    outer.r.requests += 1
                    if behaviour == "flaky" and wid not in outer.r.failed_once:
                        outer.r.failed_once.add(wid)
                        status = 500
                    else:
                        outer.r.ok[wid] += 1
                        if wid not in outer.r.first:
                            outer.r.first[wid] = (path, body,
                                                  self.headers.get("Content-Type", ""))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_PUT = do_GET = do_PATCH = do_DELETE = _handle

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

            def handle_error(self, request, client_address):
                pass  # a killed worker's half-sent request: nothing to report

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, behaviour: str, label: str) -> str:
        return f"http://127.0.0.1:{self.port}/{behaviour}/{label}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def event_key(path: str, body: bytes, ctype: str) -> str | None:
    """The id of the event a delivery carried, from its body in the
    subscription's dialect (Banksocket: the description we set; acquirer:
    the payment id inside the AES-GCM envelope)."""
    try:
        if ctype.startswith("application/x-www-form-urlencoded"):
            return parse_qs(body.decode(), keep_blank_values=True)["description"][0]
        doc = json.loads(body)
        if "iv" in doc and "tag" in doc and "data" in doc:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
            iv, tag = base64.b64decode(doc["iv"]), base64.b64decode(doc["tag"])
            plain = AESGCM(ACQ_KEY.encode()).decrypt(iv, base64.b64decode(doc["data"]) + tag,
                                                     None)
            return json.loads(plain)["paymentId"]
        if "event_id" in doc:
            return doc["event_id"]
        return doc["id"]
    except (ValueError, KeyError, TypeError, ImportError) as exc:
        log(f"cannot read a delivery to {path} ({ctype}): {exc}")
        return None


# ------------------------------------------------------------ the stack's tenants


class Tenants:
    """The four groups of subscriptions and the rule saying which of them an
    event must reach (as (path, event id) pairs)."""

    def __init__(self, st, rx: Receiver):
        self.st, self.rx = st, rx
        self.admin = requests.Session()
        self.admin.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        base = st.api_url
        run = uuid.uuid4().hex[:6]

        def admin(method, path, status, **kw):
            r = self.admin.request(method, base + path, timeout=30, **kw)
            assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text[:300]}"
            return r.json() if r.content else None

        def tenant(password: str | None = None, roles=()):
            cid = admin("POST", "/v1/clients", 201, json={"name": unique("soak")})["id"]
            body = {"username": unique("soak-user")}
            if password:
                body["password"] = password
            u = admin("POST", f"/v1/clients/{cid}/users", 201, json=body)
            for role, bank in roles:
                admin("POST", f"/v1/users/{u['id']}/entitlements", 201,
                      json={"role": role, "bank_id": bank})
            tok = admin("POST", "/v1/tokens", 201, json={"user_id": u["id"]})["token"]
            return cid, u, tok

        # publishers: two event_publisher tokens, so the posting threads share
        # no rate-limit bucket with the admin
        self.publishers = []
        for _ in range(2):
            _, u, tok = tenant(roles=[("event_publisher", "")])
            self.publishers.append(tok)

        # native: three endpoints on bank_n
        self.bank_n = f"soak-n-{run}"
        cid, _, tok = tenant()
        admin("POST", f"/v1/clients/{cid}/grants", 201, json={"bank_id": self.bank_n})
        h = {"Authorization": f"Bearer {tok}"}
        for b in ("ok", "flaky", "slow"):
            r = requests.post(base + "/v1/endpoints", headers=h, timeout=30, json={
                "url": rx.url(b, "native"), "filter": {"bank_id": self.bank_n}})
            assert r.status_code == 201, r.text

        # OBP: account webhooks at bank_o / acct_o
        self.bank_o, self.acct_o = f"soak-o-{run}", str(uuid.uuid4())
        admin("PUT", f"/v1/banks/{self.bank_o}", 201, json={"name": "Soak", "code": "SK"})
        pw = "pw-" + uuid.uuid4().hex
        cid, u, _ = tenant(password=pw, roles=[("CanCreateWebhook", self.bank_o)])
        admin("POST", f"/v1/clients/{cid}/grants", 201,
              json={"bank_id": self.bank_o, "account_id": self.acct_o})
        r = requests.post(base + "/obp/v4.0.0/my/logins/direct", timeout=30, headers={
            "DirectLogin": f"username={u['username']}, password={pw}, consumer_key=soak"})
        assert r.status_code == 201, r.text
        dl = {"DirectLogin": f"token={r.json()['token']}"}
        for b, trigger in (("ok", "OnBalanceChange"), ("flaky", "OnCreditTransaction"),
                           ("slow", "OnDebitTransaction")):
            r = requests.post(f"{base}/obp/v4.0.0/banks/{self.bank_o}/account-web-hooks",
                              headers=dl, timeout=30, json={
                                  "account_id": self.acct_o, "trigger_name": trigger,
                                  "url": rx.url(b, "obp"), "http_method": "POST",
                                  "http_protocol": "HTTP/1.1", "is_active": "true"})
            assert r.status_code == 201, r.text

        # Banksocket: webhooks on account acct_b
        self.acct_b = str(random.randint(10 ** 8, 10 ** 9 - 1))
        cid, _, tok = tenant()
        admin("POST", f"/v1/clients/{cid}/grants", 201,
              json={"bank_id": "soak-bank", "account_id": self.acct_b})
        for b, ev in (("ok", "NEW_TRANSACTION"), ("slow", "NEW_CREDIT"),
                      ("flaky", "NEW_DEBIT")):
            r = requests.post(base + "/banksocket/v1/webhooks", timeout=30,
                              headers={"Authentication": tok}, json={
                                  "title": "soak", "endpoint": rx.url(b, "banksocket"),
                                  "event": ev, "account": self.acct_b})
            assert r.status_code == 200, r.text

        # acquirer: CARD only (ok), CARD+BLIK (flaky), BLIK only (slow)
        cid, _, tok = tenant()
        self.acquirer = str(random.randint(10 ** 24, 10 ** 25 - 1))
        self.merchant = str(random.randint(10 ** 9, 10 ** 10 - 1))
        admin("POST", f"/v1/clients/{cid}/grants", 201,
              json={"acquirer_id": self.acquirer, "merchant_id": self.merchant})
        for b, code, methods in (("ok", "card", ["CARD"]), ("flaky", "both", ["CARD", "BLIK"]),
                                 ("slow", "blik", ["BLIK"])):
            r = requests.post(
                f"{base}/acquirer/v1/acquirers/{self.acquirer}/merchants/{self.merchant}"
                "/terminal/webhook", timeout=30,
                headers={"Authorization": f"Bearer {tok}", "x-ibm-client-id": cid,
                         "TPP-Request-ID": str(uuid.uuid4()), "User-ID": "soak",
                         "User-Organization-ID": "soak"},
                json={"notificationConfigurationCode": code, "requestOperationType": "INS",
                      "paymentMethods": [{"paymentMethodNotificationCode": m}
                                         for m in methods],
                      "channelTypeNotification": {
                          "notificationType": "URL", "value": rx.url(b, "acquirer"),
                          "security": {"key": ACQ_KEY, "supportEmail": "ops@example.com",
                                       "algorithm": "AES-256-GCM"}}})
            assert r.status_code == 200 and r.json()["transactionStatus"] == "ACTC", r.text

        # the intruder: everything it may ask for, granted only a bank no event names
        self.intruder, _, tok = tenant()
        admin("POST", f"/v1/clients/{self.intruder}/grants", 201,
              json={"bank_id": f"soak-x-{run}"})
        r = requests.post(base + "/v1/endpoints", timeout=30, json={
            "url": rx.url("ok", "intruder")}, headers={"Authorization": f"Bearer {tok}"})
        assert r.status_code == 201, r.text
        r = requests.post(base + "/banksocket/v1/webhooks", timeout=30,
                          headers={"Authentication": tok}, json={
                              "title": "soak", "endpoint": rx.url("ok", "intruder"),
                              "event": "NEW_TRANSACTION", "account": "all"})
        assert r.status_code == 200, r.text

    # -- events and what they must reach

    def next_event(self, group: str) -> tuple[dict, list[str]]:
        """A new event of the group and the receiver paths it must reach."""
        credit = random.random() < 0.5
        dc = "credit" if credit else "debit"
        if group == "native":
            ev = make_event(self.bank_n, str(uuid.uuid4()), event_id=unique("sn"))
            return ev, [f"/{b}/native" for b in ("ok", "flaky", "slow")]
        if group == "obp":
            if random.random() < 0.25:
                ev = make_event(self.bank_o, self.acct_o, event_id=unique("so"),
                                type_="balance.changed")
                return ev, ["/ok/obp"]
            ev = make_event(self.bank_o, self.acct_o, event_id=unique("so"))
            ev["data"]["dc"] = dc
            return ev, ["/ok/obp", "/flaky/obp" if credit else "/slow/obp"]
        if group == "banksocket":
            eid = unique("sb")
            ev = make_event("soak-bank", self.acct_b, event_id=eid)
            ev["data"]["dc"] = dc
            ev["data"]["description"] = eid  # the form carries no event id
            return ev, ["/ok/banksocket", "/slow/banksocket" if credit else
                        "/flaky/banksocket"]
        eid = unique("sa")
        method = random.choice(["CARD", "BLIK"])
        ev = {"id": eid, "type": "payment.updated", "occurred_at": "2026-11-25T10:15:00Z",
              "data": {"acquirer_id": self.acquirer, "merchant_id": self.merchant,
                       "acceptor_id": "11", "terminal_id": "22", "payment_id": eid,
                       "payment_method": method, "status": "SETTLED", "amount": "12.34",
                       "currency": "PLN"}}
        return ev, (["/ok/acquirer", "/flaky/acquirer"] if method == "CARD" else
                    ["/flaky/acquirer", "/slow/acquirer"])


# ------------------------------------------------------------ the poison


def poison_produce(st, t: Tenants, load: Load) -> tuple[dict, dict]:
    """Writes the poison and, on its partition (same key), the canary,
    straight to Kafka; the canary's deliveries join the expected ones."""
    key = str(uuid.uuid4())
    poison = make_event(t.bank_n, key, event_id=unique("poison"),
                        occurred_at="0001-01-01T00:00:00+01:00")
    canary = make_event(t.bank_n, key, event_id=unique("canary"))
    st.produce([json.dumps(poison, separators=(",", ":")),
                json.dumps(canary, separators=(",", ":"))], key=key)
    with load.lock:
        for b in ("ok", "flaky", "slow"):
            load.expected[(f"/{b}/native", canary["id"])] = "poison-canary"
    return poison, canary


def poison_dlq_reason(st, poison: dict) -> str | None:
    """The reason of the poison's DLQ entry, or None when it is not there."""
    for m in st.consume(TOPIC_DLQ):
        try:
            entry = json.loads(m.get("payload") or "")
        except ValueError:
            continue
        if isinstance(entry, dict) and poison["id"] in str(entry.get("payload")):
            return str(entry.get("reason"))
    return None


# ------------------------------------------------------------ load


@dataclass
class Load:
    lock: threading.Lock = field(default_factory=threading.Lock)
    expected: dict = field(default_factory=dict)   # (path, event id) -> group
    accepted: Counter = field(default_factory=Counter)
    refused: Counter = field(default_factory=Counter)  # status or exception name
    stop: threading.Event = field(default_factory=threading.Event)


def poster(t: Tenants, load: Load, group: str, token: str, rate: float) -> None:
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {token}"
    url = t.st.api_url + "/v1/events"
    period = 1.0 / rate
    nxt = time.monotonic()
    while not load.stop.is_set():
        ev, paths = t.next_event(group)
        try:
            r = s.post(url, json=ev, timeout=30)
            status = r.status_code
        except requests.RequestException as exc:
            status = type(exc).__name__
        with load.lock:
            if status == 202:
                load.accepted[group] += 1
                for p in paths:
                    load.expected[(p, ev["id"])] = group
            else:
                load.refused[str(status)] += 1
        if status == 429:
            time.sleep(int(r.headers.get("Retry-After", "1")))
        nxt += period
        delay = nxt - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            nxt = time.monotonic()  # behind (a fault): no catch-up burst


# ------------------------------------------------------------ observation


class RssSampler(threading.Thread):
    """Peak VmHWM per process name, across restarts."""

    def __init__(self, st):
        super().__init__(daemon=True)
        self.st, self.peak = st, {}
        self.halt = threading.Event()

    def sample(self):
        for name in list(self.st.procs):
            mb = self.st.peak_rss_mb(name)
            if mb is not None:
                self.peak[name] = max(self.peak.get(name, 0.0), mb)

    def run(self):
        while not self.halt.wait(2):
            self.sample()


ERROR_RE = re.compile(r" (error|warn) ")


def log_lines(st) -> tuple[list[str], Counter]:
    """Sanitizer lines, and error/warn lines per process counted by message
    (timestamps and ids stripped)."""
    sanitizer, counts = [], Counter()
    for p in st.all_logs():
        text = p.read_text(errors="replace")
        for line in text.splitlines():
            if SANITIZER_RE.search(line):
                sanitizer.append(f"{p.name}: {line.strip()}")
            m = ERROR_RE.search(line)
            if m and p.name.split(".")[0] in ("api", "worker", "scheduler"):
                msg = line[m.end():]
                msg = re.sub(r"\b[0-9a-f]{8}-[0-9a-f-]{27}\b", "<id>", msg)
                msg = re.sub(r"\d+", "N", msg)
                counts[f"{p.name.split('.')[0]} {m.group(1)}: {msg[:160]}"] += 1
    return sanitizer, counts


def delivery_status(st) -> dict[str, int]:
    out = st.sql("SELECT status, count(*) FROM deliveries GROUP BY status")
    return {row.split("|")[0]: int(row.split("|")[1]) for row in out.splitlines() if row}


# ------------------------------------------------------------ main


def main() -> int:
    missing = missing_binaries() + missing_tools()
    if missing:
        print(f"soak: missing {', '.join(missing)} (run make / deploy/setup.sh)")
        return 2
    st = new_stack("bh-soak-", SOAK_OVERRIDES)
    log(f"stack in {st.run_dir}; {SOAK_SECONDS} s at {SOAK_RATE} events/s")
    rx = Receiver()
    rss = RssSampler(st)
    load = Load()
    failures: list[str] = []
    rc = 1
    try:
        start_stack(st)
        tenants = Tenants(st, rx)
        rss.start()
        groups = ["native", "obp", "banksocket", "acquirer"]
        threads = [threading.Thread(target=poster, daemon=True, args=(
            tenants, load, g, tenants.publishers[i % 2], SOAK_RATE / len(groups)))
            for i, g in enumerate(groups)]
        t0 = time.monotonic()
        for th in threads:
            th.start()

        faults = [(SOAK_SECONDS / 3, "worker kill -9"), (SOAK_SECONDS / 2, "poison event"),
                  (2 * SOAK_SECONDS / 3, "kafka restart")]
        poison = canary = None
        for at, what in faults:
            while time.monotonic() - t0 < at:
                time.sleep(1)
            with load.lock:
                n = sum(load.accepted.values())
            log(f"{what} ({n} events accepted so far)")
            rss.sample()
            if what.startswith("worker"):
                st.restart_worker(kill9=True)
            elif what.startswith("poison"):
                poison, canary = poison_produce(st, tenants, load)
            else:
                st.infra("kafka-restart")
            log(f"{what} done")
        while time.monotonic() - t0 < SOAK_SECONDS:
            time.sleep(1)
            if int(time.monotonic() - t0) % 60 == 0:
                with load.lock:
                    log(f"{sum(load.accepted.values())} accepted, "
                        f"{len(rx.r.ok)} delivered")
        load.stop.set()
        for th in threads:
            th.join(60)
        log("load stopped; draining")

        # drain: every expected delivery answered, or no progress for long
        deadline = time.monotonic() + DRAIN_TIMEOUT
        expected = dict(load.expected)
        last_n, last_change = -1, time.monotonic()
        while True:
            with rx.r.lock:
                n_ok = len(rx.r.first)
            status = delivery_status(st)
            if n_ok != last_n:
                last_n, last_change = n_ok, time.monotonic()
            if status.get("pending", 0) == 0 and (
                    n_ok >= len(expected) or time.monotonic() - last_change > 60):
                break
            if time.monotonic() > deadline:
                log(f"drain timed out: {n_ok} of {len(expected)}; deliveries {status}")
                break
            time.sleep(3)
        log(f"drained: {n_ok} delivered of {len(expected)} expected; deliveries {status}")
        rss.sample()
        rss.halt.set()

        # match receipts to expected (path, event id)
        with rx.r.lock:
            first = dict(rx.r.first)
            ok = Counter(rx.r.ok)
            n_requests = rx.r.requests
        received: dict[tuple[str, str], int] = defaultdict(int)
        unknown = 0
        for wid, (path, body, ctype) in first.items():
            key = event_key(path, body, ctype)
            if key is None:
                unknown += 1
                continue
            received[(path, key)] += 1
        delivered = sum(1 for k in expected if k in received)
        lost = [k for k in expected if k not in received]
        unexpected = [k for k in received if k not in expected]
        dup_ids = {wid: n - 1 for wid, n in ok.items() if n > 1}
        # the same event at the same path under two webhook-ids would be a
        # second delivery row: also a duplicate to the receiver
        dup_rows = sum(n - 1 for n in received.values() if n > 1)
        status = delivery_status(st)
        db_total = sum(status.values())
        sanitizer, errors = log_lines(st)
        # cross-tenant: what reached the intruder, at the receiver and in the log
        foreign_rx = sum(1 for path, _, _ in first.values() if path.endswith("/intruder"))
        foreign_db = int(st.sql("SELECT count(*) FROM deliveries"
                                f" WHERE client_id = '{tenants.intruder}'"))
        reason = poison_dlq_reason(st, poison) if poison else None
        canary_paths = [k for k in expected if canary and k[1] == canary["id"]]
        canary_ok = bool(canary_paths) and all(k in received for k in canary_paths)
        poison_held = reason is not None and canary_ok

        with load.lock:
            accepted = dict(load.accepted)
            refused = dict(load.refused)
        per_group = Counter(g for g in expected.values())
        print()
        print(f"soak: {SOAK_SECONDS} s, {SOAK_RATE} events/s posted; worker kill -9 at "
              f"{SOAK_SECONDS // 3} s, Kafka restart at {2 * SOAK_SECONDS // 3} s")
        print(f"  events accepted (202)     {sum(accepted.values())}  "
              + " ".join(f"{g}={n}" for g, n in sorted(accepted.items())))
        print(f"  events refused            {sum(refused.values())}  "
              + " ".join(f"{k}={n}" for k, n in sorted(refused.items())))
        print(f"  deliveries expected       {len(expected)}  "
              + " ".join(f"{g}={n}" for g, n in sorted(per_group.items())))
        print(f"  delivered                 {delivered}")
        print(f"  duplicates                {sum(dup_ids.values()) + dup_rows}  "
              f"(same webhook-id answered 2xx again: {sum(dup_ids.values())}; "
              f"same event+subscription under another id: {dup_rows})")
        print(f"  lost                      {len(lost)}")
        print(f"  unexpected deliveries     {len(unexpected)} (+{unknown} unreadable)")
        print(f"  cross-tenant              {'held' if foreign_rx + foreign_db == 0 else 'BROKEN'}"
              f" (intruder's \"all\" subscriptions: {foreign_rx} received,"
              f" {foreign_db} deliveries in PostgreSQL)")
        print(f"  receiver requests         {n_requests} (incl. 500s and retries)")
        print(f"  deliveries in PostgreSQL  {db_total}  {status}")
        print("  peak RSS (VmHWM)          " +
              "  ".join(f"{n}={mb:.1f} MiB" for n, mb in sorted(rss.peak.items())))
        print(f"  poison event              {'held' if poison_held else 'NOT HELD'}  "
              f"(on {TOPIC_DLQ}: {'yes, ' + repr(reason[:80]) if reason else 'no'}; "
              f"canary on its partition delivered to "
              f"{sum(k in received for k in canary_paths)}/{len(canary_paths)})")
        print(f"  sanitizer lines           {len(sanitizer)}")
        for line in sanitizer[:20]:
            print(f"    {line}")
        print(f"  error/warn log lines      {sum(errors.values())}")
        for msg, n in errors.most_common(25):
            print(f"    {n:6d}  {msg}")
        for k in lost[:20]:
            print(f"  LOST {k}")
        if lost:
            failures.append(f"{len(lost)} deliveries lost")
        if sanitizer:
            failures.append("sanitizer reports")
        if unexpected:
            failures.append(f"{len(unexpected)} deliveries nobody subscribed to")
        if foreign_rx or foreign_db:
            failures.append("another tenant's events reached the intruder")
        if not poison_held:
            failures.append("the poison event was not held")
        rc = 1 if failures else 0
    finally:
        rss.halt.set()
        rx.close()
        keep = bool(os.environ.get("BH_KEEP_RUN")) or rc != 0
        teardown = stop_stack(st, keep=keep)
        if teardown:
            print("teardown: " + "\n".join(teardown))
            rc = 1
        if keep:
            print(f"run directory kept: {st.run_dir}")
    print("soak: " + ("FAILED: " + "; ".join(failures) if failures else
                      "ok" if rc == 0 else "FAILED"))
    return rc


if __name__ == "__main__":
    sys.exit(main())
