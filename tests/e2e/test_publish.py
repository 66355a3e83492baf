"""The publish path (issue 13; docs/DESIGN.md "Publishing: batch and
idempotency"): POST /v1/events/batch with one result per event, the
Idempotency-Key header on both publish routes, and the publish rate limit
that is separate from the management-call limit.

One private stack with a small management limit (5/s, burst 5) and a
publish limit of its own (1/s, burst 60): a publisher token gets through
50 quick publishes, is refused past its publish burst, and its management
calls are still held to the small limit. Every test publishes with a
publisher token of its own, so the tests do not share a bucket.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
import requests

from conftest import (TEST_OVERRIDES, Api, PatientApi, Receiver, make_event, missing_binaries,
                      missing_tools, private_stack, unique, wait_until)

MGMT_RATE, MGMT_BURST = 5, 5
PUBLISH_RATE, PUBLISH_BURST = 1, 60
BATCH_BODY_LIMIT = 2 * 1024 * 1024  # above api.body_limit's default 1 MiB
DELIVERY_TIMEOUT = 30
# long enough for a second, duplicate event to have been delivered too
SETTLE_S = 3

OVERRIDES = {
    "BANKHOOK_API_RATE_LIMIT_PER_S": str(MGMT_RATE),
    "BANKHOOK_API_RATE_LIMIT_BURST": str(MGMT_BURST),
    "BANKHOOK_API_PUBLISH_RATE_LIMIT_PER_S": str(PUBLISH_RATE),
    "BANKHOOK_API_PUBLISH_RATE_LIMIT_BURST": str(PUBLISH_BURST),
    "BANKHOOK_API_BATCH_BODY_LIMIT": str(BATCH_BODY_LIMIT),
}


@pytest.fixture(scope="module")
def pstack():
    missing = missing_binaries() + missing_tools()
    if missing:
        pytest.fail(f"missing: {', '.join(missing)}", pytrace=False)
    yield from private_stack("bh-publish-", dict(TEST_OVERRIDES, **OVERRIDES), "publish")


@pytest.fixture(scope="module")
def padmin(pstack):
    from conftest import ADMIN_TOKEN
    return PatientApi(pstack.api_url, ADMIN_TOKEN)


@pytest.fixture(scope="module")
def preceiver():
    r = Receiver()
    yield r
    r.close()


def publisher(stack, admin: PatientApi) -> Api:
    """A fresh client with one user holding event_publisher, and its token."""
    client_id = admin.create_client()["id"]
    user_id = admin.create_user(client_id)["id"]
    admin.expect("POST", f"/v1/users/{user_id}/entitlements", 201,
                 json={"role": "event_publisher"})
    api = Api(stack.api_url, admin.create_token(user_id)["token"])
    api.token = api.s.headers["Authorization"].removeprefix("Bearer ")
    return api


def scoped_endpoint(admin: PatientApi, receiver: Receiver, path: str) -> tuple[str, str]:
    """An endpoint on path for a bank and account of its own: (bank, account)."""
    bank, account = unique("pub-bank"), str(uuid.uuid4())
    admin.create_endpoint(receiver.url(path), filter={"bank_id": bank, "account_id": account})
    return bank, account


def deliveries_settle(receiver: Receiver, path: str, want: set[str]) -> None:
    """Waits until every id of want reached path, then a little longer, and
    checks that nothing else did (no second event, nothing invalid)."""
    wait_until(lambda: want <= receiver.event_ids(path), DELIVERY_TIMEOUT,
               f"{len(want)} events at {path}")
    time.sleep(SETTLE_S)
    assert receiver.event_ids(path) == want
    assert len(receiver.got(path)) == len(want), "an event was delivered twice"


# ------------------------------------------------------------------ batch


def test_batch_mixed_valid_and_invalid(pstack, padmin, preceiver):
    pub = publisher(pstack, padmin)
    bank, account = scoped_endpoint(padmin, preceiver, "/batch")
    bad_time = make_event(bank, account, event_id=unique("bad-time"))
    bad_time["occurred_at"] = "yesterday"
    bad_amount = make_event(bank, account, event_id=unique("bad-amount"))
    bad_amount["data"]["amount"] = "1e5"
    events = [make_event(bank, account), bad_time,
              make_event(bank, account, event_id=unique("given")), "not an object",
              bad_amount, make_event(bank, account, type_="balance.changed")]
    r = pub.post("/v1/events/batch", json={"events": events})
    assert r.status_code == 202, r.text
    data = r.json()["data"]
    assert [d["index"] for d in data] == list(range(len(events)))
    ok = {d["index"]: d["id"] for d in data if "id" in d}
    errors = {d["index"]: d["error"] for d in data if "error" in d}
    assert sorted(ok) == [0, 2, 5] and sorted(errors) == [1, 3, 4], data
    assert ok[2] == events[2]["id"]
    assert errors[1]["code"] == "invalid_event"
    assert errors[1]["message"].startswith("events[1].occurred_at:"), errors[1]
    assert errors[3]["message"].startswith("events[3]:"), errors[3]
    assert errors[4]["message"].startswith("events[4].data.amount:"), errors[4]
    deliveries_settle(preceiver, "/batch", set(ok.values()))
    # nothing of the refused ones was stored
    for i in (1, 4):
        padmin.expect("GET", f"/v1/events/{events[i]['id']}", 404)


@pytest.mark.parametrize("body, field", [
    ({"events": []}, "events:"),
    ({"events": {}}, "events:"),
    ({"items": []}, "items:"),
    ([], "body:"),
])
def test_batch_body_refused_naming_the_field(pstack, padmin, body, field):
    pub = publisher(pstack, padmin)
    r = pub.post("/v1/events/batch", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"].startswith(field), r.text


def test_batch_over_1000_events_is_400_naming_events(pstack, padmin):
    pub = publisher(pstack, padmin)
    ev = make_event("b", "a")
    r = pub.post("/v1/events/batch", json={"events": [ev] * 1001})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"].startswith("events: must hold 1 to 1000"), r.text


def test_batch_of_1000_events_over_the_body_limit_and_under_the_batch_limit(pstack, padmin):
    pub = publisher(pstack, padmin)
    events = []
    for _ in range(1000):
        ev = make_event("pub-big", "acc")
        ev["data"]["description"] = "x" * 1400
        events.append(ev)
    body = json.dumps({"events": events})
    assert 1024 * 1024 < len(body) < BATCH_BODY_LIMIT
    r = pub.post("/v1/events/batch", data=body, headers={"Content-Type": "application/json"},
                 timeout=60)
    assert r.status_code == 202, r.text[:500]
    data = r.json()["data"]
    assert len(data) == 1000 and all("id" in d for d in data), data[:3]
    # the other publish route keeps api.body_limit
    one = make_event("pub-big", "acc")
    one["data"]["description"] = "x" * (len(body) - 1000)
    r = pub.post("/v1/events", json=one)
    assert r.status_code == 413 and "api.body_limit" in r.text, r.text
    # and the batch route has a limit too
    events.extend(events)
    r = pub.post("/v1/events/batch", json={"events": events[:1000] + events[:500]}, timeout=60)
    assert r.status_code == 413 and "api.batch_body_limit" in r.text, r.text


def test_batch_needs_the_publisher_role(pstack, padmin):
    client_id = padmin.create_client()["id"]
    user_id = padmin.create_user(client_id)["id"]
    tenant = Api(pstack.api_url, padmin.create_token(user_id)["token"])
    r = tenant.post("/v1/events/batch", json={"events": [make_event("b", "a")]})
    assert r.status_code == 403, r.text


# ------------------------------------------------------------ idempotency


def test_idempotency_key_replays_single_publish(pstack, padmin, preceiver):
    pub = publisher(pstack, padmin)
    bank, account = scoped_endpoint(padmin, preceiver, "/idem-one")
    ev = make_event(bank, account)  # no id: a second produce would get a new one
    key = {"Idempotency-Key": unique("key")}
    first = pub.post("/v1/events", json=ev, headers=key)
    assert first.status_code == 202, first.text
    again = pub.post("/v1/events", json=ev, headers=key)
    assert (again.status_code, again.json()) == (202, first.json())
    assert again.headers.get("Idempotent-Replayed") == "true"
    deliveries_settle(preceiver, "/idem-one", {first.json()["id"]})
    # the same key with another body is refused, naming the header
    other = dict(ev, occurred_at="2026-11-25T10:16:00Z")
    r = pub.post("/v1/events", json=other, headers=key)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["message"].startswith("Idempotency-Key:"), r.text
    # and so is the same key on the other publish route
    r = pub.post("/v1/events/batch", json={"events": [ev]}, headers=key)
    assert r.status_code == 422, r.text


def test_idempotency_key_replays_batch_and_refusals(pstack, padmin, preceiver):
    pub = publisher(pstack, padmin)
    bank, account = scoped_endpoint(padmin, preceiver, "/idem-batch")
    bad = make_event(bank, account)
    del bad["type"]
    body = {"events": [make_event(bank, account), bad, make_event(bank, account)]}
    key = {"Idempotency-Key": unique("key")}
    first = pub.post("/v1/events/batch", json=body, headers=key)
    assert first.status_code == 202, first.text
    ids = {d["id"] for d in first.json()["data"] if "id" in d}
    assert len(ids) == 2
    for _ in range(2):
        again = pub.post("/v1/events/batch", json=body, headers=key)
        assert (again.status_code, again.text) == (202, first.text)
    deliveries_settle(preceiver, "/idem-batch", ids)
    # a refusal is an answer too: replayed, not run again
    key2 = {"Idempotency-Key": unique("key")}
    r1 = pub.post("/v1/events", json=bad, headers=key2)
    r2 = pub.post("/v1/events", json=bad, headers=key2)
    assert r1.status_code == 400 and (r2.status_code, r2.text) == (400, r1.text)


def test_concurrent_duplicates_produce_once(pstack, padmin, preceiver):
    pub = publisher(pstack, padmin)
    bank, account = scoped_endpoint(padmin, preceiver, "/idem-race")
    ev = make_event(bank, account)
    key = {"Idempotency-Key": unique("key"), "Authorization": f"Bearer {pub.token}"}
    answers: list[requests.Response] = []
    lock = threading.Lock()
    go = threading.Event()

    def send():
        go.wait()
        r = requests.post(pub.base + "/v1/events", json=ev, headers=key, timeout=30)
        with lock:
            answers.append(r)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join()
    statuses = sorted(r.status_code for r in answers)
    assert set(statuses) <= {202, 409}, [r.text for r in answers]
    ids = {r.json()["id"] for r in answers if r.status_code == 202}
    assert len(ids) == 1, ids
    deliveries_settle(preceiver, "/idem-race", ids)


@pytest.mark.parametrize("value", ["", "k" * 256, "clé"])
def test_bad_idempotency_key_is_400_naming_the_header(pstack, padmin, value):
    pub = publisher(pstack, padmin)
    r = requests.post(pub.base + "/v1/events", data=b'{"type":"x"}', timeout=15,
                      headers={"Authorization": f"Bearer {pub.token}",
                               "Content-Type": "application/json",
                               "Idempotency-Key": value.encode()})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"].startswith("Idempotency-Key:"), r.text


def test_idempotency_keys_are_per_client(pstack, padmin):
    a, b = publisher(pstack, padmin), publisher(pstack, padmin)
    ev = make_event("b", "a")  # no id: every produce gets a new one
    key = {"Idempotency-Key": unique("shared-key")}
    ra = a.post("/v1/events", json=ev, headers=key)
    again = a.post("/v1/events", json=ev, headers=key)
    assert ra.status_code == 202 and again.json() == ra.json(), (ra.text, again.text)
    # B's request with the same key and body is its own: not A's answer
    rb = b.post("/v1/events", json=ev, headers=key)
    assert rb.status_code == 202, rb.text
    assert rb.json()["id"] != ra.json()["id"]
    assert "Idempotent-Replayed" not in rb.headers


# ------------------------------------------------------------ rate limits


def test_publisher_not_throttled_at_the_management_limit(pstack, padmin):
    pub = publisher(pstack, padmin)
    statuses = [pub.post("/v1/events", json=make_event("b", "a")).status_code
                for _ in range(50)]
    assert statuses == [202] * 50, statuses
    # the same token's management calls are still held to the small limit
    mgmt = [pub.get("/v1/endpoints") for _ in range(MGMT_BURST + 5)]
    refused = [r for r in mgmt if r.status_code == 429]
    assert refused, [r.status_code for r in mgmt]
    assert "API rate limit" in refused[0].json()["error"]["message"]
    assert refused[0].headers.get("Retry-After")


def test_publish_limit_applies_past_its_burst(pstack, padmin):
    pub = publisher(pstack, padmin)
    statuses = []
    for _ in range(PUBLISH_BURST + 20):
        r = pub.post("/v1/events", json=make_event("b", "a"))
        statuses.append(r.status_code)
        if r.status_code == 429:
            break
    assert statuses[-1] == 429, statuses
    assert len(statuses) > 50, statuses
    assert "api.publish_rate_limit_per_s" in r.json()["error"]["message"], r.text
    assert r.headers.get("Retry-After")
