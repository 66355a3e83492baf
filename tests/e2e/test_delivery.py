"""Events in (Kafka and POST /v1/events), deliveries out: what the
receiver got and what the API reports (PRODUCT.md sections 3-5,
docs/DESIGN.md)."""

from __future__ import annotations

import json
import time
import uuid

from conftest import make_event, unique, wait_until
from webhooks import verify

DELIVERY_TIMEOUT = 30


def produce_event(stack, ev: dict) -> None:
    stack.produce(json.dumps(ev, separators=(",", ":")), key=ev["account_id"])


def test_kafka_event_reaches_each_matching_endpoint_once_and_no_other(stack, admin, receiver,
                                                                     scope):
    bank, acct = scope["bank_id"], scope["account_id"]
    other_acct = str(uuid.uuid4())
    matching = {
        "/by-bank": {"filter": {"bank_id": bank}},
        "/by-account": {"filter": {"bank_id": bank, "account_id": acct}},
        "/by-type": {"event_types": ["transaction.created"], "filter": {"bank_id": bank}},
    }
    not_matching = {
        "/other-type": {"event_types": ["balance.changed"], "filter": {"bank_id": bank}},
        "/other-account": {"filter": {"bank_id": bank, "account_id": other_acct}},
        "/other-bank": {"filter": {"bank_id": unique("bank"), "account_id": acct}},
        "/disabled": {"filter": {"bank_id": bank}, "enabled": False},
    }
    endpoints = {path: admin.create_endpoint(receiver.url(path), **body)
                 for path, body in {**matching, **not_matching}.items()}

    ev = make_event(bank, acct, event_id=unique("evt"))
    produce_event(stack, ev)

    wait_until(lambda: all(receiver.got(p) for p in matching), DELIVERY_TIMEOUT,
               "delivery to every matching endpoint")
    time.sleep(2)  # room for a duplicate or a stray delivery to show up
    for path in matching:
        got = receiver.got(path)
        assert len(got) == 1, f"{path} got {len(got)} requests"
        assert got[0].method == "POST"
        assert got[0].headers.get("content-type", "").startswith("application/json")
        body = got[0].json()
        assert body["id"] == ev["id"]
        assert body["type"] == "transaction.created"
        assert body["account_id"] == acct and body["bank_id"] == bank
        assert body["data"]["amount"] == "100.00"
    for path in not_matching:
        assert receiver.got(path) == [], f"{path} should not have been called"

    # The API agrees: one succeeded delivery per matching endpoint, none elsewhere.
    for path in matching:
        ep = endpoints[path]
        ds = wait_until(lambda: [d for d in admin.deliveries(endpoint_id=ep["id"])
                                 if d["status"] == "succeeded"],
                        DELIVERY_TIMEOUT, f"the API to report the delivery to {path}")
        assert len(admin.deliveries(endpoint_id=ep["id"])) == 1
        assert ds[0]["event_id"] == ev["id"]
        assert ds[0]["endpoint_id"] == ep["id"]
        assert ds[0]["attempt_count"] == 1
    for path in not_matching:
        assert admin.deliveries(endpoint_id=endpoints[path]["id"]) == [], path


def test_delivery_is_signed_with_standard_webhooks_headers(stack, admin, receiver, scope):
    ep = admin.create_endpoint(receiver.url("/signed"), filter={"bank_id": scope["bank_id"]},
                               headers={"X-Custom": "yes"})
    other = admin.create_endpoint(receiver.url("/other"), filter={"bank_id": scope["bank_id"]})
    ev = make_event(scope["bank_id"], scope["account_id"], event_id=unique("evt"))
    produce_event(stack, ev)
    req = wait_until(lambda: receiver.got("/signed"), DELIVERY_TIMEOUT, "the signed delivery")[0]
    wait_until(lambda: receiver.got("/other"), DELIVERY_TIMEOUT, "the second delivery")

    h = req.headers
    assert h.get("user-agent", "").startswith("bankhook/"), h
    assert h.get("x-custom") == "yes", "the endpoint's own headers are sent"
    assert h.get("webhook-id"), h
    assert h.get("webhook-timestamp", "").isdigit(), h
    assert abs(int(h["webhook-timestamp"]) - time.time()) < 60
    assert h.get("webhook-signature", "").startswith("v1,"), h
    assert verify(ep["secret"], h, req.body), "signature does not verify with the endpoint secret"
    assert not verify(other["secret"], h, req.body), "verifies with another endpoint's secret"
    assert not verify(ep["secret"], h, req.body + b" "), "verifies over a changed body"

    # webhook-id is the delivery id the API knows.
    ds = admin.deliveries(endpoint_id=ep["id"])
    assert [d["id"] for d in ds] == [h["webhook-id"]]
    # Different deliveries of one event have different ids.
    assert receiver.got("/other")[0].headers["webhook-id"] != h["webhook-id"]


def test_failing_receiver_is_retried_until_it_succeeds(stack, admin, receiver, scope):
    receiver.plan("/flaky", [500, 500, 200])
    ep = admin.create_endpoint(receiver.url("/flaky"), filter={"bank_id": scope["bank_id"]})
    ev = make_event(scope["bank_id"], scope["account_id"], event_id=unique("evt"))
    produce_event(stack, ev)

    # schedule 0,1,1: three attempts about a second apart
    wait_until(lambda: len(receiver.got("/flaky")) >= 3, DELIVERY_TIMEOUT, "three attempts")
    got = receiver.got("/flaky")
    assert len({r.headers["webhook-id"] for r in got}) == 1, "one delivery id across attempts"
    assert all(r.json()["id"] == ev["id"] for r in got)
    assert all(verify(ep["secret"], r.headers, r.body) for r in got), "each attempt re-signed"

    ds = wait_until(lambda: [d for d in admin.deliveries(endpoint_id=ep["id"])
                             if d["status"] == "succeeded"],
                    DELIVERY_TIMEOUT, "the delivery to be reported succeeded")
    assert len(ds) == 1
    d = admin.expect("GET", f"/v1/deliveries/{ds[0]['id']}", 200)
    assert d["status"] == "succeeded"
    assert d["attempt_count"] == 3
    attempts = sorted(d["attempts"], key=lambda a: a["attempt"])
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert [a["http_status"] for a in attempts] == [500, 500, 200]
    for a in attempts:
        assert a["started_at"] and a["duration_ms"] is not None
    assert '"status": 500' in (attempts[0]["response_body"] or ""), attempts[0]
    time.sleep(1.5)
    assert len(receiver.got("/flaky")) == 3, "no attempt after the success"


def test_receiver_failing_every_attempt_ends_failed(stack, admin, receiver, scope):
    receiver.plan("/down", [503] * 10)
    ep = admin.create_endpoint(receiver.url("/down"), filter={"bank_id": scope["bank_id"]})
    produce_event(stack, make_event(scope["bank_id"], scope["account_id"],
                                    event_id=unique("evt")))
    ds = wait_until(lambda: [d for d in admin.deliveries(endpoint_id=ep["id"])
                             if d["status"] == "failed"],
                    DELIVERY_TIMEOUT, "the delivery to be reported failed")
    assert ds[0]["attempt_count"] == 3
    assert len(receiver.got("/down")) == 3


def test_same_event_id_twice_is_delivered_once(stack, admin, receiver, scope):
    ep = admin.create_endpoint(receiver.url("/dedup"), filter={"bank_id": scope["bank_id"]})
    ev = make_event(scope["bank_id"], scope["account_id"], event_id=unique("evt"))
    produce_event(stack, ev)
    wait_until(lambda: receiver.got("/dedup"), DELIVERY_TIMEOUT, "the first delivery")
    # the same id again, through Kafka and through the API
    produce_event(stack, dict(ev, data=dict(ev["data"], amount="999.00")))
    r = admin.post("/v1/events", json=ev)
    assert r.status_code == 202, r.text
    marker = make_event(scope["bank_id"], scope["account_id"], event_id=unique("evt"))
    produce_event(stack, marker)  # same key, so after the duplicates on the partition
    wait_until(lambda: marker["id"] in receiver.event_ids("/dedup"), DELIVERY_TIMEOUT,
               "the event sent after the duplicates")
    time.sleep(1)
    ids = [r.json()["id"] for r in receiver.got("/dedup")]
    assert ids.count(ev["id"]) == 1, ids
    assert all(r.json()["data"]["amount"] == "100.00"
               for r in receiver.got("/dedup") if r.json()["id"] == ev["id"])
    ds = admin.deliveries(endpoint_id=ep["id"])
    assert sorted(d["event_id"] for d in ds) == sorted([ev["id"], marker["id"]])


def test_bad_messages_go_to_dlq_and_do_not_stop_the_worker(stack, admin, receiver, scope):
    ep = admin.create_endpoint(receiver.url("/after-dlq"), filter={"bank_id": scope["bank_id"]})
    marker = unique("garbage")
    not_json = f"this is not json {marker}"
    no_type = make_event(scope["bank_id"], scope["account_id"], event_id=unique("evt"))
    del no_type["type"]
    bad_amount = make_event(scope["bank_id"], scope["account_id"], event_id=unique("evt"),
                            amount="lots")
    good = make_event(scope["bank_id"], scope["account_id"], event_id=unique("evt"))
    key = scope["account_id"]  # one partition: the good one is read after the bad ones
    stack.produce([not_json, json.dumps(no_type), json.dumps(bad_amount), json.dumps(good)],
                  key=key)

    wait_until(lambda: good["id"] in receiver.event_ids("/after-dlq"), DELIVERY_TIMEOUT,
               "the valid event after the bad ones")

    def dlq_entries():
        found = {}
        for m in stack.consume("bankhook.events.dlq"):
            payload = m.get("payload") or ""
            try:
                entry = json.loads(payload)
            except ValueError:
                continue
            raw = entry.get("payload")
            raw = raw if isinstance(raw, str) else json.dumps(raw)
            for name, needle in (("not_json", marker), ("no_type", no_type["id"]),
                                 ("bad_amount", bad_amount["id"])):
                if needle in raw:
                    found[name] = entry
        return found if len(found) == 3 else None

    found = wait_until(dlq_entries, DELIVERY_TIMEOUT, "three entries on bankhook.events.dlq")
    assert "json" in found["not_json"]["reason"].lower(), found["not_json"]
    assert "type" in found["no_type"]["reason"], found["no_type"]
    assert "amount" in found["bad_amount"]["reason"], found["bad_amount"]
    # Only the valid one was delivered, and the worker is still up.
    assert receiver.event_ids("/after-dlq") == {good["id"]}
    assert stack.procs["worker"].poll() is None
    assert [d["event_id"] for d in admin.deliveries(endpoint_id=ep["id"])] == [good["id"]]


def test_post_event_returns_202_and_is_delivered(stack, admin, receiver, scope):
    ep = admin.create_endpoint(receiver.url("/api-event"), filter={"bank_id": scope["bank_id"]})
    ev = make_event(scope["bank_id"], scope["account_id"], type_="balance.changed")
    r = admin.post("/v1/events", json=ev)
    assert r.status_code == 202, r.text
    event_id = r.json()["id"]
    assert event_id
    req = wait_until(lambda: receiver.got("/api-event"), DELIVERY_TIMEOUT, "the delivery")[0]
    body = req.json()
    assert body["id"] == event_id
    assert body["type"] == "balance.changed"
    assert body["data"]["balance"] == "10.50"
    assert verify(ep["secret"], req.headers, req.body)
    ds = wait_until(lambda: [d for d in admin.deliveries(endpoint_id=ep["id"], event_id=event_id)
                             if d["status"] == "succeeded"],
                    DELIVERY_TIMEOUT, "the API to report the delivery")
    assert ds[0]["event_id"] == event_id
    # An invalid event is refused at the door, naming the field.
    bad = dict(ev, occurred_at="yesterday")
    r = admin.post("/v1/events", json=bad)
    assert r.status_code == 400, r.text
    assert "occurred_at" in r.json()["error"]["message"]


def test_worker_killed_mid_burst_loses_nothing(stack, admin, receiver, scope):
    n = 1000
    ep = admin.create_endpoint(receiver.url("/burst"), filter={"bank_id": scope["bank_id"]})
    run = uuid.uuid4().hex[:8]
    ids = [f"burst-{run}-{i}" for i in range(n)]
    accounts = [str(uuid.uuid4()) for _ in range(8)]  # spread over the partitions
    events = [make_event(scope["bank_id"], accounts[i % len(accounts)], event_id=ids[i])
              for i in range(n)]
    stack.produce([json.dumps(e, separators=(",", ":")) for e in events],
                  keys=[e["account_id"] for e in events])

    wait_until(lambda: len(receiver.event_ids("/burst")) >= 20, 60,
               "the first deliveries of the burst")
    stack.stop("worker", kill9=True)  # no drain, no offset commit
    at_kill = len(receiver.event_ids("/burst"))
    print(f"worker killed after {at_kill} of {n} events arrived")
    stack.start("worker")
    stack.wait_ready("worker")

    def all_arrived():
        got = receiver.event_ids("/burst")
        return len(got.intersection(ids)) == n

    wait_until(all_arrived, 120, f"all {n} events at the receiver", interval=1)
    assert at_kill < n, "the worker was killed after the burst was over: nothing was tested"
    assert receiver.event_ids("/burst") == set(ids)
    # The API reports exactly one delivery per event, all succeeded.
    ds = wait_until(lambda: (lambda ds: ds if len(ds) == n and
                             all(d["status"] == "succeeded" for d in ds) else None)(
                        admin.deliveries(endpoint_id=ep["id"])),
                    60, "the API to report every delivery succeeded", interval=1)
    assert sorted(d["event_id"] for d in ds) == sorted(ids)
