"""The tenant isolation matrix (PRODUCT.md section 7, issue 8).

Client A holds the same roles as client B at B's bank (so a refusal comes
from tenant scoping, not from a missing role) and aims every route of every
dialect at B's resources: B's endpoint, OBP webhooks, Banksocket webhook,
acquirer configuration, event, delivery, users and tokens. Each case
asserts the dialect's refusal and that B's rows in PostgreSQL are exactly
as before (a digest of every table B owns, read before and after).

The table is checked against `bin/bankhook-api routes`: a registered route
without a case fails, naming it, and so does a case whose route is gone.

Case kinds:
  attack      A's credentials against B's resource: a refusal (403/404, or
              the acquirer dialect's 401 "client not authorized"); B unchanged.
  list        a list route: answered (200) without any of B's items, also
              when A names B's ids in the filters; B unchanged.
  own         a create route whose request names nothing of B's: it lands
              in A's client, is invisible to B, and B is unchanged.
  public      no credentials needed; the reason says why that is safe, and
              the answer carries none of B's identifiers.

Adding a route: add one entry to CASES (usually one line with a helper).

Beyond the API, delivery is checked too (issue 12): A's subscriptions that
ask for everything in every dialect (a native endpoint without filter, a
Banksocket webhook on "all", an OBP system-level notification webhook, and
rows naming B's account and merchant as they could have been stored before
grants existed) receive none of B's events, while B's own arrive.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from dataclasses import dataclass
from typing import Callable

import pytest
import requests

from conftest import BIN, Receiver, make_event, unique, wait_until

OBP_VERSIONS = ("v3.1.0", "v4.0.0", "v5.1.0")
ACQ_VERSION = "v1"
ACQ_KEY = "0123456789abcdef0123456789ABCDEF"
OBP_ROLES = ("CanCreateWebhook", "CanUpdateWebhook", "CanGetWebhooks",
             "CanCreateAccountNotificationWebhookAtOneBank")
NOTIFY = "web-hooks/account/notifications/on-create-transaction"


# ------------------------------------------------------------------ tenants


class Tenant:
    """A client with one user (password set, OBP roles at `bank`), a native
    token and an OBP DirectLogin token."""

    def __init__(self, stack, admin, bank: str):
        self.base = stack.api_url
        self.client_id = admin.create_client()["id"]
        self.username, self.password = unique("iso-user"), "pw-" + uuid.uuid4().hex
        self.user_id = admin.expect("POST", f"/v1/clients/{self.client_id}/users", 201,
                                    json={"username": self.username,
                                          "password": self.password})["id"]
        for role in OBP_ROLES:
            admin.expect("POST", f"/v1/users/{self.user_id}/entitlements", 201,
                         json={"role": role, "bank_id": bank})
        tok = admin.create_token(self.user_id)
        self.token, self.token_id = tok["token"], tok["id"]
        r = requests.post(f"{self.base}/obp/v4.0.0/my/logins/direct", timeout=15, headers={
            "DirectLogin": f"username={self.username}, password={self.password}, "
                           "consumer_key=iso"})
        assert r.status_code == 201, r.text
        self.obp_token = r.json()["token"]
        self.acquirer_id, self.merchant_id = "7" * 25, "8" * 10

    # one call per dialect's way of authenticating
    def native(self, method: str, path: str, headers: dict | None = None,
               **kw) -> requests.Response:
        return requests.request(method, self.base + path, timeout=15,
                                headers={"Authorization": f"Bearer {self.token}",
                                         **(headers or {})}, **kw)

    def obp(self, method: str, version: str, path: str, **kw) -> requests.Response:
        return requests.request(method, f"{self.base}/obp/{version}{path}", timeout=15,
                                headers={"DirectLogin": f"token={self.obp_token}"}, **kw)

    def banksocket(self, method: str, path: str, **kw) -> requests.Response:
        return requests.request(method, f"{self.base}/banksocket/v1{path}", timeout=15,
                                headers={"Authentication": self.token}, **kw)

    def acquirer(self, method: str, path: str, client_id: str | None = None,
                 **kw) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}",
                   "x-ibm-client-id": client_id or self.client_id,
                   "TPP-Request-ID": str(uuid.uuid4()), "User-ID": "iso",
                   "User-Organization-ID": "iso"}
        return requests.request(method, f"{self.base}/acquirer/{ACQ_VERSION}{path}",
                                timeout=15, headers=headers, **kw)


def acq_config(code: str, op: str, url: str = "http://127.0.0.1:9/iso") -> dict:
    return {"notificationConfigurationCode": code, "requestOperationType": op,
            "paymentMethods": [{"paymentMethodNotificationCode": "CARD"}],
            "channelTypeNotification": {"notificationType": "URL", "value": url, "security": {
                "key": ACQ_KEY, "supportEmail": "ops@example.com",
                "algorithm": "AES-256-GCM"}}}


@dataclass
class World:
    stack: object
    admin: object
    a: Tenant
    b: Tenant
    bank: str
    b_account: str
    ids: dict  # B's resources by name
    a_publisher: str = ""  # a token of A's client with role event_publisher

    def b_state(self) -> dict[str, str]:
        """A digest of every row B owns, per table."""
        c = self.b.client_id
        parts = {
            "client": f"SELECT row_to_json(x)::text FROM clients x WHERE id = '{c}'",
            "users": f"SELECT row_to_json(x)::text FROM users x WHERE client_id = '{c}'",
            "entitlements": "SELECT row_to_json(e)::text FROM entitlements e JOIN users u"
                            f" ON u.id = e.user_id WHERE u.client_id = '{c}'",
            "tokens": "SELECT row_to_json(t)::text FROM tokens t JOIN users u"
                      f" ON u.id = t.user_id WHERE u.client_id = '{c}'",
            "subscriptions": f"SELECT row_to_json(s)::text FROM subscriptions s"
                             f" WHERE client_id = '{c}'",
            "deliveries": "SELECT row_to_json(d)::text FROM deliveries d JOIN subscriptions s"
                          f" ON s.id = d.subscription_id WHERE s.client_id = '{c}'",
            "attempts": "SELECT row_to_json(a)::text FROM attempts a JOIN deliveries d"
                        " ON d.id = a.delivery_id JOIN subscriptions s"
                        f" ON s.id = d.subscription_id WHERE s.client_id = '{c}'",
            "consents": f"SELECT row_to_json(x)::text FROM consents x WHERE client_id = '{c}'",
            "grants": f"SELECT row_to_json(x)::text FROM grants x WHERE client_id = '{c}'",
            "psd2_settings": f"SELECT row_to_json(x)::text FROM psd2_settings x"
                             f" WHERE client_id = '{c}'",
            "psd2_tasks": f"SELECT row_to_json(x)::text FROM psd2_tasks x WHERE client_id = '{c}'",
            "bank": f"SELECT row_to_json(x)::text FROM banks x WHERE bank_id = '{self.bank}'",
            "idempotency_keys": f"SELECT row_to_json(x)::text FROM idempotency_keys x"
                                f" WHERE client_id = '{c}'",
        }
        return {name: self.stack.sql(f"SELECT md5(coalesce(string_agg(r, ',' ORDER BY r), ''))"
                                     f" FROM ({q}) AS q(r)") for name, q in parts.items()}

    def b_identifiers(self) -> list[str]:
        """B's ids that are unique strings (the Banksocket integer id is
        checked where it is listed)."""
        return [self.b.client_id, self.b.user_id, self.b.token, self.b.token_id] + [
            v for v in self.ids.values() if isinstance(v, str)]


@pytest.fixture(scope="module")
def world(stack, admin):
    rx = Receiver()
    bank = unique("iso-bank")
    admin.expect("PUT", f"/v1/banks/{bank}", 201, json={"name": "Iso", "code": "IS"})
    b = Tenant(stack, admin, bank)
    a = Tenant(stack, admin, bank)
    account = str(uuid.uuid4())
    ids: dict = {}
    # B's data: its bank and its acquirer's merchant (A holds no grant at all)
    ids["grant"] = admin.grant(b.client_id, bank_id=bank)["id"]
    admin.grant(b.client_id, acquirer_id=b.acquirer_id, merchant_id=b.merchant_id)

    ep = b.native("POST", "/v1/endpoints", json={"url": rx.url("/b-native"),
                                                 "filter": {"bank_id": bank}})
    assert ep.status_code == 201, ep.text
    ids["endpoint"], ids["endpoint_secret"] = ep.json()["id"], ep.json()["secret"]
    r = b.obp("POST", "v4.0.0", f"/banks/{bank}/account-web-hooks", json={
        "account_id": account, "trigger_name": "OnBalanceChange", "url": rx.url("/b-obp"),
        "http_method": "POST", "http_protocol": "HTTP/1.1", "is_active": "true"})
    assert r.status_code == 201, r.text
    ids["obp_account_webhook"] = r.json()["account_webhook_id"]
    r = b.obp("POST", "v4.0.0", f"/banks/{bank}/{NOTIFY}", json={
        "url": rx.url("/b-notify"), "http_method": "POST", "http_protocol": "HTTP/1.1"})
    assert r.status_code == 201, r.text
    ids["obp_notification_webhook"] = r.json()["webhook_id"]
    r = b.banksocket("POST", "/webhooks", json={"title": "b", "endpoint": rx.url("/b-bs"),
                                                "event": "NEW_TRANSACTION", "account": "4242"})
    assert r.status_code == 200, r.text
    ids["banksocket_webhook"] = r.json()["webhook"]["id"]
    ids["acquirer_code"] = unique("bcode")[:30]
    r = b.acquirer("POST", f"/acquirers/{b.acquirer_id}/merchants/{b.merchant_id}/terminal/webhook",
                   json=acq_config(ids["acquirer_code"], "INS"))
    assert r.status_code == 200 and r.json()["transactionStatus"] == "ACTC", r.text

    # an event for B, delivered: B's event and deliveries exist and are settled
    ids["event"] = unique("iso-ev")
    admin.expect("POST", "/v1/events", 202, json=make_event(bank, account, event_id=ids["event"]))
    wait_until(lambda: rx.got("/b-native") and rx.got("/b-obp"), 60, "B's deliveries")

    def settled():
        rows = b.native("GET", "/v1/deliveries", params={"event_id": ids["event"]}).json()
        return rows["data"] if rows["data"] and all(
            d["status"] != "pending" for d in rows["data"]) else None

    dels = wait_until(settled, 60, "B's deliveries to settle")
    ids["delivery"] = next(d["id"] for d in dels if d["endpoint_id"] == ids["endpoint"])

    # PSD2: B's consent (an account at this bank, which has no connector),
    # pending application-webhook settings, and a finished refresh task
    ids["consent"] = unique("iso-consent")
    admin.expect("PUT", f"/v1/consents/{ids['consent']}", 201, json={
        "client_id": b.client_id, "accounts": [{"account_id": unique("iso-acc"),
                                                "bank_code": "IS"}]})
    r = b.native("PUT", "/tpp/v1/webhook-settings", json={
        "enabled": True, "endpoint": rx.url("/b-tpp"), "securityHeader": "Basic bsecret"})
    assert r.status_code == 200, r.text
    r = b.native("PUT", "/tpp/v1/refresh", headers={"Consent-ID": ids["consent"]})
    assert r.status_code == 202, r.text
    ids["task"] = r.json()["taskId"]
    wait_until(lambda: b.native("GET", f"/tpp/v1/refresh/{ids['task']}").json()["status"]
               == "COMPLETED", 90, "B's refresh task to complete")

    # B's stored publish answer under an Idempotency-Key (issue 13), for a
    # bank nobody subscribes to, and a publisher token of A's client
    def publisher_token(client_id: str) -> str:
        user_id = admin.create_user(client_id)["id"]
        admin.expect("POST", f"/v1/users/{user_id}/entitlements", 201,
                     json={"role": "event_publisher"})
        return admin.create_token(user_id)["token"]

    ids["idem_key"] = unique("iso-idem")
    r = requests.post(f"{stack.api_url}/v1/events/batch", json=IDEM_BODY, timeout=15,
                      headers={"Authorization": f"Bearer {publisher_token(b.client_id)}",
                               "Idempotency-Key": ids["idem_key"]})
    assert r.status_code == 202, r.text
    ids["idem_event"] = r.json()["data"][0]["id"]
    yield World(stack, admin, a, b, bank, account, ids, publisher_token(a.client_id))
    # B's subscriptions at this bank would receive later tests' events otherwise
    for key in ("endpoint", "obp_account_webhook", "obp_notification_webhook"):
        admin.request("DELETE", f"/v1/endpoints/{ids[key]}")
    b.banksocket("DELETE", f"/webhooks/{ids['banksocket_webhook']}")
    rx.close()


# ------------------------------------------------------------------ refusals


# B's batch published under an Idempotency-Key; A sends the same (no event id: each
# produce names its own) and must get an answer of its own.
IDEM_BODY = {"events": [make_event("iso-idem-nobody", "iso-idem-acc")]}


def idem_answer_is_own(w: World) -> None:
    native_refused(w.a.native("POST", "/v1/events/batch", json=IDEM_BODY), (403,))
    r = requests.post(w.stack.api_url + "/v1/events/batch", json=IDEM_BODY, timeout=15,
                      headers={"Authorization": f"Bearer {w.a_publisher}",
                               "Idempotency-Key": w.ids["idem_key"]})
    assert r.status_code == 202, r.text
    assert "Idempotent-Replayed" not in r.headers
    assert r.json()["data"][0]["id"] != w.ids["idem_event"], r.text


def native_refused(r: requests.Response, statuses=(403, 404)) -> None:
    assert r.status_code in statuses, f"{r.status_code} {r.text[:300]}"
    assert r.json()["error"]["code"] in ("forbidden", "not_found"), r.text


# OBP-API answers an unknown (or another's) webhook id with 400 OBP-30050,
# which the OBP dialect mirrors (docs/DIALECTS.md): its "not found".
def obp_refused(r: requests.Response, statuses=(403, 404)) -> None:
    assert r.status_code in statuses, f"{r.status_code} {r.text[:300]}"
    body = r.json()
    assert set(body) == {"code", "message"} and body["code"] == r.status_code, body
    assert body["message"].startswith(("OBP-30050", "OBP-20006")), body


def bs_refused(r: requests.Response) -> None:
    assert r.status_code == 404, f"{r.status_code} {r.text[:300]}"
    assert r.json()["status"] == "error", r.text


def acq_refused(r: requests.Response, status: int, code: str) -> None:
    assert r.status_code == status, f"{r.status_code} {r.text[:300]}"
    body = r.json()
    assert body["transactionStatus"] == "RJCT", body
    assert body["returnStatus"]["statusCode"] == code, body


# ------------------------------------------------------------------ cases


@dataclass
class Case:
    kind: str  # attack | list | own | public
    run: Callable[[World], None] | None = None
    reason: str = ""


def attack(fn: Callable[[World], None]) -> Case:
    return Case("attack", fn)


def listing(fn: Callable[[World], None]) -> Case:
    return Case("list", fn)


def own(fn: Callable[[World], list[str]], reason: str) -> Case:
    """fn creates as A and returns the new subscription ids."""
    return Case("own", fn, reason)


def public(reason: str, fn: Callable[[World], None] | None = None) -> Case:
    return Case("public", fn, reason)


def no_b_items(w: World, r: requests.Response) -> None:
    assert r.status_code == 200, f"{r.status_code} {r.text[:300]}"
    text = r.text
    for ident in w.b_identifiers():
        assert ident not in text, f"B's {ident} in {text[:300]}"


# -- native

def c_endpoint(method: str, suffix: str = "", **kw):
    return attack(lambda w: native_refused(
        w.a.native(method, f"/v1/endpoints/{w.ids['endpoint']}{suffix}", **kw), (404,)))


def l_endpoints(w: World) -> None:
    no_b_items(w, w.a.native("GET", "/v1/endpoints"))
    no_b_items(w, w.a.native("GET", "/v1/endpoints", params={"client_id": w.b.client_id}))


def l_deliveries(w: World) -> None:
    no_b_items(w, w.a.native("GET", "/v1/deliveries"))
    for key, value in (("endpoint_id", w.ids["endpoint"]), ("event_id", w.ids["event"])):
        r = w.a.native("GET", "/v1/deliveries", params={key: value})
        no_b_items(w, r)
        assert r.json()["data"] == [], r.text


def a_delete_token(w: World) -> None:
    native_refused(w.a.native("DELETE", f"/v1/tokens/{w.b.token_id}"), (404,))
    assert w.b.native("GET", "/v1/endpoints").status_code == 200  # B's token still works


def public_probe(path: str):
    def run(w: World) -> None:
        r = requests.get(w.stack.api_url + path, timeout=15)
        no_b_items(w, r)
    return run


# -- OBP (the same cases for every version)

def obp_cases(v: str) -> dict[str, Case]:
    p = f"/obp/{v}"

    def login(w: World) -> None:
        # A's username with B's password is refused; the login of A's own
        # credentials gives a token that acts as A only (the other cases)
        r = requests.post(f"{w.stack.api_url}{p}/my/logins/direct", timeout=15, headers={
            "DirectLogin": f"username={w.a.username}, password={w.b.password}, "
                           "consumer_key=iso"})
        assert r.status_code == 401, r.text
        r = requests.post(f"{w.stack.api_url}{p}/my/logins/direct", timeout=15, headers={
            "DirectLogin": f"username={w.b.username}, password={w.a.password}, "
                           "consumer_key=iso"})
        assert r.status_code == 401, r.text

    def create_account(w: World) -> None:
        # A holds the role at B's bank but no data grant: B's account is refused
        obp_refused(w.a.obp("POST", v, f"/banks/{w.bank}/account-web-hooks", json={
            "account_id": w.b_account, "trigger_name": "OnBalanceChange",
            "url": "http://127.0.0.1:9/a", "http_method": "POST",
            "http_protocol": "HTTP/1.1", "is_active": "false"}), (403,))

    def update_account(w: World) -> None:
        obp_refused(w.a.obp("PUT", v, f"/banks/{w.bank}/account-web-hooks", json={
            "account_webhook_id": w.ids["obp_account_webhook"], "is_active": "false"}), (400,))

    def list_account(w: World) -> None:
        no_b_items(w, w.a.obp("GET", v, f"/management/banks/{w.bank}/account-web-hooks"))
        no_b_items(w, w.a.obp("GET", v, f"/management/banks/{w.bank}/account-web-hooks",
                              params={"account_id": w.b_account,
                                      "user_id": w.b.user_id}))

    def create_bank_notification(w: World) -> None:
        obp_refused(w.a.obp("POST", v, f"/banks/{w.bank}/{NOTIFY}", json={
            "url": "http://127.0.0.1:9/a", "http_method": "POST",
            "http_protocol": "HTTP/1.1"}), (403,))

    def create_system_notification(w: World) -> None:
        # system level needs a system-wide role, which neither tenant holds
        obp_refused(w.a.obp("POST", v, f"/{NOTIFY}", json={
            "url": "http://127.0.0.1:9/a", "http_method": "POST",
            "http_protocol": "HTTP/1.1"}), (403,))

    return {
        f"POST {p}/my/logins/direct": public(
            "login: takes a username and password, answers only their owner's token", login),
        f"POST {p}/banks/{{bank_id}}/account-web-hooks": attack(create_account),
        f"PUT {p}/banks/{{bank_id}}/account-web-hooks": attack(update_account),
        f"GET {p}/management/banks/{{bank_id}}/account-web-hooks": listing(list_account),
        f"POST {p}/banks/{{bank_id}}/{NOTIFY}": attack(create_bank_notification),
        f"POST {p}/{NOTIFY}": attack(create_system_notification),
    }


# -- Banksocket

def bs_create(w: World) -> list[str]:
    # B's account (at the bank only B holds a grant of) is refused
    r = w.a.banksocket("POST", "/webhooks", json={"title": "a", "endpoint": "http://127.0.0.1:9/a",
                                                  "event": "NEW_CREDIT", "account": w.b_account})
    assert r.status_code == 403 and r.json()["status"] == "error", r.text
    assert "account" in r.json()["message"], r.text
    # "all" is A's own entitlement (nothing of B's, see the delivery test)
    r = w.a.banksocket("POST", "/webhooks", json={"title": "a", "endpoint": "http://127.0.0.1:9/a",
                                                  "event": "NEW_CREDIT", "account": "all"})
    assert r.status_code == 200, r.text
    seq = r.json()["webhook"]["id"]
    return [w.stack.sql(f"SELECT id FROM subscriptions WHERE seq = {int(seq)}")]


def bs_list(w: World) -> None:
    r = w.a.banksocket("GET", "/webhooks")
    no_b_items(w, r)
    assert w.ids["banksocket_webhook"] not in [h["id"] for h in r.json()["webhooks"]], r.text


# -- acquirer

ACQ_CONFIG = "/acquirers/{acquirer}/merchants/{merchant}/terminal/webhook"


def acq_config_case(method: str):
    def run(w: World) -> None:
        path = ACQ_CONFIG.format(acquirer=w.b.acquirer_id, merchant=w.b.merchant_id)
        code = w.ids["acquirer_code"]
        # A's token presented as B's client: 401 "client not authorized"
        for op in ("INS", "DEL"):
            acq_refused(w.a.acquirer(method, path, client_id=w.b.client_id,
                                     json=acq_config(code, op)), 401, "104")
        # as itself, A cannot delete B's configuration: it has no such code
        acq_refused(w.a.acquirer(method, path, json=acq_config(code, "DEL")), 404, "401")
        # nor configure B's merchant under a code of its own: no data grant covers it
        acq_refused(w.a.acquirer(method, path, json=acq_config(unique("acode")[:30], "INS")),
                    403, "106")
    return attack(run)


def acq_list(w: World) -> None:
    body = {"acquirerId": w.b.acquirer_id, "merchantId": w.b.merchant_id}
    acq_refused(w.a.acquirer("POST", "/webhooks", client_id=w.b.client_id, json=body),
                401, "104")
    r = w.a.acquirer("POST", "/webhooks", json=body)
    no_b_items(w, r)
    assert r.json()["webhooks"] == [], r.text
    assert w.ids["acquirer_code"] not in r.text


# -- PSD2 application webhooks (the settings are always the caller's own)

def tpp_get_settings(w: World) -> None:
    r = w.a.native("GET", "/tpp/v1/webhook-settings")
    no_b_items(w, r)
    assert "bsecret" not in r.text and "/b-tpp" not in r.text, r.text


def tpp_put_settings(w: World) -> None:
    r = w.a.native("PUT", "/tpp/v1/webhook-settings", json={
        "enabled": True, "endpoint": "http://127.0.0.1:9/a-tpp", "securityHeader": "a"})
    assert r.status_code == 200, r.text
    assert r.json()["pending"]["endpoint"] == "http://127.0.0.1:9/a-tpp", r.text


def tpp_refresh(w: World) -> None:
    for kw in ({"headers": {"Consent-ID": w.ids["consent"]}},
               {"json": {"consentId": w.ids["consent"]}}):
        native_refused(w.a.native("PUT", "/tpp/v1/refresh", **kw), (404,))


# ------------------------------------------------------------------ the table


CASES: dict[str, Case] = {
    "GET /healthz": public("liveness: a constant answer, no tenant data",
                           public_probe("/healthz")),
    "GET /readyz": public("readiness: dependency status only, no tenant data",
                          public_probe("/readyz")),
    "GET /metrics": public("request counters by route pattern and status, no ids",
                           public_probe("/metrics")),
    "POST /v1/clients": attack(lambda w: native_refused(
        w.a.native("POST", "/v1/clients", json={"name": "x"}), (403,))),
    "POST /v1/clients/{id}/users": attack(lambda w: native_refused(
        w.a.native("POST", f"/v1/clients/{w.b.client_id}/users",
                   json={"username": unique("x")}), (404,))),
    "POST /v1/users/{id}/entitlements": attack(lambda w: native_refused(
        w.a.native("POST", f"/v1/users/{w.b.user_id}/entitlements",
                   json={"role": "admin"}), (403,))),
    "POST /v1/tokens": attack(lambda w: native_refused(
        w.a.native("POST", "/v1/tokens", json={"user_id": w.b.user_id}), (404,))),
    "DELETE /v1/tokens/{id}": attack(a_delete_token),
    "POST /v1/endpoints": attack(lambda w: native_refused(
        w.a.native("POST", "/v1/endpoints", json={"url": "http://127.0.0.1:9/a",
                                                  "client_id": w.b.client_id}), (403,))),
    "GET /v1/endpoints": listing(l_endpoints),
    "GET /v1/endpoints/{id}": c_endpoint("GET"),
    "PATCH /v1/endpoints/{id}": c_endpoint("PATCH", json={"url": "http://127.0.0.1:9/a",
                                                           "enabled": False}),
    "DELETE /v1/endpoints/{id}": c_endpoint("DELETE"),
    "POST /v1/endpoints/{id}/rotate-secret": c_endpoint("POST", "/rotate-secret"),
    "POST /v1/endpoints/{id}/replay": c_endpoint("POST", "/replay", json={
        "since": "2000-01-01T00:00:00Z"}),
    "POST /v1/events": attack(lambda w: native_refused(
        w.a.native("POST", "/v1/events", json=make_event(w.bank, w.b_account)), (403,))),
    "POST /v1/events/batch": attack(idem_answer_is_own),
    "GET /v1/events/{id}": attack(lambda w: native_refused(
        w.a.native("GET", f"/v1/events/{w.ids['event']}"), (404,))),
    "GET /v1/deliveries": listing(l_deliveries),
    "GET /v1/deliveries/{id}": attack(lambda w: native_refused(
        w.a.native("GET", f"/v1/deliveries/{w.ids['delivery']}"), (404,))),
    "POST /v1/deliveries/{id}/retry": attack(lambda w: native_refused(
        w.a.native("POST", f"/v1/deliveries/{w.ids['delivery']}/retry"), (404,))),
    "PUT /v1/consents/{consent_id}": attack(lambda w: native_refused(
        w.a.native("PUT", f"/v1/consents/{w.ids['consent']}", json={
            "client_id": w.a.client_id, "accounts": []}), (403,))),
    "GET /v1/consents/{consent_id}": attack(lambda w: native_refused(
        w.a.native("GET", f"/v1/consents/{w.ids['consent']}"), (404,))),
    "GET /tpp/v1/webhook-settings": listing(tpp_get_settings),
    "PUT /tpp/v1/webhook-settings": attack(tpp_put_settings),
    "PUT /tpp/v1/refresh": attack(tpp_refresh),
    "GET /tpp/v1/refresh/{taskId}": attack(lambda w: native_refused(
        w.a.native("GET", f"/tpp/v1/refresh/{w.ids['task']}"), (404,))),
    "GET /openapi.yaml": public("the API description, the same for everyone",
                                public_probe("/openapi.yaml")),
    "POST /v1/clients/{id}/grants": attack(lambda w: [native_refused(
        w.a.native("POST", f"/v1/clients/{c}/grants", json={"bank_id": w.bank}), (403,))
        for c in (w.b.client_id, w.a.client_id)]),
    "GET /v1/clients/{id}/grants": attack(lambda w: native_refused(
        w.a.native("GET", f"/v1/clients/{w.b.client_id}/grants"), (403,))),
    "GET /v1/clients/{id}/grants/{grant_id}": attack(lambda w: native_refused(
        w.a.native("GET", f"/v1/clients/{w.b.client_id}/grants/{w.ids['grant']}"), (403,))),
    "DELETE /v1/clients/{id}/grants/{grant_id}": attack(lambda w: native_refused(
        w.a.native("DELETE", f"/v1/clients/{w.b.client_id}/grants/{w.ids['grant']}"),
        (403,))),
    "PUT /v1/banks/{bank_id}": attack(lambda w: native_refused(
        w.a.native("PUT", f"/v1/banks/{w.bank}", json={"name": "taken"}), (403,))),
    **{k: c for v in OBP_VERSIONS for k, c in obp_cases(v).items()},
    "POST /banksocket/v1/webhooks": own(bs_create, "B's account is refused (no grant); "
                                                   "\"all\" is A's own entitlement"),
    "GET /banksocket/v1/webhooks": listing(bs_list),
    "DELETE /banksocket/v1/webhooks/{id}": attack(lambda w: bs_refused(
        w.a.banksocket("DELETE", f"/webhooks/{w.ids['banksocket_webhook']}"))),
    "POST /acquirer/{version}/acquirers/{acquirer_id}/merchants/{merchant_id}/terminal/webhook":
        acq_config_case("POST"),
    "PUT /acquirer/{version}/acquirers/{acquirer_id}/merchants/{merchant_id}/terminal/webhook":
        acq_config_case("PUT"),
    "POST /acquirer/{version}/webhooks": listing(acq_list),
}


def registered_routes() -> list[str]:
    out = subprocess.run([str(BIN / "bankhook-api"), "routes"], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    routes = [line.strip() for line in out.splitlines() if line.strip()]
    assert routes and all(len(r.split(" ")) == 2 for r in routes), out
    return routes


def test_every_route_has_a_case():
    routes = set(registered_routes())
    missing = sorted(routes - set(CASES))
    stale = sorted(set(CASES) - routes)
    problems = [f"route without an isolation case: {r}" for r in missing]
    problems += [f"isolation case for a route that no longer exists: {r}" for r in stale]
    assert not problems, "\n".join(problems)
    for route, case in CASES.items():
        assert case.kind in ("attack", "list", "own", "public"), route
        assert case.run is not None or case.kind == "public", route
        assert case.reason or case.kind in ("attack", "list"), \
            f"{route}: a {case.kind} case must say why"


@pytest.mark.parametrize("route", sorted(CASES))
def test_isolation(world, route):
    case = CASES[route]
    before = world.b_state()
    created: list[str] = []
    if case.kind == "own":
        created = case.run(world)
    elif case.run is not None:
        case.run(world)
    after = world.b_state()
    changed = [name for name in before if before[name] != after[name]]
    assert not changed, f"{route}: B's {', '.join(changed)} changed"
    if case.kind == "own":
        assert created
        for sub_id in created:
            owner = world.stack.sql(f"SELECT client_id FROM subscriptions WHERE id = '{sub_id}'")
            assert owner == world.a.client_id, (sub_id, owner)
            listed = world.b.native("GET", "/v1/endpoints").json()["data"]
            assert sub_id not in json.dumps(listed)
            world.admin.expect("DELETE", f"/v1/endpoints/{sub_id}", 204)


def test_the_state_check_sees_a_change_by_b(world):
    """The before/after digest is not blind: B changing its own endpoint
    (which it may) changes it."""
    before = world.b_state()
    r = world.b.native("PATCH", f"/v1/endpoints/{world.ids['endpoint']}",
                       json={"description": unique("changed")})
    assert r.status_code == 200, r.text
    after = world.b_state()
    assert [n for n in before if before[n] != after[n]] == ["subscriptions"]


def test_a_missing_case_is_named(monkeypatch):
    """The coverage check fails, naming the route, when a case is missing
    or stale."""
    import test_isolation as me
    routes = registered_routes()
    fewer = {k: v for k, v in CASES.items() if k != routes[-1]}
    fewer["GET /v1/gone"] = Case("attack", lambda w: None)
    monkeypatch.setattr(me, "CASES", fewer)
    with pytest.raises(AssertionError) as err:
        me.test_every_route_has_a_case()
    assert f"route without an isolation case: {routes[-1]}" in str(err.value)
    assert "isolation case for a route that no longer exists: GET /v1/gone" in str(err.value)


# ------------------------------------------------------------------ delivery (issue 12)


def payment_event(acquirer: str, merchant: str) -> dict:
    return {"id": unique("iso-pay"), "type": "payment.updated",
            "occurred_at": "2026-11-25T10:15:00Z",
            "data": {"acquirer_id": acquirer, "merchant_id": merchant, "acceptor_id": "11",
                     "terminal_id": "22", "payment_id": unique("pay"),
                     "payment_method": "CARD", "status": "SETTLED", "amount": "12.34",
                     "currency": "PLN"}}


def a_deliveries_of(w: World, event_ids: list[str]) -> str:
    quoted = ",".join(f"'{e}'" for e in event_ids)
    return w.stack.sql("SELECT count(*) FROM deliveries d JOIN subscriptions s"
                       " ON s.id = d.subscription_id"
                       f" WHERE s.client_id = '{w.a.client_id}' AND d.event_id IN ({quoted})")


def test_no_dialect_delivers_b_events_to_a(world):
    """A asks for everything in every dialect it can; B's transaction and
    payment reach B's subscriptions and none of A's, while A's own events
    reach each of A's. Also rows naming B's account and merchant directly
    (as stored before grants existed) receive nothing: the worker checks the
    grant at matching, not only the API at registration."""
    w, a, rx = world, world.a, Receiver()
    a_bank, a_account, a_merchant = unique("iso-a-bank"), str(uuid.uuid4()), "6" * 10
    w.admin.expect("PUT", f"/v1/banks/{a_bank}", 201, json={"name": "IsoA", "code": "IA"})
    w.admin.grant(a.client_id, bank_id=a_bank)
    w.admin.grant(a.client_id, acquirer_id=a.acquirer_id, merchant_id=a_merchant)
    w.admin.expect("POST", f"/v1/users/{a.user_id}/entitlements", 201,
                   json={"role": "CanCreateWebhook", "bank_id": a_bank})
    w.admin.expect("POST", f"/v1/users/{a.user_id}/entitlements", 201,
                   json={"role": "CanCreateSystemAccountNotificationWebhook", "bank_id": ""})
    created: list[str] = []
    try:
        r = a.native("POST", "/v1/endpoints", json={"url": rx.url("/a-native")})
        assert r.status_code == 201, r.text
        created.append(r.json()["id"])
        r = a.banksocket("POST", "/webhooks", json={"title": "a", "endpoint": rx.url("/a-bs"),
                                                    "event": "NEW_TRANSACTION",
                                                    "account": "all"})
        assert r.status_code == 200, r.text
        created.append(w.stack.sql("SELECT id FROM subscriptions"
                                   f" WHERE seq = {int(r.json()['webhook']['id'])}"))
        r = a.obp("POST", "v4.0.0", f"/{NOTIFY}", json={
            "url": rx.url("/a-obp-system"), "http_method": "POST", "http_protocol": "HTTP/1.1"})
        assert r.status_code == 201, r.text
        created.append(r.json()["webhook_id"])
        for path in ("/a-obp-own", "/a-obp-legacy"):
            r = a.obp("POST", "v4.0.0", f"/banks/{a_bank}/account-web-hooks", json={
                "account_id": a_account, "trigger_name": "OnBalanceChange",
                "url": rx.url(path), "http_method": "POST", "http_protocol": "HTTP/1.1",
                "is_active": "true"})
            assert r.status_code == 201, r.text
            created.append(r.json()["account_webhook_id"])
        legacy_obp = created[-1]
        acq_path = ACQ_CONFIG.format(acquirer=a.acquirer_id, merchant=a_merchant)
        codes = {}
        for path in ("/a-acq-own", "/a-acq-legacy"):
            codes[path] = unique("acode")[:30]
            r = a.acquirer("POST", acq_path, json=acq_config(codes[path], "INS", rx.url(path)))
            assert r.json()["transactionStatus"] == "ACTC", r.text
        legacy_acq = w.stack.sql("SELECT id FROM subscriptions WHERE client_id ="
                                 f" '{a.client_id}' AND options->>'notificationConfigurationCode'"
                                 f" = '{codes['/a-acq-legacy']}'")
        created.append(legacy_acq)
        created.append(w.stack.sql("SELECT id FROM subscriptions WHERE client_id ="
                                   f" '{a.client_id}' AND options->>'notificationConfigurationCode'"
                                   f" = '{codes['/a-acq-own']}'"))
        # the rows as they could have been stored before grants: B's account and merchant
        w.stack.sql(f"UPDATE subscriptions SET bank_id = '{w.bank}', account_id ="
                    f" '{w.b_account}' WHERE id = '{legacy_obp}'")
        w.stack.sql("UPDATE subscriptions SET options = jsonb_set(options, '{merchantId}',"
                    f" '\"{w.b.merchant_id}\"') WHERE id = '{legacy_acq}'")

        before_b = len(rx.got())  # nothing of B's goes to this receiver anyway
        assert before_b == 0
        b_tx, b_pay = unique("iso-b-tx"), payment_event(w.b.acquirer_id, w.b.merchant_id)
        a_tx, a_pay = unique("iso-a-tx"), payment_event(a.acquirer_id, a_merchant)
        w.admin.expect("POST", "/v1/events", 202, json=make_event(w.bank, w.b_account,
                                                                  event_id=b_tx))
        w.admin.expect("POST", "/v1/events", 202, json=b_pay)
        w.admin.expect("POST", "/v1/events", 202, json=make_event(a_bank, a_account,
                                                                  event_id=a_tx))
        w.admin.expect("POST", "/v1/events", 202, json=a_pay)
        # B's own subscriptions get B's transaction (B's endpoint has a bank filter)
        wait_until(lambda: w.stack.sql(
            "SELECT count(*) FROM deliveries WHERE event_id ="
            f" '{b_tx}' AND client_id = '{w.b.client_id}'") != "0", 60, "B's delivery")
        wait_until(lambda: w.stack.sql(
            "SELECT count(*) FROM deliveries WHERE event_id ="
            f" '{b_pay['id']}' AND client_id = '{w.b.client_id}'") != "0", 60,
            "B's payment delivery")
        # each of A's (live) subscriptions gets A's own events
        wants = {"/a-native": 2, "/a-bs": 1, "/a-obp-system": 1, "/a-obp-own": 1,
                 "/a-acq-own": 1}
        wait_until(lambda: all(len(rx.got(p)) >= n for p, n in wants.items()), 60,
                   "A's own events at each of A's subscriptions")
        assert rx.event_ids("/a-native") == {a_tx, a_pay["id"]}
        assert a_deliveries_of(w, [b_tx, b_pay["id"]]) == "0"
        for p, n in wants.items():
            assert len(rx.got(p)) == n, (p, len(rx.got(p)))
        assert rx.got("/a-obp-legacy") == [] and rx.got("/a-acq-legacy") == []
        for req in rx.got():
            assert w.b_account.encode() not in req.body, (req.path, req.body[:300])
    finally:
        for sub_id in created:
            w.admin.request("DELETE", f"/v1/endpoints/{sub_id}")
        rx.close()


def test_revoking_a_grant_stops_deliveries_within_a_second(world):
    """B's grant revoked: B's next event reaches none of B's subscriptions
    (the worker reloaded within the second, as for a subscription change);
    granted again, the next one arrives."""
    w, rx = world, Receiver()
    ep = w.b.native("POST", "/v1/endpoints", json={"url": rx.url("/b-revoke"),
                                                   "filter": {"bank_id": w.bank}})
    assert ep.status_code == 201, ep.text
    try:
        first = unique("iso-rv")
        w.admin.expect("POST", "/v1/events", 202,
                       json=make_event(w.bank, w.b_account, event_id=first))
        wait_until(lambda: first in rx.event_ids("/b-revoke"), 60, "the granted event")
        w.admin.expect("DELETE", f"/v1/clients/{w.b.client_id}/grants/{w.ids['grant']}", 204)
        time.sleep(1.5)
        revoked = unique("iso-rv")
        w.admin.expect("POST", "/v1/events", 202,
                       json=make_event(w.bank, w.b_account, event_id=revoked))
        # stored (so the worker saw it), with no delivery to B
        wait_until(lambda: w.stack.sql(f"SELECT count(*) FROM events WHERE id = '{revoked}'")
                   == "1", 60, "the event after the revocation to be stored")
        assert w.stack.sql(f"SELECT count(*) FROM deliveries WHERE event_id = '{revoked}'"
                           f" AND client_id = '{w.b.client_id}'") == "0"
        # a subscription whose filter only the revoked grant covered is now refused
        # (B's consent still grants one other account at the bank)
        r = w.b.native("POST", "/v1/endpoints", json={"url": rx.url("/x"), "filter": {
            "bank_id": w.bank, "account_id": w.b_account}})
        assert r.status_code == 403, r.text
        assert r.json()["error"]["message"].startswith("filter.account_id:"), r.text
    finally:
        w.ids["grant"] = w.admin.grant(w.b.client_id, bank_id=w.bank)["id"]
        again = unique("iso-rv")
        w.admin.expect("POST", "/v1/events", 202,
                       json=make_event(w.bank, w.b_account, event_id=again))
        wait_until(lambda: again in rx.event_ids("/b-revoke"), 60, "the event after re-grant")
        assert revoked not in rx.event_ids("/b-revoke")
        w.admin.request("DELETE", f"/v1/endpoints/{ep.json()['id']}")
        rx.close()
