"""The card acquirer dialect (PRODUCT.md 6.4, issue 6): each mandatory
header missing is RJCT naming it with TPP-Request-ID echoed; each path,
query and body field out of type, length or enum is RJCT naming it and
writes nothing; INS, DEL of one payment method, DEL of the last; the list
by acquirer and merchant (and acceptor, terminal); the receiver decrypts
the AES-256-GCM notification with the key; a BLIK payment does not reach a
CARD-only configuration."""

from __future__ import annotations

import base64
import copy
import json
import random
import uuid

import pytest
import requests
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from conftest import unique, wait_until
from webhooks import verify

DELIVERY_TIMEOUT = 30
VERSION = "v1"
KEY = "0123456789abcdef0123456789ABCDEF"


def digits(n: int) -> str:
    return str(random.randint(10 ** (n - 1), 10 ** n - 1))


class Acquirer:
    """One acquirer client: its token, the five headers every call needs, and
    a data grant of its acquirer (every merchant of it; issue 12)."""

    def __init__(self, stack, admin):
        self.base = f"{stack.api_url}/acquirer/{VERSION}"
        self.api_url = stack.api_url
        self.client_id = admin.create_client()["id"]
        user = admin.create_user(self.client_id)
        self.token = admin.create_token(user["id"])["token"]
        self.acquirer, self.merchant = digits(25), digits(10)
        admin.grant(self.client_id, acquirer_id=self.acquirer)

    def headers(self, **over) -> dict[str, str]:
        h = {"Authorization": f"Bearer {self.token}", "x-ibm-client-id": self.client_id,
             "TPP-Request-ID": str(uuid.uuid4()), "User-ID": "u-1",
             "User-Organization-ID": "org-1"}
        h.update(over)
        return {k: v for k, v in h.items() if v is not None}

    def config_path(self, acquirer: str | None = None, merchant: str | None = None) -> str:
        return (f"/acquirers/{acquirer or self.acquirer}/merchants/{merchant or self.merchant}"
                "/terminal/webhook")

    def call(self, method: str, path: str, headers: dict | None = None,
             **kw) -> requests.Response:
        return requests.request(method, self.base + path, timeout=15,
                                headers=self.headers() if headers is None else headers, **kw)

    def ok(self, method: str, path: str, **kw) -> dict:
        r = self.call(method, path, **kw)
        body = r.json()
        assert r.status_code == 200 and body["transactionStatus"] == "ACTC", r.text
        assert body["returnStatus"]["statusCode"] == "000", body
        return body

    def put(self, code: str, methods: list[str], op: str = "INS", url: str = "http://127.0.0.1:9/x",
            params: dict | None = None, method: str = "POST", **kw) -> dict:
        return self.ok(method, self.config_path(**kw), params=params,
                       json=config_body(code, methods, op, url))

    def list(self, **body) -> list[dict]:
        body.setdefault("acquirerId", self.acquirer)
        body.setdefault("merchantId", self.merchant)
        return self.ok("POST", "/webhooks", json=body)["webhooks"]


def config_body(code: str, methods: list[str], op: str = "INS",
                url: str = "http://127.0.0.1:9/x") -> dict:
    return {"notificationConfigurationCode": code, "requestOperationType": op,
            "paymentMethods": [{"paymentMethodNotificationCode": m} for m in methods],
            "channelTypeNotification": {"notificationType": "URL", "value": url, "security": {
                "key": KEY, "supportEmail": "ops@example.com", "algorithm": "AES-256-GCM"}}}


def rjct(r: requests.Response, status: int, names: str) -> dict:
    """Asserts an RJCT with that status whose description names the field."""
    assert r.status_code == status, f"{r.status_code} {r.text[:500]}"
    body = r.json()
    assert body["transactionStatus"] == "RJCT", body
    rs = body["returnStatus"]
    assert set(rs) == {"statusCode", "statusMsg", "statusDescription"}, body
    assert rs["statusCode"] != "000" and len(rs["statusCode"]) == 3, body
    assert names in rs["statusDescription"], body
    return rs


@pytest.fixture
def acq(stack, admin):
    return Acquirer(stack, admin)


# ------------------------------------------------------------------ headers


MANDATORY = ["Authorization", "x-ibm-client-id", "TPP-Request-ID", "User-ID",
             "User-Organization-ID"]


@pytest.mark.parametrize("call", ["create", "update", "list"])
@pytest.mark.parametrize("missing", MANDATORY)
def test_each_mandatory_header_missing_is_rjct_naming_it(acq, missing, call):
    headers = acq.headers(**{missing: None})
    method, path, body = {
        "create": ("POST", acq.config_path(), config_body("c1", ["CARD"])),
        "update": ("PUT", acq.config_path(), config_body("c1", ["CARD"])),
        "list": ("POST", "/webhooks", {"acquirerId": acq.acquirer, "merchantId": acq.merchant}),
    }[call]
    r = acq.call(method, path, headers=headers, json=body)
    rs = rjct(r, 401 if missing == "Authorization" else 400, missing)
    assert rs["statusCode"] == ("103" if missing == "Authorization" else "101")
    if missing == "TPP-Request-ID":
        assert "TPP-Request-ID" not in r.headers
    else:
        assert r.headers["TPP-Request-ID"] == headers["TPP-Request-ID"]
    assert acq.list() == []


def test_header_values(stack, admin, acq):
    path, body = acq.config_path(), config_body("c1", ["CARD"])
    r = acq.call("POST", path, headers=acq.headers(**{"TPP-Request-ID": "not-a-uuid"}), json=body)
    assert rjct(r, 400, "TPP-Request-ID")["statusCode"] == "102"
    assert r.headers["TPP-Request-ID"] == "not-a-uuid"
    h = acq.headers(Authorization="Bearer bh_unknown")
    r = acq.call("POST", path, headers=h, json=body)
    assert rjct(r, 401, "Authorization")["statusCode"] == "103"
    assert r.headers["TPP-Request-ID"] == h["TPP-Request-ID"]
    r = acq.call("POST", path, headers=acq.headers(Authorization=f"Basic {acq.token}"), json=body)
    rjct(r, 401, "Authorization")
    # x-ibm-client-id must be the token's own client
    other = Acquirer(stack, admin)
    r = acq.call("POST", path, headers=acq.headers(**{"x-ibm-client-id": other.client_id}),
                 json=body)
    assert rjct(r, 401, "x-ibm-client-id")["statusCode"] == "104"
    # the server's own errors come in the same envelope, echoed
    h = acq.headers()
    r = acq.call("POST", path, headers={**h, "Content-Type": "application/json"}, data="{")
    rjct(r, 400, "JSON")
    assert r.headers["TPP-Request-ID"] == h["TPP-Request-ID"]
    r = acq.call("POST", path, headers={**h, "Content-Type": "text/plain"}, data="x")
    assert rjct(r, 415, "Content-Type")["statusCode"] == "305"
    r = acq.call("DELETE", path, headers=h)
    assert rjct(r, 405, "method")["statusCode"] == "405"
    r = acq.call("GET", "/no/such/thing", headers=h)
    assert rjct(r, 404, "path")["statusCode"] == "404"
    assert acq.list() == []


# ------------------------------------------------------------------ fields


def set_in(body: dict, path: list, value) -> dict:
    out = copy.deepcopy(body)
    node = out
    for k in path[:-1]:
        node = node[k]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


DELETE = object()
SEC = ["channelTypeNotification", "security"]
CH = ["channelTypeNotification"]
BODY_CASES = [
    # (body path, value, name in the description, statusCode)
    (["notificationConfigurationCode"], DELETE, "notificationConfigurationCode", "302"),
    (["notificationConfigurationCode"], "x" * 36, "notificationConfigurationCode", "303"),
    (["notificationConfigurationCode"], 42, "notificationConfigurationCode", "303"),
    (["notificationConfigurationCode"], "", "notificationConfigurationCode", "303"),
    (["requestOperationType"], DELETE, "requestOperationType", "302"),
    (["requestOperationType"], "UPD", "requestOperationType", "304"),
    (["requestOperationType"], "INSERT", "requestOperationType", "303"),
    (["paymentMethods"], DELETE, "paymentMethods", "302"),
    (["paymentMethods"], "CARD", "paymentMethods", "303"),
    (["paymentMethods"], [], "paymentMethods", "303"),
    (["paymentMethods"], ["CARD"], "paymentMethods[0]", "303"),
    (["paymentMethods"], [{"paymentMethodNotificationCode": "VISA"}],
     "paymentMethods[0].paymentMethodNotificationCode", "304"),
    (["paymentMethods"], [{"paymentMethodNotificationCode": "CARD"},
                          {"paymentMethodNotificationCode": "X" * 16}],
     "paymentMethods[1].paymentMethodNotificationCode", "303"),
    (["paymentMethods"], [{"code": "CARD"}], "paymentMethods[0].code", "303"),
    (["channelTypeNotification"], DELETE, "channelTypeNotification", "302"),
    (["channelTypeNotification"], "URL", "channelTypeNotification", "303"),
    (CH + ["notificationType"], "EMAIL", "channelTypeNotification.notificationType", "304"),
    (CH + ["notificationType"], "URLXXX", "channelTypeNotification.notificationType", "303"),
    (CH + ["value"], DELETE, "channelTypeNotification.value", "302"),
    (CH + ["value"], "http://127.0.0.1/" + "x" * 2040, "channelTypeNotification.value", "303"),
    (CH + ["value"], "mailto:ops@example.com", "channelTypeNotification.value", "303"),
    (CH + ["security"], DELETE, "channelTypeNotification.security", "302"),
    (SEC + ["key"], DELETE, "channelTypeNotification.security.key", "302"),
    (SEC + ["key"], KEY[:31], "channelTypeNotification.security.key", "303"),
    (SEC + ["key"], KEY + "0", "channelTypeNotification.security.key", "303"),
    (SEC + ["key"], "é" * 32, "channelTypeNotification.security.key", "303"),
    (SEC + ["supportEmail"], "a@" + "b" * 255, "channelTypeNotification.security.supportEmail",
     "303"),
    (SEC + ["supportEmail"], "no-at-sign", "channelTypeNotification.security.supportEmail",
     "303"),
    (SEC + ["algorithm"], "AES-128-CBC", "channelTypeNotification.security.algorithm", "304"),
    (SEC + ["algorithm"], "A" * 71, "channelTypeNotification.security.algorithm", "303"),
    (["extra"], 1, "extra", "303"),
    # Found by fuzz_acquirer / fuzz_obp: an unknown name cut at 64 bytes mid-character,
    # or a non-ASCII byte of a URL host, in the description was a 500 (invalid UTF-8).
    (["extra" + "é" * 40], 1, "extra", "303"),
    (CH + ["value"], "http://exämple.com/x", "channelTypeNotification.value", "303"),
]


@pytest.mark.parametrize("case", BODY_CASES, ids=[f"{'.'.join(c[0])}={str(c[1])[:20]}"
                                                  for c in BODY_CASES])
def test_each_body_field_out_of_type_length_or_enum(acq, case):
    path, value, name, code = case
    body = set_in(config_body(unique("cfg")[:35], ["CARD"]), path, value)
    for method in ("POST", "PUT"):
        r = acq.call(method, acq.config_path(), json=body)
        assert rjct(r, 400, name)["statusCode"] == code
    assert acq.list() == []


PATH_CASES = [
    # (acquirer-id, merchant-id, query, name in the description, statusCode)
    ("1" * 26, None, {}, "acquirer-id", "201"),
    ("12a", None, {}, "acquirer-id", "201"),
    (None, "1" * 11, {}, "merchant-id", "201"),
    (None, "-1", {}, "merchant-id", "201"),
    (None, None, {"acceptorId": "1" * 11}, "acceptorId", "202"),
    (None, None, {"acceptorId": "abc"}, "acceptorId", "202"),
    (None, None, {"terminalId": "1" * 11}, "terminalId", "202"),
    (None, None, {"terminalId": ""}, "terminalId", "202"),
]


@pytest.mark.parametrize("case", PATH_CASES, ids=[f"{c[3]}-{i}" for i, c in enumerate(PATH_CASES)])
def test_each_path_and_query_field_out_of_type_or_length(acq, case):
    acquirer, merchant, query, name, code = case
    for method in ("POST", "PUT"):
        r = acq.call(method, acq.config_path(acquirer, merchant), params=query,
                     json=config_body("c1", ["CARD"]))
        assert rjct(r, 400, name)["statusCode"] == code
    assert acq.list() == []


def test_version_and_list_body_fields(acq):
    r = acq.call("POST", "/webhooks", json={"acquirerId": acq.acquirer, "merchantId": acq.merchant})
    assert r.status_code == 200
    r = requests.post(acq.base.replace(f"/{VERSION}", "/v1!") + "/webhooks", headers=acq.headers(),
                      timeout=15,
                      json={"acquirerId": acq.acquirer, "merchantId": acq.merchant})
    assert rjct(r, 400, "version-id")["statusCode"] == "201"
    good = {"acquirerId": acq.acquirer, "merchantId": acq.merchant}
    for field, value, code in (("acquirerId", DELETE, "302"), ("acquirerId", "1" * 26, "303"),
                               ("merchantId", DELETE, "302"), ("merchantId", "12345678901", "303"),
                               ("merchantId", 123, "303"), ("acceptorId", "x1", "303"),
                               ("terminalId", "1" * 11, "303"), ("other", "1", "303")):
        body = set_in(good, [field], value) if value is not DELETE else \
            {k: v for k, v in good.items() if k != field}
        r = acq.call("POST", "/webhooks", json=body)
        assert rjct(r, 400, field)["statusCode"] == code


# ------------------------------------------------------------------ INS / DEL / list


def test_ins_then_del_one_method_then_del_the_last(stack, acq):
    code = "cfg-" + uuid.uuid4().hex[:20]
    acq.put(code, ["CARD"])
    [hook] = acq.list()
    assert hook["notificationConfigurationCode"] == code
    assert hook["paymentMethods"] == [{"paymentMethodNotificationCode": "CARD"}]
    assert hook["channelTypeNotification"] == {
        "notificationType": "URL", "value": "http://127.0.0.1:9/x",
        "security": {"key": KEY, "supportEmail": "ops@example.com", "algorithm": "AES-256-GCM"}}
    # INS adds (PUT behaves as POST) and sets the channel
    acq.put(code, ["BLIK", "CARD"], url="http://127.0.0.1:9/y", method="PUT")
    [hook] = acq.list()
    assert [m["paymentMethodNotificationCode"] for m in hook["paymentMethods"]] == ["CARD", "BLIK"]
    assert hook["channelTypeNotification"]["value"] == "http://127.0.0.1:9/y"
    # the native API shows it to its owner, with its kind
    r = requests.get(f"{stack.api_url}/v1/endpoints", timeout=15,
                     headers={"Authorization": f"Bearer {acq.token}"})
    [ep] = r.json()["data"]
    assert (ep["kind"], ep["url"]) == ("acquirer", "http://127.0.0.1:9/y")
    # ... but not the AES key: that stays in the acquirer dialect's own view
    assert ep["options"]["security"]["key"] == "[redacted]"
    assert KEY not in r.text
    # DEL of one method keeps the configuration and its channel
    acq.put(code, ["CARD"], op="DEL", url="http://127.0.0.1:9/ignored")
    [hook] = acq.list()
    assert hook["paymentMethods"] == [{"paymentMethodNotificationCode": "BLIK"}]
    assert hook["channelTypeNotification"]["value"] == "http://127.0.0.1:9/y"
    # DEL of the last removes it
    body = acq.put(code, ["BLIK"], op="DEL")
    assert "deleted" in body["returnStatus"]["statusDescription"]
    assert acq.list() == []
    r = requests.get(f"{stack.api_url}/v1/endpoints", timeout=15,
                     headers={"Authorization": f"Bearer {acq.token}"})
    assert r.json()["data"] == []
    # DEL of what does not exist
    r = acq.call("POST", acq.config_path(), json=config_body(code, ["BLIK"], "DEL"))
    assert rjct(r, 404, "notificationConfigurationCode")["statusCode"] == "401"


def test_code_is_bound_to_its_merchant(acq):
    code = "cfg-" + uuid.uuid4().hex[:20]
    acq.put(code, ["CARD"])
    r = acq.call("POST", acq.config_path(merchant=digits(10)), json=config_body(code, ["BLIK"]))
    assert rjct(r, 409, "notificationConfigurationCode")["statusCode"] == "402"
    r = acq.call("POST", acq.config_path(), params={"terminalId": "5"},
                 json=config_body(code, ["BLIK"]))
    rjct(r, 409, "notificationConfigurationCode")
    [hook] = acq.list()
    assert hook["paymentMethods"] == [{"paymentMethodNotificationCode": "CARD"}]


def test_list_by_acquirer_merchant_acceptor_terminal(stack, admin, acq):
    acq.put("m-all", ["CARD"])
    acq.put("m-acc", ["CARD"], params={"acceptorId": "11"})
    acq.put("m-acc-term", ["CARD"], params={"acceptorId": "11", "terminalId": "22"})
    acq.put("m-term", ["CARD"], params={"terminalId": "22"})
    other_merchant = digits(10)
    acq.put("other-merchant", ["CARD"], merchant=other_merchant)

    def codes(**body):
        return sorted(h["notificationConfigurationCode"] for h in acq.list(**body))

    assert codes() == ["m-acc", "m-acc-term", "m-all", "m-term"]
    assert codes(acceptorId="11") == ["m-acc", "m-acc-term"]
    assert codes(acceptorId="11", terminalId="22") == ["m-acc-term"]
    assert codes(terminalId="22") == ["m-acc-term", "m-term"]
    assert codes(merchantId=other_merchant) == ["other-merchant"]
    assert codes(acquirerId=digits(25)) == []
    [hook] = acq.list(acceptorId="11", terminalId="22")
    assert (hook["acceptorId"], hook["terminalId"]) == ("11", "22")
    # another client with the same ids sees none of them, and may reuse a code
    other = Acquirer(stack, admin)
    other.acquirer, other.merchant = acq.acquirer, acq.merchant
    admin.grant(other.client_id, acquirer_id=acq.acquirer, merchant_id=acq.merchant)
    assert other.list() == []
    other.put("m-all", ["BLIK"])
    assert [h["paymentMethods"] for h in acq.list() if
            h["notificationConfigurationCode"] == "m-all"] == \
        [[{"paymentMethodNotificationCode": "CARD"}]]


# ------------------------------------------------------------------ delivery


def decrypt(envelope: dict, key: str) -> dict:
    iv, tag = base64.b64decode(envelope["iv"]), base64.b64decode(envelope["tag"])
    data = base64.b64decode(envelope["data"])
    assert len(iv) == 12 and len(tag) == 16
    return json.loads(AESGCM(key.encode()).decrypt(iv, data + tag, None))


def payment(acq: Acquirer, method: str, **over) -> dict:
    data = {"acquirer_id": acq.acquirer, "merchant_id": acq.merchant, "acceptor_id": "11",
            "terminal_id": "22", "payment_id": unique("pay"), "payment_method": method,
            "status": "SETTLED", "amount": "12.34", "currency": "PLN"}
    data.update(over)
    return {"id": unique("ev"), "type": "payment.updated", "occurred_at": "2026-11-25T10:15:00Z",
            "data": data}


def test_receiver_decrypts_and_blik_does_not_reach_card_only(stack, admin, acq, receiver):
    acq.put("card-only", ["CARD"], url=receiver.url("/card"))
    acq.put("blik", ["BLIK", "CARD"], url=receiver.url("/blik"),
            params={"acceptorId": "11", "terminalId": "22"})
    acq.put("other-terminal", ["CARD", "BLIK"], url=receiver.url("/t99"),
            params={"terminalId": "99"})

    card = payment(acq, "CARD")
    admin.expect("POST", "/v1/events", 202, json=card)
    wait_until(lambda: receiver.got("/card") and receiver.got("/blik"), DELIVERY_TIMEOUT,
               "the CARD payment at both configurations")
    got = receiver.got("/card")[0]
    env = got.json()
    assert set(env) == {"notificationConfigurationCode", "algorithm", "iv", "tag", "data"}
    assert (env["notificationConfigurationCode"], env["algorithm"]) == \
        ("card-only", "AES-256-GCM")
    note = decrypt(env, KEY)
    assert note == {"acquirerId": acq.acquirer, "merchantId": acq.merchant, "acceptorId": "11",
                    "terminalId": "22", "paymentId": card["data"]["payment_id"],
                    "paymentMethod": "CARD", "status": "SETTLED", "amount": "12.34",
                    "currency": "PLN", "eventId": card["id"],
                    "occurredAt": "2026-11-25T10:15:00.000Z"}
    # a tampered tag does not decrypt
    bad = dict(env, tag=base64.b64encode(b"\0" * 16).decode())
    with pytest.raises(Exception):
        decrypt(bad, KEY)
    # signed like every delivery
    r = requests.get(f"{stack.api_url}/v1/endpoints", timeout=15,
                     headers={"Authorization": f"Bearer {acq.token}"})
    ep_id = next(e["id"] for e in r.json()["data"] if e["url"] == receiver.url("/card"))
    ep = requests.get(f"{stack.api_url}/v1/endpoints/{ep_id}", timeout=15,
                      headers={"Authorization": f"Bearer {acq.token}"}).json()
    assert verify(ep["secret"], got.headers, got.body)

    blik = payment(acq, "BLIK")
    admin.expect("POST", "/v1/events", 202, json=blik)
    wait_until(lambda: len(receiver.got("/blik")) == 2, DELIVERY_TIMEOUT,
               "the BLIK payment at the BLIK configuration")
    assert decrypt(receiver.got("/blik")[1].json(), KEY)["paymentMethod"] == "BLIK"
    # the BLIK payment came after the CARD one on the same stack: the CARD-only
    # configuration has had time to get it and did not
    assert [decrypt(r.json(), KEY)["paymentMethod"] for r in receiver.got("/card")] == ["CARD"]
    assert not receiver.got("/t99")

    # in the native delivery log, succeeded
    r = requests.get(f"{stack.api_url}/v1/deliveries", params={"endpoint_id": ep_id}, timeout=15,
                     headers={"Authorization": f"Bearer {acq.token}"})
    assert [d["status"] for d in r.json()["data"]] == ["succeeded"]


def test_each_attempt_has_a_fresh_iv(stack, admin, acq, receiver):
    acq.put("retry", ["CARD"], url=receiver.url("/flaky"))
    receiver.plan("/flaky", [500, 200])
    admin.expect("POST", "/v1/events", 202, json=payment(acq, "CARD"))
    wait_until(lambda: len(receiver.got("/flaky")) == 2, DELIVERY_TIMEOUT, "the retry")
    first, second = (r.json() for r in receiver.got("/flaky"))
    assert first["iv"] != second["iv"]
    assert decrypt(first, KEY) == decrypt(second, KEY)


def test_another_clients_acquirer_or_merchant_is_refused(stack, admin, acq, receiver):
    """Issue 12: naming an acquirer (or a merchant) the client holds no
    grant of is RJCT 106 with 403, naming the field; nothing is stored. A
    merchant-level grant covers that merchant only."""
    victim = Acquirer(stack, admin)
    r = acq.call("POST", acq.config_path(acquirer=victim.acquirer, merchant=victim.merchant),
                 json=config_body("steal", ["CARD"], url=receiver.url("/steal")))
    body = r.json()
    assert r.status_code == 403 and body["transactionStatus"] == "RJCT", r.text
    assert body["returnStatus"]["statusCode"] == "106", body
    assert body["returnStatus"]["statusDescription"].startswith("merchant-id: "), body
    assert stack.sql("SELECT count(*) FROM subscriptions WHERE client_id ="
                     f" '{acq.client_id}' AND options->>'acquirerId' = '{victim.acquirer}'") == "0"

    shop = Acquirer(stack, admin)
    shop.acquirer = digits(25)
    admin.grant(shop.client_id, acquirer_id=shop.acquirer, merchant_id=shop.merchant)
    shop.put("mine", ["CARD"], url=receiver.url("/mine"))
    r = shop.call("PUT", shop.config_path(merchant=digits(10)),
                  json=config_body("sibling", ["CARD"]))
    assert r.status_code == 403 and r.json()["returnStatus"]["statusCode"] == "106", r.text
    # the victim's payment reaches none of them; the shop's own arrives
    theirs = payment(victim, "CARD")
    admin.expect("POST", "/v1/events", 202, json=theirs)
    admin.expect("POST", "/v1/events", 202, json=payment(shop, "CARD"))
    wait_until(lambda: receiver.got("/mine"), 30, "the shop's own payment")
    wait_until(lambda: stack.sql(f"SELECT count(*) FROM events WHERE id = '{theirs['id']}'")
               == "1", 30, "the victim's payment to be stored")
    assert stack.sql(f"SELECT count(*) FROM deliveries WHERE event_id = '{theirs['id']}'") == "0"
    assert not receiver.got("/steal")
