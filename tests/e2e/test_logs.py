"""--log-format json (PRODUCT.md section 8): every line every process
writes is one JSON object with time, process, level and msg, and the lines
about a delivery carry its ids (delivery_id, endpoint_id, event_id) as
members, so one delivery can be followed from the api to the worker.

A private stack (module scope) configured the way docker-compose.yml runs
it: BANKHOOK_LOG_FORMAT=json, with log.attempts: all so that successful
attempts are logged too. On the default (log.attempts: failures) a success
is a debug line only, while failures and retries stay at info (issue 13)."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from harness import TEST_OVERRIDES, make_event, private_stack, wait_until

LOGS = ("migrate", "create-topics", "api", "worker", "scheduler")


@pytest.fixture(scope="module")
def jstack():
    yield from private_stack("bh-logs-", dict(TEST_OVERRIDES, BANKHOOK_LOG_FORMAT="json",
                                              BANKHOOK_LOG_ATTEMPTS="all"), "log-test")


def json_lines(path) -> list[dict]:
    out = []
    for n, line in enumerate(path.read_text(errors="strict").splitlines(), 1):
        try:
            o = json.loads(line)
        except ValueError:
            pytest.fail(f"{path.name}:{n}: not JSON: {line[:300]}")
        assert isinstance(o, dict), f"{path.name}:{n}: not an object: {line[:300]}"
        for key in ("time", "process", "level", "msg"):
            assert isinstance(o.get(key), str), f"{path.name}:{n}: no {key}: {line[:300]}"
        assert o["level"] in ("debug", "info", "warn", "error"), line
        out.append(o)
    return out


def test_json_logs_carry_the_ids_of_a_delivery(jstack, receiver):
    admin = jstack.api()
    bank = f"bank-{uuid.uuid4().hex[:12]}"
    ep = admin.create_endpoint(receiver.url("/logs"), filter={"bank_id": bank})
    ev_id = f"log-{uuid.uuid4().hex}"
    admin.expect("POST", "/v1/events", 202,
                 json=make_event(bank, str(uuid.uuid4()), event_id=ev_id))
    d = wait_until(lambda: [d for d in admin.deliveries(endpoint_id=ep["id"])
                            if d["status"] == "succeeded"], 60, "the delivery")[0]
    assert d["event_id"] == ev_id

    def lines(name):
        return json_lines(jstack.log_dir / f"{name}.log")

    # The api logged the endpoint's creation and the event's acceptance.
    api = lines("api")
    assert any(o.get("endpoint_id") == ep["id"] for o in api), "no api line names the endpoint"
    assert any(o.get("event_id") == ev_id for o in api), "no api line names the event"
    assert {o["process"] for o in api} == {"api"}
    # The worker logged the attempt with all three ids as members.
    worker = wait_until(lambda: [o for o in lines("worker") if o.get("delivery_id") == d["id"]],
                        30, "a worker line with the delivery id")
    assert any(o.get("endpoint_id") == ep["id"] and o.get("event_id") == ev_id
               for o in worker), worker
    # log.attempts: all brings the successful attempt's line back, at info.
    assert any(o["level"] == "info" and "-> succeeded" in o["msg"] for o in worker), worker
    # Every line of every process, and of the one-shot commands, is JSON.
    for name in LOGS:
        assert lines(name), f"{name}.log is empty"


def test_default_logs_failed_attempts_not_successful_ones(stack, admin, receiver):
    """log.attempts: failures (the default): a delivery that fails once and
    then succeeds leaves its retry at info and nothing for its success; a
    delivery that succeeds at once leaves no line at all."""
    bank = f"bank-{uuid.uuid4().hex[:12]}"
    receiver.plan("/flaky", [500])
    flaky = admin.create_endpoint(receiver.url("/flaky"), filter={"bank_id": bank})
    fine = admin.create_endpoint(receiver.url("/fine"), filter={"bank_id": bank})
    admin.expect("POST", "/v1/events", 202, json=make_event(bank, str(uuid.uuid4())))

    def succeeded(ep):
        return [d for d in admin.deliveries(endpoint_id=ep["id"]) if d["status"] == "succeeded"]

    ok = wait_until(lambda: succeeded(fine), 60, "the delivery to /fine")[0]
    retried = wait_until(lambda: succeeded(flaky), 60, "the retried delivery to /flaky")[0]
    assert retried["attempt_count"] == 2, retried

    def worker_lines(delivery_id):
        text = (stack.log_dir / "worker.log").read_text(errors="replace")
        return [line for line in text.splitlines() if delivery_id in line]

    # The failed attempt is logged at info, with its status and the retry.
    retry_lines = wait_until(lambda: [line for line in worker_lines(retried["id"])
                                      if "http 500" in line], 30, "the failed attempt's line")
    assert " info " in retry_lines[0] and "-> retrying" in retry_lines[0], retry_lines
    # Neither success was logged (debug is below the default level).
    time.sleep(1)
    assert not [line for line in worker_lines(retried["id"]) if "succeeded" in line], \
        worker_lines(retried["id"])
    assert worker_lines(ok["id"]) == [], worker_lines(ok["id"])
