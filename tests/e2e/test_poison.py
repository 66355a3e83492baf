"""No single message can stop a partition (issue 12, findings 1 and 6).

What POST /v1/events accepts the worker can store and every renderer can
render (one validator, common/event.c); what reaches Kafka some other way
and cannot be stored goes to bankhook.events.dlq with the reason, and the
events after it on the same partition (same key) are delivered. Each test
ends with a canary on the poison's partition that must arrive: on a
stalled partition it never does."""

from __future__ import annotations

import json

from conftest import TOPIC_DLQ, make_event, unique, wait_until

DELIVERY_TIMEOUT = 30


def post_event(admin, ev: dict):
    return admin.post("/v1/events", json=ev)


def error_message(r) -> str:
    return r.json()["error"]["message"]


def dlq_entry(stack, needle: str) -> dict | None:
    """The DLQ entry whose original payload contains needle."""
    for m in stack.consume(TOPIC_DLQ):
        try:
            entry = json.loads(m.get("payload") or "")
        except ValueError:
            continue
        if isinstance(entry, dict) and needle in str(entry.get("payload")):
            return entry
    return None


def canary_arrives(stack, admin, receiver, scope, path: str, via_kafka: bool) -> dict:
    ev = make_event(scope["bank_id"], scope["account_id"], event_id=unique("canary"))
    if via_kafka:
        stack.produce(json.dumps(ev, separators=(",", ":")), key=scope["account_id"])
    else:
        r = post_event(admin, ev)
        assert r.status_code == 202, r.text
    wait_until(lambda: ev["id"] in receiver.event_ids(path), DELIVERY_TIMEOUT,
               "the canary on the poison's partition")
    return ev


def test_api_refuses_times_postgresql_cannot_store_and_feb_30(stack, admin, receiver, scope):
    admin.create_endpoint(receiver.url("/poison-api-time"), filter={"bank_id": scope["bank_id"]})
    for when in ("0000-01-01T00:00:00Z",       # year 0: PostgreSQL refuses it
                 "0001-01-01T00:00:00+01:00",  # year 0 once in UTC
                 "9999-12-31T23:59:59-01:00",  # year 10000 once in UTC
                 "2026-02-30T10:00:00Z",       # was stored as 2026-03-02
                 "2026-11-25T24:00:00Z"):
        ev = make_event(scope["bank_id"], scope["account_id"], event_id=unique("poison"),
                        occurred_at=when)
        r = post_event(admin, ev)
        assert r.status_code == 400, (when, r.status_code, r.text)
        assert error_message(r).startswith("occurred_at:"), r.text
    # The edges of the documented range are accepted, stored and delivered.
    edges = [make_event(scope["bank_id"], scope["account_id"], event_id=unique("edge"),
                        occurred_at=when)
             for when in ("0001-01-01T01:00:00+01:00", "9999-12-31T23:59:59.999Z")]
    for ev in edges:
        r = post_event(admin, ev)
        assert r.status_code == 202, r.text
    wait_until(lambda: {e["id"] for e in edges} <= receiver.event_ids("/poison-api-time"),
               DELIVERY_TIMEOUT, "the events at the edges of the time range")
    stored = admin.get(f"/v1/events/{edges[0]['id']}")
    assert stored.status_code == 200, stored.text
    canary_arrives(stack, admin, receiver, scope, "/poison-api-time", via_kafka=False)


def test_api_refuses_amounts_a_renderer_cannot_format(stack, admin, receiver, scope):
    admin.create_endpoint(receiver.url("/poison-api-amount"),
                          filter={"bank_id": scope["bank_id"]})
    for amount in ("12345678901234567890123456789012345678",   # 38 integer digits
                   "1000000000000000.00",                      # 16
                   "1.00000000001"):                           # 11 fraction digits
        ev = make_event(scope["bank_id"], scope["account_id"], amount=amount)
        r = post_event(admin, ev)
        assert r.status_code == 400, (amount, r.status_code, r.text)
        assert error_message(r).startswith("data.amount:"), r.text
    largest = make_event(scope["bank_id"], scope["account_id"], event_id=unique("largest"),
                         amount="999999999999999.9999999999")
    r = post_event(admin, largest)
    assert r.status_code == 202, r.text
    wait_until(lambda: largest["id"] in receiver.event_ids("/poison-api-amount"),
               DELIVERY_TIMEOUT, "the largest amount")


def test_api_answers_413_for_an_event_kafka_would_refuse(stack, admin, receiver, scope):
    admin.create_endpoint(receiver.url("/poison-api-size"), filter={"bank_id": scope["bank_id"]})
    big = make_event(scope["bank_id"], scope["account_id"], event_id=unique("big"))
    big["data"]["description"] = "x" * 1_000_000
    r = post_event(admin, big)
    # It was 503 "try again": clients retried forever an event Kafka never takes.
    assert r.status_code == 413, (r.status_code, r.text[:300])
    assert error_message(r).startswith("body:"), r.text
    # Under the limit, a large event is accepted and delivered whole.
    large = make_event(scope["bank_id"], scope["account_id"], event_id=unique("large"))
    large["data"]["description"] = "y" * 850_000
    r = post_event(admin, large)
    assert r.status_code == 202, r.text[:300]
    wait_until(lambda: large["id"] in receiver.event_ids("/poison-api-size"),
               DELIVERY_TIMEOUT, "the 850 kB event")
    got = [x for x in receiver.got("/poison-api-size") if x.json()["id"] == large["id"]][0]
    assert got.json()["data"]["description"] == large["data"]["description"]


def test_kafka_times_postgresql_refuses_go_to_dlq_and_the_partition_moves_on(
        stack, admin, receiver, scope):
    admin.create_endpoint(receiver.url("/poison-kafka-time"),
                          filter={"bank_id": scope["bank_id"]})
    before = make_event(scope["bank_id"], scope["account_id"], event_id=unique("before"))
    year0 = make_event(scope["bank_id"], scope["account_id"], event_id=unique("year0"),
                       occurred_at="0000-01-01T00:00:00Z")
    offset = make_event(scope["bank_id"], scope["account_id"], event_id=unique("offset"),
                        occurred_at="0001-01-01T00:00:00+01:00")
    stack.produce([json.dumps(e, separators=(",", ":")) for e in (before, year0, offset)],
                  key=scope["account_id"])
    canary = canary_arrives(stack, admin, receiver, scope, "/poison-kafka-time", via_kafka=True)
    for poison in (year0, offset):
        entry = wait_until(lambda p=poison: dlq_entry(stack, p["id"]), DELIVERY_TIMEOUT,
                           f"{poison['id']} on {TOPIC_DLQ}")
        assert entry["reason"].startswith("occurred_at:"), entry
    assert receiver.event_ids("/poison-kafka-time") == {before["id"], canary["id"]}


def test_kafka_row_postgresql_refuses_goes_to_dlq_and_the_rest_of_its_batch_is_stored(
        stack, admin, receiver, scope):
    """A message every validator passes but PostgreSQL refuses (here a CHECK
    constraint stands for any data error the validator does not foresee):
    the worker stores the batch one by one, dead-letters the refused row
    with PostgreSQL's reason after its bounded tries, and moves on."""
    ep = admin.create_endpoint(receiver.url("/poison-kafka-refused"),
                               filter={"bank_id": scope["bank_id"]})
    stack.sql("ALTER TABLE events ADD CONSTRAINT e2e_poison"
              " CHECK (id NOT LIKE 'e2e-refused-%') NOT VALID")
    try:
        before = make_event(scope["bank_id"], scope["account_id"], event_id=unique("before"))
        refused = make_event(scope["bank_id"], scope["account_id"],
                             event_id=unique("e2e-refused"))
        after = make_event(scope["bank_id"], scope["account_id"], event_id=unique("after"))
        stack.produce([json.dumps(e, separators=(",", ":")) for e in (before, refused, after)],
                      key=scope["account_id"])
        canary = canary_arrives(stack, admin, receiver, scope, "/poison-kafka-refused",
                                via_kafka=True)
        entry = wait_until(lambda: dlq_entry(stack, refused["id"]), DELIVERY_TIMEOUT,
                           f"the refused event on {TOPIC_DLQ}")
    finally:
        stack.sql("ALTER TABLE events DROP CONSTRAINT IF EXISTS e2e_poison")
    assert "23514" in entry["reason"] and "e2e_poison" in entry["reason"], entry
    want = {before["id"], after["id"], canary["id"]}
    assert receiver.event_ids("/poison-kafka-refused") == want
    assert sorted(d["event_id"] for d in admin.deliveries(endpoint_id=ep["id"])) == sorted(want)
    assert stack.procs["worker"].poll() is None
