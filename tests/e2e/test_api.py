"""The native API's edges (PRODUCT.md section 4, 7): authentication,
validation errors that name the field, body limits, content types, and
one client never seeing another's endpoints."""

from __future__ import annotations

import pytest
import requests

from conftest import Api, make_event, unique, wait_until


def error_of(r: requests.Response) -> dict:
    body = r.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] and body["error"]["message"], body
    return body["error"]


@pytest.mark.parametrize("token", [None, "bh_not_a_real_token", ""])
def test_endpoints_need_a_valid_token(stack, token):
    r = Api(stack.api_url, token).get("/v1/endpoints")
    assert r.status_code == 401, r.text
    error_of(r)


def test_health_endpoints_answer_without_token(stack):
    for name in ("api", "worker", "scheduler"):
        base = f"http://127.0.0.1:{stack.http_port(name)}"
        assert requests.get(base + "/healthz", timeout=5).status_code == 200, name
        assert requests.get(base + "/readyz", timeout=5).status_code == 200, name
        m = requests.get(base + "/metrics", timeout=5)
        assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain"), name


@pytest.mark.parametrize("url", [
    "ftp://example.com/hook",
    "not a url",
    "https://user:pw@example.com/hook",
    "http://169.254.169.254/latest/meta-data",
    "",
])
def test_bad_endpoint_url_is_400_naming_url(admin, url):
    r = admin.post("/v1/endpoints", json={"url": url})
    assert r.status_code == 400, r.text
    assert "url" in error_of(r)["message"]


def test_endpoint_url_of_wrong_type_is_400_naming_url(admin):
    r = admin.post("/v1/endpoints", json={"url": 42})
    assert r.status_code == 400, r.text
    assert "url" in error_of(r)["message"]


# One reserved-header list (common/header.c) for the API and the worker: a
# header the worker sets itself (Expect, Content-Type, webhook-*) or one that
# would break the request's framing or connection is refused at registration
# and on PATCH, with a 400 naming it, instead of being accepted and then
# silently dropped or sent twice.
@pytest.mark.parametrize("name", ["Expect", "expect", "Upgrade", "TE", "Keep-Alive",
                                  "Proxy-Connection", "Trailer", "Content-Type",
                                  "webhook-signature", "Webhook-Future"])
def test_reserved_custom_header_is_400_naming_it(admin, name):
    bank = unique("bank")
    r = admin.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/hook",
                                          "filter": {"bank_id": bank},
                                          "headers": {"X-Team": "payments", name: "x"}})
    assert r.status_code == 400, r.text
    err = error_of(r)
    assert err["code"] == "invalid_field" and f"headers.{name}" in err["message"], err
    ep = admin.create_endpoint("http://127.0.0.1:9/hook", filter={"bank_id": bank},
                               headers={"X-Team": "payments"})
    r = admin.request("PATCH", f"/v1/endpoints/{ep['id']}", json={"headers": {name: "x"}})
    assert r.status_code == 400, r.text
    assert f"headers.{name}" in error_of(r)["message"]
    got = admin.expect("GET", f"/v1/endpoints/{ep['id']}", 200)
    assert got["headers"] == {"X-Team": "payments"}, got


def test_body_over_limit_is_413(admin):
    big = '{"url":"https://example.com/","description":"' + "x" * (2 * 1024 * 1024) + '"}'
    r = admin.post("/v1/endpoints", data=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413, r.text[:300]
    error_of(r)


def test_non_json_content_type_is_415(admin):
    r = admin.post("/v1/endpoints", data="url=https://example.com/",
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415, r.text
    error_of(r)


def test_malformed_json_is_400(admin):
    r = admin.post("/v1/endpoints", data='{"url": ', headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    error_of(r)


def test_unknown_endpoint_is_404(admin):
    r = admin.get("/v1/endpoints/00000000-0000-4000-8000-000000000000")
    assert r.status_code == 404, r.text
    error_of(r)


@pytest.mark.parametrize("path", ["/v1/caf%C3", "/banksocket/v1/%FF%FE", "/obp/v5.1.0/%C0%AF"])
def test_path_that_is_not_utf8_is_404_not_500(stack, path):
    # Found by fuzz_request: the 404 message names the path, and its raw bytes made
    # the JSON reply impossible to build (500) before messages were scrubbed to UTF-8.
    r = requests.get(stack.api_url + path, timeout=10)
    assert r.status_code == 404, r.text
    assert r.json()


def _client_api(stack, admin) -> tuple[str, Api]:
    client = admin.create_client(unique("tenant"))
    assert client.get("id") and client.get("api_secret"), client
    user = admin.create_user(client["id"])
    tok = admin.create_token(user["id"])
    assert tok["token"] and tok["id"], tok
    return client["id"], Api(stack.api_url, tok["token"])


def test_created_endpoint_is_returned_with_secret(admin):
    ep = admin.create_endpoint("https://example.com/hook", description="mine",
                               event_types=["balance.changed"], filter={"bank_id": "b1"})
    got = admin.expect("GET", f"/v1/endpoints/{ep['id']}", 200)
    assert got["id"] == ep["id"]
    assert got["url"] == "https://example.com/hook"
    assert got["event_types"] == ["balance.changed"]


def test_client_cannot_read_or_list_another_clients_endpoint(stack, admin):
    _, alice = _client_api(stack, admin)
    _, bob = _client_api(stack, admin)
    ep = alice.create_endpoint("https://alice.example.com/hook")

    assert alice.get(f"/v1/endpoints/{ep['id']}").status_code == 200
    r = bob.get(f"/v1/endpoints/{ep['id']}")
    assert r.status_code == 404, r.text  # 404, not 403: ids cannot be probed
    for method in ("PATCH", "DELETE"):
        kw = {"json": {"description": "mine now"}} if method == "PATCH" else {}
        r = bob.request(method, f"/v1/endpoints/{ep['id']}", **kw)
        assert r.status_code == 404, f"{method}: {r.status_code} {r.text}"

    bob_ids = {e["id"] for e in bob.expect("GET", "/v1/endpoints", 200)["data"]}
    assert ep["id"] not in bob_ids
    alice_ids = {e["id"] for e in alice.expect("GET", "/v1/endpoints", 200)["data"]}
    assert ep["id"] in alice_ids
    # ...and the endpoint is still there, unchanged, for its owner.
    got = alice.expect("GET", f"/v1/endpoints/{ep['id']}", 200)
    assert got.get("description") in (None, "")


def test_non_admin_cannot_create_clients(stack, admin):
    _, alice = _client_api(stack, admin)
    r = alice.post("/v1/clients", json={"name": unique("x")})
    assert r.status_code == 403, r.text
    error_of(r)


def test_list_limit_out_of_range_is_400(admin):
    r = admin.get("/v1/endpoints", params={"limit": 0})
    assert r.status_code == 400, r.text
    assert "limit" in error_of(r)["message"]


# A path parameter that is not UTF-8 used to reach PostgreSQL, which refuses
# it: the api answered 503 and logged a database error. Such an id names
# nothing, so it is a 404 in the route's envelope, with no query.
@pytest.mark.parametrize("method,path,envelope", [
    ("GET", "/v1/endpoints/%FF", "native"),
    ("PATCH", "/v1/endpoints/ep%C3", "native"),
    ("DELETE", "/v1/tokens/%FF", "native"),
    ("GET", "/v1/deliveries/%C0%80", "native"),
    ("GET", "/obp/v3.1.0/management/banks/%FF/account-web-hooks", "obp"),
    ("DELETE", "/banksocket/v1/webhooks/%ED%A0%80", "banksocket"),
    ("POST", "/acquirer/%FF/webhooks", "acquirer"),
])
def test_path_parameter_not_utf8_is_404_without_a_query(stack, admin, method, path, envelope):
    log = stack.log_dir / "api.log"
    db_errors = log.read_text(errors="replace").count("database:")
    kw = {"json": {"enabled": False}} if method in ("PATCH", "POST") else {}
    r = admin.request(method, path, **kw)
    assert r.status_code == 404, r.text
    body = r.json()
    if envelope == "native":
        assert error_of(r)["code"] == "not_found"
    elif envelope == "obp":
        assert body["code"] == 404 and body["message"].startswith("OBP-10404: "), body
    elif envelope == "banksocket":
        assert body["status"] == "error" and body["message"], body
    else:
        assert body["transactionStatus"] == "RJCT", body
    assert log.read_text(errors="replace").count("database:") == db_errors


def test_path_cut_by_percent_00_never_reaches_the_database(stack, admin):
    """libmicrohttpd ends the decoded path at %00, so the parameter is cut
    there (or the path no longer matches): never a database error."""
    log = stack.log_dir / "api.log"
    db_errors = log.read_text(errors="replace").count("database:")
    r = admin.get("/v1/endpoints/%00")
    assert r.status_code == 404, r.text
    error_of(r)
    r = admin.request("DELETE", "/banksocket/v1/webhooks/x%00%FF")
    assert r.status_code == 404, r.text
    assert r.json()["status"] == "error"
    assert log.read_text(errors="replace").count("database:") == db_errors


# The same for query arguments: filters reached PostgreSQL too (503).
@pytest.mark.parametrize("path,name", [
    ("/v1/endpoints?client_id=%FF", "client_id"),
    ("/v1/deliveries?event_id=%FF", "event_id"),
    ("/v1/deliveries?endpoint_id=ep%C3&limit=5", "endpoint_id"),
    ("/banksocket/v1/webhooks?x%FF=1", "x"),
])
def test_query_argument_not_utf8_is_400_naming_it(stack, admin, path, name):
    log = stack.log_dir / "api.log"
    db_errors = log.read_text(errors="replace").count("database:")
    r = admin.get(path)
    assert r.status_code == 400, r.text
    if path.startswith("/banksocket/"):
        assert r.json()["status"] == "error"
        assert r.json()["message"].startswith(name), r.text
    else:
        err = error_of(r)
        assert err["code"] == "invalid_parameter"
        assert err["message"].startswith(name + ": "), err
    assert log.read_text(errors="replace").count("database:") == db_errors


# ------------------------------------------------------------------ data grants (issue 12)


def test_grant_routes_validate_and_are_admin_only(stack, admin):
    client_id, tenant = _client_api(stack, admin)
    base = f"/v1/clients/{client_id}/grants"
    for body, field in (({}, "bank_id"), ({"account_id": "a"}, "bank_id"),
                        ({"bank_id": "b", "acquirer_id": "1"}, "acquirer_id"),
                        ({"acquirer_id": "1", "account_id": "a"}, "account_id"),
                        ({"bank_id": "b", "merchant_id": "m"}, "merchant_id"),
                        ({"bank_id": ""}, "bank_id"), ({"bank_id": 5}, "bank_id"),
                        ({"bank_id": "b", "other": 1}, "other")):
        r = admin.post(base, json=body)
        assert r.status_code == 400, (body, r.text)
        assert error_of(r)["message"].startswith(field), (body, r.text)
    assert admin.post("/v1/clients/no-such-client/grants",
                      json={"bank_id": "b"}).status_code == 404
    bank = admin.grant(client_id, bank_id="gb", account_id="ga")
    acq = admin.grant(client_id, acquirer_id="123", merchant_id=None)
    assert (bank["bank_id"], bank["account_id"], bank["acquirer_id"]) == ("gb", "ga", None)
    assert (acq["acquirer_id"], acq["merchant_id"], acq["client_id"]) == ("123", None, client_id)
    assert admin.post(base, json={"bank_id": "gb", "account_id": "ga"}).status_code == 409
    page = admin.expect("GET", base, 200, params={"limit": 1})
    assert [g["id"] for g in page["data"]] == [acq["id"]] and page["next_cursor"]
    page = admin.expect("GET", base, 200, params={"limit": 1, "cursor": page["next_cursor"]})
    assert [g["id"] for g in page["data"]] == [bank["id"]] and page["next_cursor"] is None
    assert admin.expect("GET", f"{base}/{bank['id']}", 200) == bank
    # the client itself can neither read nor change its grants
    for method, path in (("GET", base), ("POST", base), ("GET", f"{base}/{bank['id']}"),
                         ("DELETE", f"{base}/{bank['id']}")):
        r = tenant.request(method, path, json={"bank_id": "x"} if method == "POST" else None)
        assert r.status_code == 403, (method, path, r.text)
    # a grant id of another client is not found under this one
    other_id, _ = _client_api(stack, admin)
    assert admin.get(f"/v1/clients/{other_id}/grants/{bank['id']}").status_code == 404
    assert admin.request("DELETE", f"{base}/{bank['id']}").status_code == 204
    assert admin.get(f"{base}/{bank['id']}").status_code == 404
    assert admin.request("DELETE", f"{base}/{bank['id']}").status_code == 404


def test_endpoint_filter_needs_a_grant_and_no_filter_gets_only_granted(stack, admin, receiver):
    """A plain client's endpoint without filter receives its granted bank's
    events, not another tenant's; a filter no grant covers is 403 naming the
    field, at creation and by PATCH."""
    client_id, tenant = _client_api(stack, admin)
    mine, theirs = unique("g-bank"), unique("g-bank")
    admin.grant(client_id, bank_id=mine)
    for filt, field in (({"bank_id": theirs}, "filter.bank_id"),
                        ({"bank_id": theirs, "account_id": "a1"}, "filter.account_id")):
        r = tenant.post("/v1/endpoints", json={"url": receiver.url("/x"), "filter": filt})
        assert r.status_code == 403, r.text
        assert error_of(r)["message"].startswith(field + ":"), r.text
    ep = tenant.create_endpoint(receiver.url("/all"))
    r = tenant.request("PATCH", f"/v1/endpoints/{ep['id']}", json={"filter": {"bank_id": theirs}})
    assert r.status_code == 403 and error_of(r)["message"].startswith("filter.bank_id:"), r.text
    assert tenant.request("PATCH", f"/v1/endpoints/{ep['id']}",
                          json={"filter": {"account_id": "a1"}}).status_code == 200
    assert tenant.request("PATCH", f"/v1/endpoints/{ep['id']}",
                          json={"filter": {"account_id": None}}).status_code == 200
    try:
        foreign = admin.expect("POST", "/v1/events", 202, json=make_event(theirs, "acc-1"))["id"]
        own = admin.expect("POST", "/v1/events", 202, json=make_event(mine, "acc-2"))["id"]
        wait_until(lambda: own in receiver.event_ids("/all"), 30, "the granted event")
        wait_until(lambda: stack.sql(f"SELECT count(*) FROM events WHERE id = '{foreign}'")
                   == "1", 30, "the foreign event to be stored")
        assert receiver.event_ids("/all") == {own}
        assert stack.sql(f"SELECT count(*) FROM deliveries WHERE event_id = '{foreign}'"
                         f" AND client_id = '{client_id}'") == "0"
    finally:
        admin.request("DELETE", f"/v1/endpoints/{ep['id']}")
