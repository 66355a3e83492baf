"""Operator controls of the native API (PRODUCT.md section 4, issue 3):
rotate-secret with both secrets signing, manual retry, replay of a time
window, GET /v1/events/{id}, client isolation of all of them, list
filters with cursor pagination, and the ordered / rate_limit_per_s
fields of an endpoint."""

from __future__ import annotations

import socket
import time
from datetime import datetime, timedelta, timezone

import pytest

from conftest import Api, make_event, unique, wait_until
from webhooks import sign, verify

DELIVERY_TIMEOUT = 30


def error_of(r) -> dict:
    body = r.json()
    assert set(body) == {"error"}, body
    return body["error"]


def rfc3339(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_time(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def client_api(stack, admin) -> tuple[str, Api]:
    client = admin.create_client(unique("tenant"))
    user = admin.create_user(client["id"])
    tok = admin.create_token(user["id"])
    return client["id"], Api(stack.api_url, tok["token"])


def post_event(admin: Api, scope: dict) -> str:
    r = admin.post("/v1/events", json=make_event(scope["bank_id"], scope["account_id"]))
    assert r.status_code == 202, r.text
    return r.json()["id"]


def wait_delivery(api: Api, status: str, **query) -> dict:
    ds = wait_until(lambda: [d for d in api.deliveries(**query) if d["status"] == status],
                    DELIVERY_TIMEOUT, f"a {status} delivery for {query}")
    assert len(ds) == 1, ds
    return ds[0]


def idle_endpoint(api: Api, url: str = "https://example.com/hook", **body) -> dict:
    """An endpoint no event matches, so it sends nothing on the shared stack."""
    body.setdefault("filter", {"bank_id": unique("idle")})
    return api.create_endpoint(url, **body)


def ids_seen(receiver, path: str) -> list[str]:
    return [r.headers["webhook-id"] for r in receiver.got(path)]


# ------------------------------------------------------------ rotate-secret


def test_rotated_secret_and_previous_one_both_sign(stack, admin, receiver, scope):
    ep = admin.create_endpoint(receiver.url("/rotate"), filter={"bank_id": scope["bank_id"]})
    old = ep["secret"]
    before = datetime.now(timezone.utc)
    rot = admin.expect("POST", f"/v1/endpoints/{ep['id']}/rotate-secret", 200)
    assert set(rot) == {"secret", "previous_secret_expires_at"}, rot
    new = rot["secret"]
    assert new.startswith("whsec_") and new != old
    expires = parse_time(rot["previous_secret_expires_at"])
    assert abs((expires - before) - timedelta(hours=24)) < timedelta(minutes=1), expires
    assert admin.expect("GET", f"/v1/endpoints/{ep['id']}", 200)["secret"] == new

    post_event(admin, scope)
    req = wait_until(lambda: receiver.got("/rotate"), DELIVERY_TIMEOUT, "the delivery")[0]
    h = req.headers
    sigs = h["webhook-signature"].split(" ")
    assert len(sigs) == 2, h["webhook-signature"]
    ts = h["webhook-timestamp"]
    assert sign(new, h["webhook-id"], ts, req.body) in sigs, "no signature with the new secret"
    assert sign(old, h["webhook-id"], ts, req.body) in sigs, "no signature with the old secret"
    assert verify(new, h, req.body) and verify(old, h, req.body)


def test_rotate_secret_validation(admin):
    r = admin.post("/v1/endpoints/no-such-endpoint/rotate-secret")
    assert r.status_code == 404, r.text
    ep = idle_endpoint(admin)
    r = admin.post(f"/v1/endpoints/{ep['id']}/rotate-secret", json={"grace": 1})
    assert r.status_code == 400 and "grace" in error_of(r)["message"], r.text


# ------------------------------------------------------------ manual retry


def test_manual_retry_of_a_failed_delivery_succeeds(stack, admin, receiver, scope):
    receiver.plan("/retry", [500, 500, 500])
    ep = admin.create_endpoint(receiver.url("/retry"), filter={"bank_id": scope["bank_id"]})
    post_event(admin, scope)
    d = wait_delivery(admin, "failed", endpoint_id=ep["id"])  # schedule 0,1,1
    assert d["attempt_count"] == 3
    # The plan is used up: the receiver answers 200 from now on.
    r = admin.expect("POST", f"/v1/deliveries/{d['id']}/retry", 202)
    assert r == {"id": d["id"], "status": "pending"}
    d2 = wait_delivery(admin, "succeeded", endpoint_id=ep["id"])
    assert d2["id"] == d["id"]
    assert d2["attempt_count"] == 4
    full = admin.expect("GET", f"/v1/deliveries/{d['id']}", 200)
    assert [a["http_status"] for a in sorted(full["attempts"], key=lambda a: a["attempt"])] \
        == [500, 500, 500, 200]
    assert ids_seen(receiver, "/retry") == [d["id"]] * 4, "same webhook-id on the retry"

    # A succeeded delivery may be sent again too.
    admin.expect("POST", f"/v1/deliveries/{d['id']}/retry", 202)
    wait_until(lambda: len(receiver.got("/retry")) == 5, DELIVERY_TIMEOUT, "the second retry")
    assert admin.post("/v1/deliveries/no-such-delivery/retry").status_code == 404


def test_retry_of_a_pending_delivery_is_409(stack, admin, scope):
    # A listener that never accepts: the attempt waits out its 5 s timeout,
    # so the delivery stays pending for well over ten seconds.
    sink = socket.socket()
    sink.bind(("127.0.0.1", 0))
    sink.listen(16)
    try:
        url = f"http://127.0.0.1:{sink.getsockname()[1]}/hang"
        ep = admin.create_endpoint(url, filter={"bank_id": scope["bank_id"]})
        post_event(admin, scope)
        d = wait_delivery(admin, "pending", endpoint_id=ep["id"])
        r = admin.post(f"/v1/deliveries/{d['id']}/retry")
        assert r.status_code == 409, r.text
        assert error_of(r)["code"] == "conflict"
        admin.expect("DELETE", f"/v1/endpoints/{ep['id']}", 204)
    finally:
        sink.close()


# ------------------------------------------------------------ replay


def test_replay_resends_exactly_the_window(stack, admin, receiver, scope):
    ep = admin.create_endpoint(receiver.url("/replay"), filter={"bank_id": scope["bank_id"]})
    e1 = post_event(admin, scope)
    d1 = wait_delivery(admin, "succeeded", endpoint_id=ep["id"], event_id=e1)
    time.sleep(1.5)
    e2 = post_event(admin, scope)
    d2 = wait_delivery(admin, "succeeded", endpoint_id=ep["id"], event_id=e2)
    t1, t2 = parse_time(d1["created_at"]), parse_time(d2["created_at"])
    assert t2 - t1 > timedelta(seconds=1)
    eps = timedelta(milliseconds=500)

    r = admin.expect("POST", f"/v1/endpoints/{ep['id']}/replay", 202,
                     json={"since": rfc3339(t1 - eps), "until": rfc3339(t2 - eps)})
    assert r == {"replayed": 1}
    wait_until(lambda: ids_seen(receiver, "/replay").count(d1["id"]) == 2, DELIVERY_TIMEOUT,
               "the first delivery to be sent again")
    wait_delivery(admin, "succeeded", endpoint_id=ep["id"], event_id=e1)
    time.sleep(2)
    seen = ids_seen(receiver, "/replay")
    assert seen.count(d1["id"]) == 2 and seen.count(d2["id"]) == 1, seen
    assert sorted(r.json()["id"] for r in receiver.got("/replay")) == sorted([e1, e1, e2])

    # until defaults to now: both again.
    r = admin.expect("POST", f"/v1/endpoints/{ep['id']}/replay", 202,
                     json={"since": rfc3339(t1 - eps)})
    assert r == {"replayed": 2}
    wait_until(lambda: len(receiver.got("/replay")) == 5, DELIVERY_TIMEOUT, "both replayed")


def test_replay_only_failed(stack, admin, receiver, scope):
    receiver.plan("/mixed", [500, 500, 500])
    ep = admin.create_endpoint(receiver.url("/mixed"), filter={"bank_id": scope["bank_id"]})
    e1 = post_event(admin, scope)
    failed = wait_delivery(admin, "failed", endpoint_id=ep["id"], event_id=e1)
    e2 = post_event(admin, scope)
    ok = wait_delivery(admin, "succeeded", endpoint_id=ep["id"], event_id=e2)

    r = admin.expect("POST", f"/v1/endpoints/{ep['id']}/replay", 202,
                     json={"since": "2000-01-01T00:00:00Z", "only_failed": True})
    assert r == {"replayed": 1}
    d = wait_delivery(admin, "succeeded", endpoint_id=ep["id"], event_id=e1)
    assert d["attempt_count"] == 4
    time.sleep(1.5)
    seen = ids_seen(receiver, "/mixed")
    assert seen.count(failed["id"]) == 4 and seen.count(ok["id"]) == 1, seen


@pytest.mark.parametrize("body,field", [
    ({}, "since"),
    ({"since": "yesterday"}, "since"),
    ({"since": 5}, "since"),
    ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
    ({"since": "2026-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
    ({"since": "2999-01-01T00:00:00Z"}, "until"),
    ({"since": "2026-01-01T00:00:00Z", "until": "soon"}, "until"),
    ({"since": "2026-01-01T00:00:00Z", "only_failed": "yes"}, "only_failed"),
    ({"since": "2026-01-01T00:00:00Z", "endpoint": "x"}, "endpoint"),
])
def test_replay_validation(admin, body, field):
    ep = idle_endpoint(admin)
    r = admin.post(f"/v1/endpoints/{ep['id']}/replay", json=body)
    assert r.status_code == 400, r.text
    assert field in error_of(r)["message"], r.text


def test_replay_of_unknown_endpoint_is_404(admin):
    r = admin.post("/v1/endpoints/no-such-endpoint/replay",
                   json={"since": "2026-01-01T00:00:00Z"})
    assert r.status_code == 404, r.text


# ------------------------------------------------------------ events and isolation


def test_event_with_deliveries_and_client_isolation(stack, admin, receiver, scope):
    alice_id, alice = client_api(stack, admin)
    _, bob = client_api(stack, admin)
    admin.grant(alice_id, bank_id=scope["bank_id"])  # alice's data (issue 12)
    ep_a = alice.create_endpoint(receiver.url("/alice"), filter={"bank_id": scope["bank_id"]})
    ep_sys = admin.create_endpoint(receiver.url("/system"), filter={"bank_id": scope["bank_id"]})
    ev = post_event(admin, scope)
    da = wait_delivery(alice, "succeeded", endpoint_id=ep_a["id"])
    wait_delivery(admin, "succeeded", endpoint_id=ep_sys["id"])

    full = admin.expect("GET", f"/v1/events/{ev}", 200)
    assert full["id"] == ev and full["type"] == "transaction.created"
    # Other tests' endpoints without a filter match every event: a subset, then.
    assert {ep_a["id"], ep_sys["id"]} <= {d["endpoint_id"] for d in full["deliveries"]}
    mine = alice.expect("GET", f"/v1/events/{ev}", 200)
    assert [d["id"] for d in mine["deliveries"]] == [da["id"]], "only alice's deliveries"
    assert mine["deliveries"][0]["status"] == "succeeded"

    # Bob sees none of it: 404, never 403.
    for method, path, kw in [
        ("GET", f"/v1/events/{ev}", {}),
        ("GET", f"/v1/deliveries/{da['id']}", {}),
        ("POST", f"/v1/deliveries/{da['id']}/retry", {}),
        ("POST", f"/v1/endpoints/{ep_a['id']}/rotate-secret", {}),
        ("POST", f"/v1/endpoints/{ep_a['id']}/replay", {"json": {"since": "2000-01-01T00:00:00Z"}}),
    ]:
        r = bob.request(method, path, **kw)
        assert r.status_code == 404, f"{method} {path}: {r.status_code} {r.text}"
    assert bob.deliveries(event_id=ev) == []
    assert admin.get("/v1/events/no-such-event").status_code == 404
    # ...and nothing changed for alice: same secret, one request.
    assert alice.expect("GET", f"/v1/endpoints/{ep_a['id']}", 200)["secret"] == ep_a["secret"]
    time.sleep(1)
    assert len(receiver.got("/alice")) == 1

    # Alice may retry her own; an admin rotating her secret does not learn it.
    alice.expect("POST", f"/v1/deliveries/{da['id']}/retry", 202)
    wait_until(lambda: len(receiver.got("/alice")) == 2, DELIVERY_TIMEOUT, "alice's retry")
    rot = admin.expect("POST", f"/v1/endpoints/{ep_a['id']}/rotate-secret", 200)
    assert "secret" not in rot and rot["previous_secret_expires_at"]
    assert alice.expect("GET", f"/v1/endpoints/{ep_a['id']}", 200)["secret"] != ep_a["secret"]


# ------------------------------------------------------------ lists


def test_delivery_filters_and_cursor_pagination(stack, admin, receiver, scope):
    ep = admin.create_endpoint(receiver.url("/list"), filter={"bank_id": scope["bank_id"]})
    events = [post_event(admin, scope) for _ in range(5)]
    wait_until(lambda: len([d for d in admin.deliveries(endpoint_id=ep["id"])
                            if d["status"] == "succeeded"]) == 5,
               DELIVERY_TIMEOUT, "five succeeded deliveries")

    seen, cursor, pages = [], None, 0
    while True:
        q = {"endpoint_id": ep["id"], "status": "succeeded", "limit": 2}
        if cursor:
            q["cursor"] = cursor
        page = admin.expect("GET", "/v1/deliveries", 200, params=q)
        pages += 1
        assert len(page["data"]) <= 2
        seen += [d["id"] for d in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 10
    assert pages == 3 and len(seen) == 5 and len(set(seen)) == 5, seen
    assert admin.deliveries(endpoint_id=ep["id"], status="failed") == []
    assert admin.deliveries(endpoint_id=ep["id"], status="pending") == []
    one = admin.deliveries(endpoint_id=ep["id"], event_id=events[2])
    assert len(one) == 1 and one[0]["event_id"] == events[2]

    r = admin.get("/v1/deliveries", params={"status": "lost"})
    assert r.status_code == 400 and "status" in error_of(r)["message"]
    r = admin.get("/v1/deliveries", params={"cursor": "not-a-cursor"})
    assert r.status_code == 400 and "cursor" in error_of(r)["message"]


def test_endpoint_list_cursor_pagination(stack, admin):
    client_id, tenant = client_api(stack, admin)
    idle = unique("idle")
    admin.grant(client_id, bank_id=idle)  # a filter needs a grant (issue 12)
    made = {idle_endpoint(tenant, f"https://example.com/{i}", filter={"bank_id": idle})["id"]
            for i in range(5)}
    seen, cursor = [], None
    for _ in range(10):
        q = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = tenant.expect("GET", "/v1/endpoints", 200, params=q)
        seen += [e["id"] for e in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 5 and set(seen) == made
    # An admin lists one client's with ?client_id=.
    listed = admin.expect("GET", "/v1/endpoints", 200,
                          params={"client_id": client_id, "limit": 100})["data"]
    assert {e["id"] for e in listed} == made
    r = tenant.get("/v1/endpoints", params={"cursor": "abc"})
    assert r.status_code == 400 and "cursor" in error_of(r)["message"]


# ------------------------------------------------------------ endpoint fields


def test_ordered_and_rate_limit_round_trip(admin):
    ep = idle_endpoint(admin, "https://example.com/plain")
    assert ep["ordered"] is False and ep["rate_limit_per_s"] is None
    ep = idle_endpoint(admin, "https://example.com/ordered", ordered=True, rate_limit_per_s=5)
    assert ep["ordered"] is True and ep["rate_limit_per_s"] == 5
    got = admin.expect("GET", f"/v1/endpoints/{ep['id']}", 200)
    assert got["ordered"] is True and got["rate_limit_per_s"] == 5
    p = admin.expect("PATCH", f"/v1/endpoints/{ep['id']}", 200, json={"rate_limit_per_s": 10000})
    assert p["rate_limit_per_s"] == 10000 and p["ordered"] is True
    p = admin.expect("PATCH", f"/v1/endpoints/{ep['id']}", 200,
                     json={"ordered": False, "rate_limit_per_s": None})
    assert p["ordered"] is False and p["rate_limit_per_s"] is None
    p = admin.expect("PATCH", f"/v1/endpoints/{ep['id']}", 200, json={"description": "x"})
    assert p["ordered"] is False and p["rate_limit_per_s"] is None


@pytest.mark.parametrize("field,value", [
    ("ordered", "yes"), ("ordered", 1), ("ordered", None),
    ("rate_limit_per_s", 0), ("rate_limit_per_s", 10001), ("rate_limit_per_s", -1),
    ("rate_limit_per_s", "5"), ("rate_limit_per_s", 1.5), ("rate_limit_per_s", True),
])
def test_bad_ordered_or_rate_limit_is_400_naming_the_field(admin, field, value):
    r = admin.post("/v1/endpoints", json={"url": "https://example.com/x", field: value,
                                          "filter": {"bank_id": unique("idle")}})
    assert r.status_code == 400, r.text
    assert field in error_of(r)["message"]
    ep = idle_endpoint(admin, "https://example.com/y")
    r = admin.request("PATCH", f"/v1/endpoints/{ep['id']}", json={field: value})
    assert r.status_code == 400, r.text
    assert field in error_of(r)["message"]


def test_reenabling_a_disabled_endpoint_clears_the_reason(stack, admin, receiver, scope):
    receiver.plan("/gone", [410])
    ep = admin.create_endpoint(receiver.url("/gone"), filter={"bank_id": scope["bank_id"]})
    post_event(admin, scope)
    got = wait_until(lambda: (lambda e: e if not e["enabled"] else None)(
        admin.expect("GET", f"/v1/endpoints/{ep['id']}", 200)), DELIVERY_TIMEOUT,
        "410 to disable the endpoint")
    assert got["disabled_reason"], got
    p = admin.expect("PATCH", f"/v1/endpoints/{ep['id']}", 200, json={"enabled": True})
    assert p["enabled"] is True and p["disabled_reason"] is None
    post_event(admin, scope)
    wait_until(lambda: len(receiver.got("/gone")) == 2, DELIVERY_TIMEOUT,
               "a delivery to the re-enabled endpoint")
