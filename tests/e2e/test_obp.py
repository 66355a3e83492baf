"""The Open Bank Project dialect (PRODUCT.md 6.1, issue 4): every call's
errors with OBP's exact texts and envelope, DirectLogin, firing from
Kafka events with OBP's payloads, enable/disable, list pagination and
filters, and bank scoping of roles."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import requests

from conftest import make_event, unique, wait_until
from webhooks import verify

DELIVERY_TIMEOUT = 30
VERSIONS = ["v3.1.0", "v4.0.0", "v5.1.0"]

NOT_LOGGED_IN = "OBP-20001: User not logged in. Authentication is required!"
BANK_NOT_FOUND = "OBP-30001: Bank not found. Please specify a valid value for BANK_ID."
MISSING_ROLES = "OBP-20006: User is missing one or more roles: "
BAD_JSON = "OBP-10001: Incorrect json format. The Json body should be the "
BAD_BOOLEAN = ("OBP-10019: Invalid Boolean. Could not convert value to a boolean type. "
               "Possible values of the json field is_active are true or false.")
BAD_LIMIT = ("OBP-10025: wrong value for obp_limit parameter. "
             "Please send a positive integer (=>1)!")
BAD_OFFSET = ("OBP-10024: wrong value for obp_offset parameter. "
              "Please send a positive integer (=>0)!")
WEBHOOK_NOT_FOUND = ("OBP-30050: Webhook not found. "
                     "Please specify a valid value for account_webhook_id.")
BAD_LOGIN = "OBP-20004: Invalid login credentials. Check username/password."

ACCOUNT_FIELDS = {"account_webhook_id", "bank_id", "account_id", "trigger_name", "url",
                  "http_method", "http_protocol", "created_by_user_id", "is_active"}


# ------------------------------------------------------------------ helpers


class Obp:
    """One OBP user: created through the native API with a password, its
    entitlements granted by the admin, logged in with DirectLogin. Its
    client holds a data grant of every bank it has a role at (issue 12)."""

    def __init__(self, stack, admin, roles: list[tuple[str, str]], client_id: str | None = None):
        self.base = stack.api_url
        self.client_id = client_id or admin.create_client()["id"]
        self.username = unique("obp-user")
        self.password = "pw-" + uuid.uuid4().hex
        user = admin.expect("POST", f"/v1/clients/{self.client_id}/users", 201,
                            json={"username": self.username, "password": self.password})
        self.user_id = user["id"]
        for role, bank in roles:
            admin.expect("POST", f"/v1/users/{self.user_id}/entitlements", 201,
                         json={"role": role, "bank_id": bank})
        for bank in {bank for _, bank in roles if bank}:
            r = admin.request("POST", f"/v1/clients/{self.client_id}/grants",
                              json={"bank_id": bank})
            assert r.status_code in (201, 409), r.text  # 409: the client's already
        r = requests.post(f"{self.base}/obp/v4.0.0/my/logins/direct", timeout=15, headers={
            "DirectLogin": f"username={self.username}, password={self.password}, "
                           "consumer_key=test-consumer"})
        assert r.status_code == 201, r.text
        self.token = r.json()["token"]

    def call(self, method: str, path: str, version: str = "v4.0.0", auth: bool = True,
             **kw) -> requests.Response:
        headers = kw.pop("headers", {})
        if auth:
            headers.setdefault("DirectLogin", f"token={self.token}")
        return requests.request(method, f"{self.base}/obp/{version}{path}", headers=headers,
                                timeout=15, **kw)

    def expect(self, method: str, path: str, status: int, **kw) -> dict:
        r = self.call(method, path, **kw)
        assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text[:500]}"
        return r.json()


def obp_error(r: requests.Response, status: int, message: str | None = None) -> str:
    """Asserts OBP's error envelope and status; returns the message."""
    assert r.status_code == status, f"{r.status_code} {r.text[:500]}"
    body = r.json()
    assert set(body) == {"code", "message"}, body
    assert body["code"] == status, body
    if message is not None:
        assert body["message"] == message
    return body["message"]


def new_bank(admin) -> str:
    bank = unique("bank")
    admin.expect("PUT", f"/v1/banks/{bank}", 201, json={"name": "Test Bank", "code": "TB"})
    return bank


def account_body(url: str, account_id: str, trigger: str = "OnBalanceChange", **over) -> dict:
    body = {"account_id": account_id, "trigger_name": trigger, "url": url,
            "http_method": "POST", "http_protocol": "HTTP/1.1", "is_active": "true"}
    body.update(over)
    return body


def notification_body(url: str, **over) -> dict:
    body = {"url": url, "http_method": "POST", "http_protocol": "HTTP/1.1"}
    body.update(over)
    return body


def produce(stack, ev: dict) -> None:
    stack.produce(json.dumps(ev, separators=(",", ":")), key=ev["account_id"])


SYSTEM_PATH = "/web-hooks/account/notifications/on-create-transaction"


def bank_notification_path(bank: str) -> str:
    return f"/banks/{bank}/web-hooks/account/notifications/on-create-transaction"


@pytest.fixture
def cleanup(admin):
    """Subscription ids to delete after the test: system-level webhooks
    fire for every bank, so none may outlive the test that made it."""
    ids: list[str] = []
    yield ids
    for i in ids:
        admin.request("DELETE", f"/v1/endpoints/{i}")


# ------------------------------------------------------------------ banks and login


def test_put_bank_creates_then_replaces_and_is_admin_only(stack, admin):
    bank = unique("bank")
    b = admin.expect("PUT", f"/v1/banks/{bank}", 201,
                     json={"name": "A", "code": "AA", "connector_url": "http://127.0.0.1:1/c"})
    assert (b["bank_id"], b["name"], b["code"], b["connector_url"]) == \
        (bank, "A", "AA", "http://127.0.0.1:1/c")
    b = admin.expect("PUT", f"/v1/banks/{bank}", 200, json={"name": "B", "code": "BB"})
    assert (b["name"], b["code"], b["connector_url"]) == ("B", "BB", "")
    admin.expect("PUT", f"/v1/banks/{bank}", 400, json={"connector_url": "ftp://x"})
    admin.expect("PUT", f"/v1/banks/{bank}", 400, json={"name": 5})
    user = Obp(stack, admin, [])
    r = requests.put(f"{stack.api_url}/v1/banks/{bank}", json={"name": "C"}, timeout=15,
                     headers={"Authorization": f"Bearer {user.token}"})
    assert r.status_code == 403, r.text


def test_direct_login_and_every_token_form(stack, admin):
    bank = new_bank(admin)
    user = Obp(stack, admin, [("CanGetWebhooks", bank)])
    base = f"{stack.api_url}/obp/v5.1.0"
    path = f"/management/banks/{bank}/account-web-hooks"
    for headers in ({"DirectLogin": f"token={user.token}"},
                    {"DirectLogin": f'token="{user.token}"'},
                    {"Authorization": f"DirectLogin token={user.token}"},
                    {"Authorization": f"Bearer {user.token}"}):
        r = requests.get(base + path, headers=headers, timeout=15)
        assert r.status_code == 200, (headers, r.text)
        assert r.json() == {"web_hooks": []}
    # the login itself, in the Authorization header with quoted values
    r = requests.post(base + "/my/logins/direct", timeout=15, headers={
        "Authorization": f'DirectLogin username="{user.username}",password="{user.password}",'
                         'consumer_key="ck"'})
    assert r.status_code == 201 and r.json()["token"].startswith("bh_"), r.text
    # wrong password, unknown user
    for u, p in ((user.username, "wrong-password"), (unique("nobody"), "whatever-pw")):
        r = requests.post(base + "/my/logins/direct", timeout=15, headers={
            "DirectLogin": f"username={u}, password={p}, consumer_key=ck"})
        obp_error(r, 401, BAD_LOGIN)
    r = requests.post(base + "/my/logins/direct", timeout=15,
                      headers={"DirectLogin": f"username={user.username}"})
    obp_error(r, 400, "OBP-20002: These DirectLogin parameters are missing: password, "
                      "consumer_key")
    # a bad token is not logged in
    r = requests.get(base + path, headers={"DirectLogin": "token=bh_nope"}, timeout=15)
    obp_error(r, 401, NOT_LOGGED_IN)


# ------------------------------------------------------------------ every call's errors


CALLS = [
    # (method, path template, role, body, bank-scoped)
    ("POST", "/banks/{bank}/account-web-hooks", "CanCreateWebhook",
     account_body("http://127.0.0.1:1/x", "acct-1"), True),
    ("PUT", "/banks/{bank}/account-web-hooks", "CanUpdateWebhook",
     {"account_webhook_id": "x", "is_active": "false"}, True),
    ("GET", "/management/banks/{bank}/account-web-hooks", "CanGetWebhooks", None, True),
    ("POST", "/banks/{bank}/web-hooks/account/notifications/on-create-transaction",
     "CanCreateAccountNotificationWebhookAtOneBank", notification_body("http://127.0.0.1:1/x"),
     True),
    ("POST", SYSTEM_PATH, "CanCreateSystemAccountNotificationWebhook",
     notification_body("http://127.0.0.1:1/x"), False),
]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("call", CALLS, ids=[f"{c[0]} {c[1]}" for c in CALLS])
def test_every_call_401_404_403_in_that_order(stack, admin, version, call):
    method, template, role, body, bank_scoped = call
    bank = new_bank(admin)
    # A role at another bank does not count; nor does a different role here.
    user = Obp(stack, admin, [(role, new_bank(admin)), ("CanGetWebhooks" if role !=
                                                        "CanGetWebhooks" else
                                                        "CanCreateWebhook", bank)])
    path = template.format(bank=bank)
    kw = {"json": body} if body is not None else {}

    # 401 without credentials, whatever else is wrong
    r = user.call(method, template.format(bank=unique("nobank")), version, auth=False, **kw)
    obp_error(r, 401, NOT_LOGGED_IN)
    r = user.call(method, path, version, auth=False,
                  headers={"Authorization": "Bearer bh_not_a_token"}, **kw)
    obp_error(r, 401, NOT_LOGGED_IN)

    if bank_scoped:
        # 404 before the role is looked at
        r = user.call(method, template.format(bank=unique("nobank")), version, **kw)
        obp_error(r, 404, BANK_NOT_FOUND)
        want = f"{MISSING_ROLES}{role} at Bank({bank})"
    else:
        want = MISSING_ROLES + role
    # 403 before the body is looked at
    r = user.call(method, path, version, data="not json", headers={
        "DirectLogin": f"token={user.token}", "Content-Type": "application/json"})
    obp_error(r, 403, want)


@pytest.mark.parametrize("version", VERSIONS)
def test_create_account_webhook_values_and_success(stack, admin, version, receiver):
    bank = new_bank(admin)
    user = Obp(stack, admin, [("CanCreateWebhook", bank)])
    path = f"/banks/{bank}/account-web-hooks"
    url = receiver.url("/acct")

    obp_error(user.call("POST", path, version, data="{bad"), 400,
              BAD_JSON + "AccountWebhookPostJson")
    body = account_body(url, "acct-1")
    del body["http_protocol"]
    obp_error(user.call("POST", path, version, json=body), 400,
              BAD_JSON + "AccountWebhookPostJson")
    obp_error(user.call("POST", path, version, json=account_body(url, "a", "OnSomething")), 400,
              "OBP-10039: Incorrect Trigger name:OnSomething. Possible values are "
              "OnBalanceChange, OnCreditTransaction, OnDebitTransaction")
    obp_error(user.call("POST", path, version, json=account_body(url, "a", is_active="yes")),
              400, BAD_BOOLEAN)
    obp_error(user.call("POST", path, version, json=account_body(url, "a", http_method="FETCH")),
              400, "OBP-10037: Incorrect http_method. Only Support `POST`, `PUT`, `PATCH`, "
                   "`GET`, `DELETE` currently. Current value is (FETCH)")
    obp_error(user.call("POST", path, version,
                        json=account_body(url, "a", http_protocol="HTTP/0.9")),
              400, "OBP-10038: Incorrect http_protocol. Only Support `HTTP/1.1` currently. "
                   "Current value is (HTTP/0.9)")
    msg = obp_error(user.call("POST", path, version,
                              json=account_body("ftp://example.com/x", "a")), 400)
    assert msg.startswith("OBP-10017: Incorrect URL Format.")
    # Found by fuzz_obp: a non-ASCII byte in the host was named raw, not valid UTF-8: a 500.
    msg = obp_error(user.call("POST", path, version,
                              json=account_body("http://exämple.com/x", "a")), 400)
    assert msg.startswith("OBP-10017: Incorrect URL Format.") and "0xC3" in msg

    acct = str(uuid.uuid4())
    wh = user.expect("POST", path, 201, version=version,
                     json=account_body(url, acct, "OnCreditTransaction", http_method="PUT",
                                       is_active="FALSE"))
    assert set(wh) == ACCOUNT_FIELDS
    assert uuid.UUID(wh["account_webhook_id"])
    assert wh == {**wh, "bank_id": bank, "account_id": acct,
                  "trigger_name": "OnCreditTransaction", "url": url, "http_method": "PUT",
                  "http_protocol": "HTTP/1.1", "created_by_user_id": user.user_id,
                  "is_active": False}
    # The native API lists it under the user's client with its kind.
    r = requests.get(f"{stack.api_url}/v1/endpoints", timeout=15,
                     headers={"Authorization": f"Bearer {user.token}"})
    assert r.status_code == 200, r.text
    [ep] = r.json()["data"]
    assert (ep["id"], ep["kind"], ep["enabled"]) == (wh["account_webhook_id"], "obp_account",
                                                     False)


@pytest.mark.parametrize("version", VERSIONS)
def test_update_account_webhook_values_and_success(stack, admin, version):
    bank = new_bank(admin)
    user = Obp(stack, admin, [("CanCreateWebhook", bank), ("CanUpdateWebhook", bank)])
    wh = user.expect("POST", f"/banks/{bank}/account-web-hooks", 201,
                     json=account_body("http://127.0.0.1:1/x", "acct-1"))
    path = f"/banks/{bank}/account-web-hooks"
    hid = wh["account_webhook_id"]

    obp_error(user.call("PUT", path, version, data="[]"), 400,
              BAD_JSON + "AccountWebhookPutJson")
    obp_error(user.call("PUT", path, version, json={"account_webhook_id": hid}), 400,
              BAD_JSON + "AccountWebhookPutJson")
    obp_error(user.call("PUT", path, version,
                        json={"account_webhook_id": hid, "is_active": "nope"}),
              400, BAD_BOOLEAN)
    obp_error(user.call("PUT", path, version,
                        json={"account_webhook_id": str(uuid.uuid4()), "is_active": "false"}),
              400, WEBHOOK_NOT_FOUND)
    # Another bank's webhook id is not found here, nor is another client's.
    other_bank = new_bank(admin)
    stranger = Obp(stack, admin, [("CanUpdateWebhook", bank), ("CanUpdateWebhook", other_bank)])
    obp_error(stranger.call("PUT", path, version,
                            json={"account_webhook_id": hid, "is_active": "false"}),
              400, WEBHOOK_NOT_FOUND)
    obp_error(user.call("PUT", f"/banks/{other_bank}/account-web-hooks", version,
                        json={"account_webhook_id": hid, "is_active": "false"}), 403,
              f"{MISSING_ROLES}CanUpdateWebhook at Bank({other_bank})")

    got = user.expect("PUT", path, 200, version=version,
                      json={"account_webhook_id": hid, "is_active": "false"})
    assert got == {**wh, "is_active": False}
    got = user.expect("PUT", path, 200, version=version,
                      json={"account_webhook_id": hid, "is_active": "true"})
    assert got == wh


@pytest.mark.parametrize("version", VERSIONS)
def test_list_bad_limit_and_offset(stack, admin, version):
    bank = new_bank(admin)
    user = Obp(stack, admin, [("CanGetWebhooks", bank)])
    path = f"/management/banks/{bank}/account-web-hooks"
    for bad in ("0", "-1", "abc", ""):
        obp_error(user.call("GET", path, version, params={"limit": bad}), 400, BAD_LIMIT)
    for bad in ("-1", "x", "1.5"):
        obp_error(user.call("GET", path, version, params={"offset": bad}), 400, BAD_OFFSET)
    obp_error(user.call("GET", path, version, params={"sort_direction": "UP"}), 400,
              "OBP-10023: obp_sort_direction parameter can only take two values: DESC or ASC!")
    assert user.expect("GET", path, 200, version=version,
                       params={"limit": "1", "offset": "0"}) == {"web_hooks": []}


@pytest.mark.parametrize("version", VERSIONS)
def test_notification_webhooks_values_and_success(stack, admin, version, cleanup):
    bank = new_bank(admin)
    user = Obp(stack, admin, [("CanCreateAccountNotificationWebhookAtOneBank", bank),
                              ("CanCreateSystemAccountNotificationWebhook", "")])
    url = "http://127.0.0.1:1/notify"
    for path in (bank_notification_path(bank), SYSTEM_PATH):
        obp_error(user.call("POST", path, version, data="nope"), 400,
                  BAD_JSON + "AccountNotificationWebhookPostJson")
        obp_error(user.call("POST", path, version, json={"url": url}), 400,
                  BAD_JSON + "AccountNotificationWebhookPostJson")
        obp_error(user.call("POST", path, version,
                            json=notification_body(url, http_method="GET")), 400,
                  "OBP-10037: Incorrect http_method. Only Support `POST` currently. "
                  "Current value is (GET)")
        obp_error(user.call("POST", path, version,
                            json=notification_body(url, http_protocol="HTTP/1.0")), 400,
                  "OBP-10038: Incorrect http_protocol. Only Support `HTTP/1.1` currently. "
                  "Current value is (HTTP/1.0)")

    wh = user.expect("POST", bank_notification_path(bank), 201, version=version,
                     json=notification_body(url))
    cleanup.append(wh["webhook_id"])
    assert set(wh) == {"webhook_id", "bank_id", "trigger_name", "url", "http_method",
                       "http_protocol", "created_by_user_id"}
    assert wh == {**wh, "bank_id": bank, "trigger_name": "OnCreateTransaction", "url": url,
                  "http_method": "POST", "http_protocol": "HTTP/1.1",
                  "created_by_user_id": user.user_id}
    sw = user.expect("POST", SYSTEM_PATH, 201, version=version, json=notification_body(url))
    cleanup.append(sw["webhook_id"])
    assert set(sw) == {"webhook_id", "trigger_name", "url", "http_method", "http_protocol",
                       "created_by_user_id"}
    assert sw["trigger_name"] == "OnCreateTransaction" and sw["webhook_id"] != wh["webhook_id"]


# ------------------------------------------------------------------ firing


def test_events_fire_the_right_webhooks_with_obp_payloads(stack, admin, receiver, cleanup):
    bank, other_bank = new_bank(admin), new_bank(admin)
    acct, other_acct = str(uuid.uuid4()), str(uuid.uuid4())
    user = Obp(stack, admin, [
        ("CanCreateWebhook", bank),
        ("CanCreateAccountNotificationWebhookAtOneBank", bank),
        ("CanCreateAccountNotificationWebhookAtOneBank", other_bank),
        ("CanCreateSystemAccountNotificationWebhook", "")])
    hooks = {}
    for path, acc, trigger, method in (("/balance", acct, "OnBalanceChange", "PUT"),
                                       ("/credit", acct, "OnCreditTransaction", "POST"),
                                       ("/debit", acct, "OnDebitTransaction", "POST"),
                                       ("/other-account", other_acct, "OnBalanceChange", "POST")):
        hooks[path] = user.expect("POST", f"/banks/{bank}/account-web-hooks", 201,
                                  json=account_body(receiver.url(path), acc, trigger,
                                                    http_method=method)
                                  )["account_webhook_id"]
    for path, p in (("/bank", bank_notification_path(bank)),
                    ("/other-bank", bank_notification_path(other_bank)),
                    ("/system", SYSTEM_PATH)):
        hooks[path] = user.expect("POST", p, 201,
                                  json=notification_body(receiver.url(path)))["webhook_id"]
    cleanup.append(hooks["/system"])

    ev = make_event(bank, acct, event_id=unique("evt"), amount="50.5")
    ev["data"]["related_entities"] = [{"user_id": "u-1", "customer_ids": ["c-1", "c-2"]}]
    produce(stack, ev)

    def ours(path):
        return [r for r in receiver.got(path) if r.json().get("event_id") == ev["id"]]

    fired = ("/balance", "/credit", "/bank", "/system")
    wait_until(lambda: all(ours(p) for p in fired), DELIVERY_TIMEOUT,
               "OBP webhooks to fire")
    time.sleep(2)  # room for a stray delivery
    for p in fired:
        assert len(ours(p)) == 1, p
    assert receiver.got("/debit") == []
    assert receiver.got("/other-account") == []
    assert receiver.got("/other-bank") == []

    bal, credit = ours("/balance")[0], ours("/credit")[0]
    assert bal.method == "PUT" and credit.method == "POST"
    for req, trigger in ((bal, "OnBalanceChange"), (credit, "OnCreditTransaction")):
        assert req.headers["content-type"].startswith("application/json")
        assert req.json() == {"event_name": trigger, "event_id": ev["id"], "bank_id": bank,
                              "account_id": acct, "amount": "50.50 EUR",
                              "balance": "739.00 EUR"}
    for path in ("/bank", "/system"):
        req = ours(path)[0]
        assert req.method == "POST"
        assert req.json() == {
            "event_name": "OnCreateTransaction", "event_id": ev["id"], "bank_id": bank,
            "account_id": acct, "transaction_id": ev["data"]["transaction_id"],
            "related_entities": [{"user_id": "u-1", "customer_ids": ["c-1", "c-2"]}]}

    # Signed with the subscription's secret (shown to its owner natively).
    r = requests.get(f"{stack.api_url}/v1/endpoints/{hooks['/credit']}", timeout=15,
                     headers={"Authorization": f"Bearer {user.token}"})
    assert r.status_code == 200 and r.json()["kind"] == "obp_account", r.text
    assert verify(r.json()["secret"], credit.headers, credit.body)
    assert credit.headers["user-agent"].startswith("bankhook/")
    # ... and logged: the delivery log shows a succeeded delivery of this event.
    ds = wait_until(lambda: [d for d in admin.deliveries(endpoint_id=hooks["/credit"])
                             if d["status"] == "succeeded"], DELIVERY_TIMEOUT,
                    "the delivery log")
    assert [d["event_id"] for d in ds] == [ev["id"]]
    assert admin.deliveries(endpoint_id=hooks["/debit"]) == []

    # A debit: negative amount, to the debit and balance webhooks only.
    debit = make_event(bank, acct, event_id=unique("evt"), amount="50")
    debit["data"]["dc"] = "debit"
    debit["data"]["balance"] = "689.5"
    produce(stack, debit)
    wait_until(lambda: receiver.got("/debit") and len(receiver.got("/balance")) == 2,
               DELIVERY_TIMEOUT, "the debit to fire")
    want = {"event_id": debit["id"], "bank_id": bank, "account_id": acct,
            "amount": "-50.00 EUR", "balance": "689.50 EUR"}
    assert receiver.got("/debit")[0].json() == {"event_name": "OnDebitTransaction", **want}
    assert receiver.got("/balance")[1].json() == {"event_name": "OnBalanceChange", **want}

    # balance.changed: OnBalanceChange only, amount = balance - previous_balance.
    bc = make_event(bank, acct, event_id=unique("evt"), type_="balance.changed")
    bc["data"] = {"balance": "10.5", "previous_balance": "25.75", "currency": "GBP"}
    produce(stack, bc)
    wait_until(lambda: len(receiver.got("/balance")) == 3, DELIVERY_TIMEOUT,
               "balance.changed to fire")
    assert receiver.got("/balance")[2].json() == {
        "event_name": "OnBalanceChange", "event_id": bc["id"], "bank_id": bank,
        "account_id": acct, "amount": "-15.25 GBP", "balance": "10.50 GBP"}
    time.sleep(2)
    assert len(receiver.got("/credit")) == 1 and len(receiver.got("/debit")) == 1
    assert len([r for r in receiver.got("/bank")]) == 2  # the credit and the debit
    assert receiver.got("/other-account") == [] and receiver.got("/other-bank") == []


def test_disabling_an_account_webhook_stops_its_deliveries(stack, admin, receiver):
    bank = new_bank(admin)
    acct = str(uuid.uuid4())
    user = Obp(stack, admin, [("CanCreateWebhook", bank), ("CanUpdateWebhook", bank)])
    path = f"/banks/{bank}/account-web-hooks"
    hid = user.expect("POST", path, 201, json=account_body(receiver.url("/hook"), acct)
                      )["account_webhook_id"]
    # A witness that stays active, so "nothing arrived" is not just slowness.
    user.expect("POST", path, 201, json=account_body(receiver.url("/witness"), acct))

    first = make_event(bank, acct, event_id=unique("evt"))
    produce(stack, first)
    wait_until(lambda: receiver.got("/hook") and receiver.got("/witness"), DELIVERY_TIMEOUT,
               "the first delivery")

    off = user.expect("PUT", path, 200, json={"account_webhook_id": hid, "is_active": "false"})
    assert off["is_active"] is False
    second = make_event(bank, acct, event_id=unique("evt"))
    produce(stack, second)
    wait_until(lambda: len(receiver.got("/witness")) == 2, DELIVERY_TIMEOUT,
               "the witness to get the second event")
    time.sleep(2)
    assert [r.json()["event_id"] for r in receiver.got("/hook")] == [first["id"]]

    user.expect("PUT", path, 200, json={"account_webhook_id": hid, "is_active": "true"})
    third = make_event(bank, acct, event_id=unique("evt"))
    produce(stack, third)
    wait_until(lambda: len(receiver.got("/hook")) == 2, DELIVERY_TIMEOUT,
               "deliveries after re-enabling")
    assert receiver.got("/hook")[1].json()["event_id"] == third["id"]


# ------------------------------------------------------------------ listing and scoping


def test_list_pages_filters_and_sort(stack, admin):
    bank = new_bank(admin)
    client = admin.create_client()["id"]
    alice = Obp(stack, admin, [("CanCreateWebhook", bank), ("CanGetWebhooks", bank)],
                client_id=client)
    bob = Obp(stack, admin, [("CanCreateWebhook", bank)], client_id=client)
    path = f"/banks/{bank}/account-web-hooks"
    created = []  # in creation order
    for i, (who, acct) in enumerate([(alice, "acct-a"), (bob, "acct-b"), (alice, "acct-a"),
                                     (bob, "acct-a"), (alice, "acct-b")]):
        created.append(who.expect("POST", path, 201,
                                  json=account_body(f"http://127.0.0.1:1/h{i}", acct)))
    ids = [w["account_webhook_id"] for w in created]
    # Another client's webhook at the same bank is not listed for alice.
    outsider = Obp(stack, admin, [("CanCreateWebhook", bank)])
    outsider.expect("POST", path, 201, json=account_body("http://127.0.0.1:1/o", "acct-a"))

    mgmt = f"/management/banks/{bank}/account-web-hooks"

    def page(**params):
        hooks = alice.expect("GET", mgmt, 200, params=params)["web_hooks"]
        for h in hooks:
            assert set(h) == ACCOUNT_FIELDS and h["bank_id"] == bank
        return [h["account_webhook_id"] for h in hooks]

    newest_first = list(reversed(ids))
    assert page() == newest_first
    assert page(limit="2") == newest_first[:2]
    assert page(limit="2", offset="2") == newest_first[2:4]
    assert page(limit="2", offset="4") == newest_first[4:]
    assert page(offset="5") == []
    assert page(sort_direction="ASC") == ids
    assert page(sort_direction="ASC", limit="3", offset="1") == ids[1:4]
    assert page(sort_direction="DESC", limit="1") == newest_first[:1]
    assert page(account_id="acct-a") == [ids[3], ids[2], ids[0]]
    assert page(user_id=bob.user_id) == [ids[3], ids[1]]
    assert page(user_id=alice.user_id, account_id="acct-b") == [ids[4]]
    assert page(account_id="acct-none") == []
    full = alice.expect("GET", mgmt, 200, params={"limit": "1"})["web_hooks"][0]
    assert full == created[-1]
    # The admin sees every client's, the outsider's too.
    r = admin.get(f"/obp/v4.0.0{mgmt}")
    assert r.status_code == 200 and len(r.json()["web_hooks"]) == 6, r.text


def test_roles_at_bank_a_do_not_reach_bank_b(stack, admin):
    bank_a, bank_b = new_bank(admin), new_bank(admin)
    user = Obp(stack, admin, [(role, bank_a) for role in
                              ("CanCreateWebhook", "CanUpdateWebhook", "CanGetWebhooks",
                               "CanCreateAccountNotificationWebhookAtOneBank")])
    assert user.expect("GET", f"/management/banks/{bank_a}/account-web-hooks", 200) == \
        {"web_hooks": []}
    obp_error(user.call("GET", f"/management/banks/{bank_b}/account-web-hooks"), 403,
              f"{MISSING_ROLES}CanGetWebhooks at Bank({bank_b})")
    obp_error(user.call("POST", f"/banks/{bank_b}/account-web-hooks",
                        json=account_body("http://127.0.0.1:1/x", "a")), 403,
              f"{MISSING_ROLES}CanCreateWebhook at Bank({bank_b})")
    obp_error(user.call("POST", bank_notification_path(bank_b),
                        json=notification_body("http://127.0.0.1:1/x")), 403,
              f"{MISSING_ROLES}CanCreateAccountNotificationWebhookAtOneBank at Bank({bank_b})")
    # Bank-level roles are not system-level ones.
    obp_error(user.call("POST", SYSTEM_PATH, json=notification_body("http://127.0.0.1:1/x")),
              403, MISSING_ROLES + "CanCreateSystemAccountNotificationWebhook")


def test_system_webhook_of_a_plain_client_gets_only_its_granted_banks(stack, admin, receiver,
                                                                    cleanup):
    """A system-level notification webhook fires "for every bank" only
    within what its client is granted (issue 12); and holding a role at a
    bank without a data grant of it does not let an account webhook be
    created there (403 OBP-20006)."""
    bank, foreign_bank = new_bank(admin), new_bank(admin)
    user = Obp(stack, admin, [("CanCreateWebhook", bank),
                              ("CanCreateSystemAccountNotificationWebhook", "")])
    cleanup.append(user.expect("POST", SYSTEM_PATH, 201,
                               json=notification_body(receiver.url("/system")))["webhook_id"])
    theirs = make_event(foreign_bank, str(uuid.uuid4()), event_id=unique("evt"))
    ours = make_event(bank, str(uuid.uuid4()), event_id=unique("evt"))
    produce(stack, theirs)
    produce(stack, ours)
    wait_until(lambda: receiver.got("/system"), 30, "the granted bank's transaction")
    wait_until(lambda: stack.sql(f"SELECT count(*) FROM events WHERE id = '{theirs['id']}'")
               == "1", 30, "the foreign event to be stored")
    assert stack.sql(f"SELECT event_id FROM deliveries WHERE client_id = '{user.client_id}'") \
        == ours["id"]
    assert len(receiver.got("/system")) == 1

    admin.expect("POST", f"/v1/users/{user.user_id}/entitlements", 201,
                 json={"role": "CanCreateWebhook", "bank_id": foreign_bank})
    msg = obp_error(user.call("POST", f"/banks/{foreign_bank}/account-web-hooks",
                              json=account_body(receiver.url("/x"), theirs["account_id"])), 403)
    assert msg.startswith("OBP-20006: ") and "account_id" in msg, msg
