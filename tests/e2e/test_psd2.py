"""PSD2 application webhooks and /refresh (PRODUCT.md 6.2, issue 5).

Settings wait for the next full hour: the tests drive that hour with the
test-only tick (`bankhook-scheduler psd2-tick --at TIME`, allowed because
the e2e configuration sets psd2.test_clock), and check that the command is
refused without it. transactionEvents are aggregated per consent over an
8 s window (TEST_OVERRIDES); refresh calls two fake connectors written
here: a healthy one whose accounts the test changes, and one that answers
500 and then hangs past the 2 s connector timeout.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler

import pytest
import requests

from conftest import BIN, free_ports, make_event, serve_http, unique, wait_until
from webhooks import verify

WINDOW_S = 8
HOUR = 3600


# ------------------------------------------------------------------ helpers


def iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_iso(s: str) -> float:
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def next_hour(epoch_s: float) -> float:
    return (int(epoch_s) // HOUR + 1) * HOUR


def away_from_the_hour(margin_s: float = 240) -> None:
    """The real scheduler applies pending settings on the real hour; a
    test asserting that nothing happens before "its" hour must not run
    across one."""
    left = next_hour(time.time()) - time.time()
    if left < margin_s:
        time.sleep(left + 2)


def tick(stack, at: str, test_clock: str = "true") -> subprocess.CompletedProcess:
    env = dict(stack.env, BANKHOOK_PSD2_TEST_CLOCK=test_clock)
    return subprocess.run([str(BIN / "bankhook-scheduler"), "psd2-tick", "--at", at], env=env,
                          capture_output=True, text=True, timeout=60)


def tpp(stack, admin):
    """A new client (TPP application) and an Api with its token."""
    client = admin.create_client()
    user = admin.create_user(client["id"])
    token = admin.create_token(user["id"])["token"]
    return client["id"], stack.api(token)


def bank(admin, code: str, connector_url: str = "", name: str | None = None) -> str:
    bank_id = unique("bank")
    admin.expect("PUT", f"/v1/banks/{bank_id}", 201,
                 json={"name": name or f"Bank {code}", "code": code,
                       "connector_url": connector_url})
    return bank_id


def consent(admin, client_id: str, accounts: list[tuple[str, str]]) -> str:
    cid = unique("consent")
    admin.expect("PUT", f"/v1/consents/{cid}", 201,
                 json={"client_id": client_id,
                       "accounts": [{"account_id": a, "bank_code": c} for a, c in accounts]})
    return cid


def activate(stack, api, url: str, header: str = "") -> dict:
    """Enables the settings and ticks their hour: in force on return."""
    body = api.expect("PUT", "/tpp/v1/webhook-settings", 200,
                      json={"enabled": True, "endpoint": url, "securityHeader": header})
    at = body["pending"]["activeFrom"]
    r = tick(stack, at)
    assert r.returncode == 0, r.stderr
    now = api.expect("GET", "/tpp/v1/webhook-settings", 200)
    assert now["enabled"] and now["endpoint"] == url and now["pending"] is None, now
    return now


def payloads(receiver, path: str, type_: str, consent_id: str) -> list:
    """Deliveries of one kind for one consent, one per webhook-id."""
    seen = {}
    for r in receiver.got(path):
        body = r.json()
        if body.get("type") == type_ and body.get("consentId") == consent_id:
            seen.setdefault(r.headers["webhook-id"], (r, body))
    return list(seen.values())


def window_closed(stack, consent_id: str) -> bool:
    return stack.sql(f"SELECT count(*) FROM psd2_tx_pending WHERE consent_id = '{consent_id}'") == "0"


def publish_transactions(stack, events: list[dict]) -> None:
    """All in one kcat call, so they land inside one window."""
    stack.produce([json.dumps(e) for e in events], keys=[e["account_id"] for e in events])


# --------------------------------------------------------- fake connectors


class Connector:
    """A bank connector: GET /consents/{id}/accounts answers from `plan`
    (a list of actions used in order, the last one repeating): ("ok",),
    ("status", 500), ("hang", seconds) or ("delay", seconds) before "ok".
    `accounts` is what "ok" returns."""

    def __init__(self, plan):
        self.plan = list(plan)
        self.accounts: list[dict] = []
        self.calls: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                with outer.lock:
                    outer.calls.append((time.time(), self.path))
                    action = outer.plan.pop(0) if len(outer.plan) > 1 else outer.plan[0]
                    accounts = list(outer.accounts)
                if action[0] in ("hang", "delay"):
                    time.sleep(action[1])
                    if action[0] == "hang":
                        return
                status = action[1] if action[0] == "status" else 200
                body = json.dumps({"accounts": accounts} if status == 200
                                  else {"error": "down"}).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the scheduler gave up (or was killed) meanwhile

            def log_message(self, *args):
                pass

        self.server = serve_http(Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def set(self, plan=None, accounts=None):
        with self.lock:
            if plan is not None:
                self.plan = list(plan)
            if accounts is not None:
                self.accounts = accounts

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def connectors():
    made = []

    def make(plan):
        c = Connector(plan)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


# ------------------------------------------------------------ done means 2


def test_settings_activate_on_the_tick_and_disable_at_once(stack, admin, receiver):
    away_from_the_hour()
    client_id, api = tpp(stack, admin)
    url = receiver.url("/tpp-activation")
    own = bank(admin, "TB")
    acc = str(uuid.uuid4())
    cid = consent(admin, client_id, [(acc, "TB")])

    # Nothing in force before the first change.
    first = api.expect("GET", "/tpp/v1/webhook-settings", 200)
    assert first == {"enabled": False, "endpoint": None, "securityHeader": "",
                     "endpointId": None, "pending": None}

    before = time.time()
    body = api.expect("PUT", "/tpp/v1/webhook-settings", 200,
                      json={"enabled": True, "endpoint": url,
                            "securityHeader": "Basic dXNlcjpwYXNzd29yZA=="})
    after = time.time()
    assert body["enabled"] is False and body["pending"]["enabled"] is True, body
    assert body["pending"]["endpoint"] == url
    assert body["pending"]["securityHeader"] == "Basic dXNlcjpwYXNzd29yZA=="
    active_from = body["pending"]["activeFrom"]
    assert parse_iso(active_from) in {next_hour(before), next_hour(after)}, active_from
    assert api.expect("GET", "/tpp/v1/webhook-settings", 200) == body

    # A transaction before the hour: its window closes with nothing in force.
    publish_transactions(stack, [make_event(own, acc)])
    wait_until(lambda: stack.sql("SELECT count(*) FROM psd2_tx_pending"
                                 f" WHERE consent_id = '{cid}'") == "1", 30, "marked")
    wait_until(lambda: window_closed(stack, cid), 60, "window closed")
    time.sleep(2)
    assert receiver.got("/tpp-activation") == []

    # The tick one millisecond early changes nothing; on the hour it applies.
    early = tick(stack, iso(parse_iso(active_from) - 0.001))
    assert early.returncode == 0 and early.stdout.strip() == "0", early
    assert api.expect("GET", "/tpp/v1/webhook-settings", 200)["pending"] is not None
    on_time = tick(stack, active_from)
    # (other tests' changes pending for the same hour may be applied too)
    assert on_time.returncode == 0 and int(on_time.stdout) >= 1, on_time
    now = api.expect("GET", "/tpp/v1/webhook-settings", 200)
    assert now["enabled"] is True and now["endpoint"] == url and now["pending"] is None, now
    assert now["securityHeader"] == "Basic dXNlcjpwYXNzd29yZA=="
    secret = api.expect("GET", f"/v1/endpoints/{now['endpointId']}", 200)["secret"]

    publish_transactions(stack, [make_event(own, acc)])
    got = wait_until(lambda: payloads(receiver, "/tpp-activation", "transactionEvent", cid), 60,
                     "transactionEvent after the tick")
    req, payload = got[0]
    assert payload == {"type": "transactionEvent", "consentId": cid, "eventType": "NEW",
                       "accounts": [{"accountId": acc}]}
    assert req.headers["authorization"] == "Basic dXNlcjpwYXNzd29yZA=="
    assert verify(secret, req.headers, req.body)
    assert req.headers["user-agent"].startswith("bankhook/")
    # In the native delivery log, succeeded.
    wait_until(lambda: [d for d in api.deliveries(endpoint_id=now["endpointId"])
                        if d["id"] == req.headers["webhook-id"]
                        and d["status"] == "succeeded"], 30, "delivery logged")

    # A header change waits for its hour; meanwhile the old header is sent.
    changed = api.expect("PUT", "/tpp/v1/webhook-settings", 200,
                         json={"enabled": True, "endpoint": url, "securityHeader": "Bearer abc"})
    assert changed["securityHeader"] == "Basic dXNlcjpwYXNzd29yZA==", changed
    assert changed["pending"]["securityHeader"] == "Bearer abc"
    publish_transactions(stack, [make_event(own, acc)])
    got = wait_until(lambda: len(payloads(receiver, "/tpp-activation", "transactionEvent", cid)) == 2
                     and payloads(receiver, "/tpp-activation", "transactionEvent", cid), 60,
                     "second transactionEvent")
    assert got[1][0].headers["authorization"] == "Basic dXNlcjpwYXNzd29yZA=="
    assert tick(stack, changed["pending"]["activeFrom"]).returncode == 0
    assert api.expect("GET", "/tpp/v1/webhook-settings", 200)["securityHeader"] == "Bearer abc"
    publish_transactions(stack, [make_event(own, acc)])
    got = wait_until(lambda: len(payloads(receiver, "/tpp-activation", "transactionEvent", cid)) == 3
                     and payloads(receiver, "/tpp-activation", "transactionEvent", cid), 60,
                     "third transactionEvent")
    assert got[2][0].headers["authorization"] == "Bearer abc"

    # Disabling is immediate and drops a pending change.
    api.expect("PUT", "/tpp/v1/webhook-settings", 200,
               json={"enabled": True, "endpoint": receiver.url("/elsewhere")})
    off = api.expect("PUT", "/tpp/v1/webhook-settings", 200, json={"enabled": False})
    assert off["enabled"] is False and off["pending"] is None, off
    count = len(receiver.got("/tpp-activation"))
    publish_transactions(stack, [make_event(own, acc)])
    wait_until(lambda: stack.sql("SELECT count(*) FROM events WHERE type = 'transaction.created'"
                                 f" AND account_id = '{acc}'") == "5", 30, "stored")
    wait_until(lambda: window_closed(stack, cid), 60, "window closed")
    time.sleep(2)
    assert len(receiver.got("/tpp-activation")) == count
    assert receiver.got("/elsewhere") == []


def test_tick_is_refused_without_the_test_clock(stack, admin, receiver):
    away_from_the_hour()
    _, api = tpp(stack, admin)
    body = api.expect("PUT", "/tpp/v1/webhook-settings", 200,
                      json={"enabled": True, "endpoint": receiver.url("/refused")})
    r = tick(stack, body["pending"]["activeFrom"], test_clock="false")
    assert r.returncode == 2, r
    assert "test_clock" in r.stderr + r.stdout
    assert api.expect("GET", "/tpp/v1/webhook-settings", 200) == body


def test_scheduler_catches_up_on_an_hour_it_missed(stack, admin, receiver):
    """A pending change whose hour passed while no scheduler ran (moved into
    the past here) is applied by the running leader on its own."""
    client_id, api = tpp(stack, admin)
    url = receiver.url("/caught-up")
    body = api.expect("PUT", "/tpp/v1/webhook-settings", 200,
                      json={"enabled": True, "endpoint": url, "securityHeader": "k=1"})
    assert body["pending"] and not body["enabled"]
    stack.sql("UPDATE psd2_settings SET pending_from = now() - interval '3 hours'"
              f" WHERE client_id = '{client_id}'")
    now = wait_until(lambda: (lambda s: s if s["enabled"] else None)(
        api.expect("GET", "/tpp/v1/webhook-settings", 200)), 30, "applied by the leader")
    assert now["endpoint"] == url and now["securityHeader"] == "k=1" and now["pending"] is None
    assert stack.metrics("scheduler")["bankhook_psd2_activations_total"] >= 1


# ------------------------------------------------------------ done means 3


def test_transactions_aggregate_per_consent_per_window(stack, admin, receiver):
    client_id, api = tpp(stack, admin)
    activate(stack, api, receiver.url("/tpp-agg"))
    own = bank(admin, "TB")
    other_code = unique("SL")[:16]
    other = bank(admin, other_code)
    a, b, c, x = (str(uuid.uuid4()) for _ in range(4))
    cid = consent(admin, client_id, [(a, "TB"), (b, "TB"), (c, "TB"), (x, other_code)])
    other_only = consent(admin, client_id, [(x, other_code)])

    events = [make_event(own, a), make_event(own, b), make_event(own, a), make_event(own, c),
              make_event(own, b),
              # not new transactions at the bank itself: no account for them
              make_event(own, a, type_="balance.changed"),
              make_event(other, x), make_event(other, x)]
    publish_transactions(stack, events)
    got = wait_until(lambda: payloads(receiver, "/tpp-agg", "transactionEvent", cid), 60,
                     "transactionEvent")
    wait_until(lambda: window_closed(stack, cid) and window_closed(stack, other_only), 60,
               "windows closed")
    time.sleep(2)
    got = payloads(receiver, "/tpp-agg", "transactionEvent", cid)
    assert len(got) == 1, [p for _, p in got]
    accounts = [e["accountId"] for e in got[0][1]["accounts"]]
    assert sorted(accounts) == sorted([a, b, c]), accounts
    assert payloads(receiver, "/tpp-agg", "transactionEvent", other_only) == []


# ------------------------------------------------------------ done means 4


def task(api, task_id):
    return api.expect("GET", f"/tpp/v1/refresh/{task_id}", 200)


def completed(api, task_id):
    t = task(api, task_id)
    return t if t["status"] == "COMPLETED" else None


def test_refresh_two_banks_then_kill_the_scheduler_mid_refresh(stack, admin, receiver, connectors):
    client_id, api = tpp(stack, admin)
    activate(stack, api, receiver.url("/tpp-refresh"))
    healthy = connectors([("ok",)])
    failing = connectors([("status", 500), ("hang", 5)])
    h_code, f_code = unique("HB")[:16], unique("FB")[:16]
    bank(admin, "TB")
    bank(admin, h_code, healthy.url, name="Healthy banka")
    bank(admin, f_code, failing.url, name="Failing banka")
    own_acc = str(uuid.uuid4())
    cid = consent(admin, client_id, [(own_acc, "TB"), ("h-1", h_code), ("f-1", f_code)])
    healthy.set(accounts=[{"accountId": "A", "balance": "1.00", "currency": "EUR"},
                          {"accountId": "B", "balance": "2.00", "currency": "EUR"},
                          {"accountId": "C", "balance": "3.00", "currency": "EUR"}])

    t1 = api.expect("PUT", "/tpp/v1/refresh", 202, headers={"Consent-ID": cid})["taskId"]
    # While it runs, a second request names the same task.
    assert api.expect("PUT", "/tpp/v1/refresh", 202, json={"consentId": cid})["taskId"] == t1
    # Another client's consent: not found, and its tasks are not visible.
    _, stranger = tpp(stack, admin)
    stranger.expect("PUT", "/tpp/v1/refresh", 404, headers={"Consent-ID": cid})
    stranger.expect("GET", f"/tpp/v1/refresh/{t1}", 404)

    # The request went through bankhook.refresh.
    assert any(json.loads(m["payload"]) == {"taskId": t1, "consentId": cid}
               for m in stack.consume("bankhook.refresh"))
    done = wait_until(lambda: completed(api, t1), 90, "first task completed")
    banks = {b["bankCode"]: b for b in done["banks"]}
    assert set(banks) == {h_code, f_code}, done  # the bank itself is not refreshed
    assert banks[h_code]["status"] == "FINISHED"
    assert banks[h_code]["bankName"] == "Healthy banka"
    assert banks[h_code]["accounts"] == [{"accountId": i, "eventType": "ADDED"} for i in "ABC"]
    assert banks[f_code]["status"] == "FAILED" and banks[f_code]["error"], banks[f_code]
    assert banks[f_code]["attempts"] == 3
    assert len(failing.calls) == 3  # bounded retries
    m = stack.metrics("scheduler")
    assert m['bankhook_refresh_tasks_total{status="bank_finished"}'] >= 1
    assert m['bankhook_refresh_tasks_total{status="bank_failed"}'] >= 1

    def events_of(task_id):
        return [p for _, p in payloads(receiver, "/tpp-refresh", "accountEvent", cid)
                if p["taskId"] == task_id]

    evs = wait_until(lambda: len(events_of(t1)) == 2 and events_of(t1), 60, "two accountEvents")
    by_bank = {e["bankCode"]: e for e in evs}
    assert by_bank[h_code] == {"type": "accountEvent", "consentId": cid, "taskId": t1,
                               "taskStatus": "FINISHED", "bankCode": h_code,
                               "bankName": "Healthy banka",
                               "accounts": [{"accountId": i, "eventType": "ADDED"}
                                            for i in "ABC"]}
    assert by_bank[f_code]["taskStatus"] == "FAILED" and by_bank[f_code]["accounts"] == []

    # Second refresh against the stored snapshot; the scheduler is killed
    # while the healthy connector is answering.
    healthy.set(plan=[("delay", 4), ("ok",)],
                accounts=[{"accountId": "A", "balance": "1.50", "currency": "EUR"},
                          {"accountId": "C", "balance": "3.00", "currency": "EUR"},
                          {"accountId": "D", "balance": "4.00", "currency": "EUR"}])
    calls_before = len(healthy.calls)
    t2 = api.expect("PUT", "/tpp/v1/refresh", 202, headers={"Consent-ID": cid})["taskId"]
    assert t2 != t1
    wait_until(lambda: len(healthy.calls) > calls_before, 60, "healthy connector called")
    stack.stop("scheduler", kill9=True)
    assert task(api, t2)["status"] == "RUNNING"
    stack.start("scheduler")
    stack.wait_ready("scheduler")

    done = wait_until(lambda: completed(api, t2), 120, "second task completed after restart")
    banks = {b["bankCode"]: b for b in done["banks"]}
    assert banks[h_code]["status"] == "FINISHED", banks
    assert banks[h_code]["accounts"] == [{"accountId": "A", "eventType": "UPDATED"},
                                         {"accountId": "B", "eventType": "DELETED"},
                                         {"accountId": "D", "eventType": "ADDED"}]
    assert banks[h_code]["attempts"] >= 2  # the killed call was made again
    assert banks[f_code]["status"] == "FAILED"
    evs = wait_until(lambda: len(events_of(t2)) == 2 and events_of(t2), 60,
                     "two accountEvents for the second task")
    by_bank = {e["bankCode"]: e for e in evs}
    assert by_bank[h_code]["taskStatus"] == "FINISHED"
    assert by_bank[h_code]["accounts"] == banks[h_code]["accounts"]
    assert by_bank[f_code]["taskStatus"] == "FAILED"
    # Nothing left behind.
    assert stack.sql("SELECT count(*) FROM psd2_task_banks b JOIN psd2_tasks t"
                     f" ON t.id = b.task_id WHERE t.consent_id = '{cid}'"
                     " AND b.status IN ('PENDING', 'RUNNING')") == "0"


# ------------------------------------------------------------ done means 5


def error_message(r: requests.Response) -> str:
    return r.json()["error"]["message"]


@pytest.mark.parametrize("body, field", [
    ({"enabled": True, "endpoint": "http://127.0.0.1:1/hook?a=b"}, "endpoint"),
    ({"enabled": True, "endpoint": "http://127.0.0.1:1/hook#frag"}, "endpoint"),
    ({"enabled": True, "endpoint": "ftp://127.0.0.1:1/hook"}, "endpoint"),
    ({"enabled": True}, "endpoint"),
    ({"enabled": True, "endpoint": "http://127.0.0.1:1/h", "securityHeader": "Basic a;b"},
     "securityHeader"),
    ({"enabled": True, "endpoint": "http://127.0.0.1:1/h", "securityHeader": 5},
     "securityHeader"),
    ({"endpoint": "http://127.0.0.1:1/h"}, "enabled"),
    ({"enabled": "yes", "endpoint": "http://127.0.0.1:1/h"}, "enabled"),
    ({"enabled": True, "endpoint": "http://127.0.0.1:1/h", "colour": "red"}, "colour"),
])
def test_bad_settings_are_refused_and_nothing_stored(stack, admin, body, field):
    client_id, api = tpp(stack, admin)
    r = api.request("PUT", "/tpp/v1/webhook-settings", json=body)
    assert r.status_code == 400, r.text
    assert field in error_message(r), r.text
    assert stack.sql(f"SELECT count(*) FROM psd2_settings WHERE client_id = '{client_id}'") == "0"
    assert api.expect("GET", "/tpp/v1/webhook-settings", 200)["pending"] is None


def test_bad_json_and_bad_refresh_requests(stack, admin):
    client_id, api = tpp(stack, admin)
    r = api.request("PUT", "/tpp/v1/webhook-settings", data=b'{"enabled": tru',
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "body" in error_message(r), r.text
    r = api.request("PUT", "/tpp/v1/refresh", data=b'{"consentId": ',
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "body" in error_message(r), r.text
    r = api.request("PUT", "/tpp/v1/refresh")
    assert r.status_code == 400 and "consentId" in error_message(r), r.text
    r = api.request("PUT", "/tpp/v1/refresh", headers={"Consent-ID": unique("nope")})
    assert r.status_code == 404 and "consentId" in error_message(r), r.text
    cid = consent(admin, client_id, [("x", "TB")])
    r = api.request("PUT", "/tpp/v1/refresh", headers={"Consent-ID": cid},
                    json={"consentId": unique("other")})
    assert r.status_code == 400 and "Consent-ID" in error_message(r), r.text
    r = api.request("PUT", "/tpp/v1/refresh", json={"consentId": 7})
    assert r.status_code == 400 and "consentId" in error_message(r), r.text
    api.expect("GET", f"/tpp/v1/refresh/{uuid.uuid4()}", 404)
    assert stack.sql(f"SELECT count(*) FROM psd2_tasks WHERE client_id = '{client_id}'") == "0"


def test_consents_validate_and_are_admin_only(stack, admin):
    client_id, api = tpp(stack, admin)
    cid = unique("consent")
    good = {"client_id": client_id, "accounts": [{"account_id": "a1", "bank_code": "TB"}]}
    r = api.request("PUT", f"/v1/consents/{cid}", json=good)
    assert r.status_code == 403, r.text
    for body, field in [
        ({"client_id": client_id}, "accounts"),
        ({"client_id": client_id, "accounts": [{"account_id": "a1"}]}, "accounts[0].bank_code"),
        ({"client_id": client_id, "accounts": [{"account_id": "a1", "bank_code": "TB"},
                                               {"account_id": "a1", "bank_code": "TB"}]},
         "accounts[1]"),
        ({"client_id": unique("ghost"), "accounts": []}, "client_id"),
        ({"client_id": client_id, "accounts": [{"account_id": "", "bank_code": "TB"}]},
         "accounts[0].account_id"),
    ]:
        r = admin.request("PUT", f"/v1/consents/{cid}", json=body)
        assert r.status_code == 400 and field in error_message(r), (body, r.text)
    assert stack.sql(f"SELECT count(*) FROM consents WHERE consent_id = '{cid}'") == "0"
    created = admin.expect("PUT", f"/v1/consents/{cid}", 201, json=good)
    assert created["client_id"] == client_id and created["accounts"] == good["accounts"]
    # Its client reads it; another client does not.
    assert api.expect("GET", f"/v1/consents/{cid}", 200)["consent_id"] == cid
    _, stranger = tpp(stack, admin)
    stranger.expect("GET", f"/v1/consents/{cid}", 404)
    # Replacing the accounts replaces the rows the transaction trigger reads.
    admin.expect("PUT", f"/v1/consents/{cid}", 200,
                 json={"client_id": client_id,
                       "accounts": [{"account_id": "a2", "bank_code": "TB"}]})
    assert stack.sql(f"SELECT string_agg(account_id, ',') FROM consent_accounts"
                     f" WHERE consent_id = '{cid}'") == "a2"


def test_ids_that_cannot_exist_are_404_not_a_database_error(stack, admin):
    """A path id that is not valid UTF-8 went to PostgreSQL as text, which
    refused it: GET answered 503 "database unavailable" (found while
    documenting the routes for schemathesis). Such ids name nothing: 404,
    as for an id that does not exist, and the next call still works."""
    client_id, api = tpp(stack, admin)
    cid = consent(admin, client_id, [("a1", "TB")])
    task_id = api.expect("PUT", "/tpp/v1/refresh", 202, json={"consentId": cid})["taskId"]
    api_log = stack.log_dir / "api.log"
    log_from = api_log.stat().st_size
    for caller in (admin, api):
        for path, field in [("/v1/consents/%FF", "consent_id"),
                            ("/v1/consents/a%C3%28b", "consent_id"),
                            ("/v1/consents/has%20space", "consent_id"),
                            ("/tpp/v1/refresh/%FF%FE", "taskId"),
                            (f"/tpp/v1/refresh/{task_id}%E2%82", "taskId")]:
            r = caller.request("GET", path)
            assert r.status_code == 404, (path, r.status_code, r.text)
            assert r.json()["error"]["message"].startswith(f"{field}: no such"), r.text
    assert api.expect("GET", f"/v1/consents/{cid}", 200)["consent_id"] == cid
    assert api.expect("GET", f"/tpp/v1/refresh/{task_id}", 200)["taskId"] == task_id
    # Bad ids are the caller's problem: no database error was logged for them.
    with open(api_log, "rb") as f:
        f.seek(log_from)
        logged = f.read().decode(errors="replace")
    assert "database" not in logged, logged[-2000:]


# --------------------------------------------------- two schedulers, one leads


def test_two_schedulers_one_leads_and_the_standby_takes_over(stack, admin, receiver, connectors):
    port = free_ports(1)[0]
    stack.ports["scheduler2_http"] = port
    stack.start("scheduler2", binary="scheduler", env={"BANKHOOK_SCHEDULER_HTTP_PORT": str(port)})
    try:
        stack.wait_ready("scheduler2")
        time.sleep(2)
        assert stack.metrics("scheduler")["bankhook_scheduler_leader"] == 1
        assert stack.metrics("scheduler2")["bankhook_scheduler_leader"] == 0

        def applied_in(name: str, client_id: str) -> bool:
            text = (stack.log_dir / f"{name}.log").read_text(errors="replace")
            return f"webhook settings of client {client_id} now in force" in text

        # With both running, the leader alone applies a change whose hour passed.
        c1, api1 = tpp(stack, admin)
        api1.expect("PUT", "/tpp/v1/webhook-settings", 200,
                    json={"enabled": True, "endpoint": receiver.url("/two-1")})
        stack.sql("UPDATE psd2_settings SET pending_from = now() - interval '1 hour'"
                  f" WHERE client_id = '{c1}'")
        wait_until(lambda: api1.expect("GET", "/tpp/v1/webhook-settings", 200)["enabled"], 30,
                   "applied")
        time.sleep(2)
        assert applied_in("scheduler", c1) and not applied_in("scheduler2", c1)

        # The leader dies; the standby takes over the hour and the refresh tasks.
        stack.stop("scheduler", kill9=True)
        wait_until(lambda: stack.metrics("scheduler2")["bankhook_scheduler_leader"] == 1, 60,
                   "standby to lead")
        c2, api2 = tpp(stack, admin)
        activate_pending = api2.expect("PUT", "/tpp/v1/webhook-settings", 200,
                                       json={"enabled": True, "endpoint": receiver.url("/two-2")})
        assert activate_pending["pending"]
        stack.sql("UPDATE psd2_settings SET pending_from = now() - interval '1 hour'"
                  f" WHERE client_id = '{c2}'")
        wait_until(lambda: api2.expect("GET", "/tpp/v1/webhook-settings", 200)["enabled"], 30,
                   "applied by the new leader")
        assert applied_in("scheduler2", c2)
        conn = connectors([("ok",)])
        conn.set(accounts=[{"accountId": "Z", "balance": "9.00", "currency": "EUR"}])
        code = unique("TW")[:16]
        bank(admin, code, conn.url)
        cid = consent(admin, c2, [("z-1", code)])
        t = api2.expect("PUT", "/tpp/v1/refresh", 202, headers={"Consent-ID": cid})["taskId"]
        done = wait_until(lambda: completed(api2, t), 90, "task completed by the new leader")
        assert done["banks"][0]["status"] == "FINISHED"
        wait_until(lambda: [p for _, p in payloads(receiver, "/two-2", "accountEvent", cid)
                            if p["taskId"] == t], 60, "accountEvent")
    finally:
        # Leave the stack as it was: "scheduler" running (leading once
        # scheduler2 stops).
        if stack.procs["scheduler"].poll() is not None:
            stack.start("scheduler")
            stack.wait_ready("scheduler")
        stack.stop("scheduler2")
        wait_until(lambda: stack.metrics("scheduler")["bankhook_scheduler_leader"] == 1, 60,
                   "scheduler to lead again")


def test_consent_grants_its_accounts_in_every_dialect(stack, admin, receiver):
    """Issue 12: a client's consent is a data grant of its accounts. A
    native endpoint without filter of a client holding only a consent gets
    the consented account's transactions and no other account's; narrowing
    the consent stops them within a second (consent changes move the
    version the workers reload on)."""
    client_id, api = tpp(stack, admin)
    code = "C" + uuid.uuid4().hex[:5].upper()
    bank_id = bank(admin, code)
    covered, other = str(uuid.uuid4()), str(uuid.uuid4())
    cid = consent(admin, client_id, [(covered, code)])
    r = api.post("/v1/endpoints", json={"url": receiver.url("/consented"),
                                        "filter": {"bank_id": bank_id, "account_id": other}})
    assert r.status_code == 403, r.text  # the consent does not cover that account
    ep = api.create_endpoint(receiver.url("/consented"))
    try:
        mine = admin.expect("POST", "/v1/events", 202, json=make_event(bank_id, covered))["id"]
        theirs = admin.expect("POST", "/v1/events", 202, json=make_event(bank_id, other))["id"]
        wait_until(lambda: mine in receiver.event_ids("/consented"), 30, "the consented account")
        wait_until(lambda: stack.sql(f"SELECT count(*) FROM events WHERE id = '{theirs}'")
                   == "1", 30, "the other account's event to be stored")
        assert receiver.event_ids("/consented") == {mine}
        admin.expect("PUT", f"/v1/consents/{cid}", 200, json={"client_id": client_id,
                                                              "accounts": []})
        time.sleep(1.5)
        after = admin.expect("POST", "/v1/events", 202, json=make_event(bank_id, covered))["id"]
        wait_until(lambda: stack.sql(f"SELECT count(*) FROM events WHERE id = '{after}'")
                   == "1", 30, "the event after the consent narrowed")
        assert stack.sql(f"SELECT count(*) FROM deliveries WHERE event_id = '{after}'"
                         f" AND client_id = '{client_id}'") == "0"
    finally:
        admin.request("DELETE", f"/v1/endpoints/{ep['id']}")
