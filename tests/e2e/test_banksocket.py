"""The Banksocket dialect (PRODUCT.md 6.3, issue 6): create, list and
delete webhooks with integer ids and Banksocket's error envelope; a credit
reaches NEW_CREDIT and NEW_TRANSACTION webhooks but not NEW_DEBIT; the
account filter; the receiver recomputes the hash from the posted form and
the client's api_secret; deleting stops deliveries; another client's id is
404."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from urllib.parse import parse_qs

import pytest
import requests

from conftest import make_event, unique, wait_until
from webhooks import verify

DELIVERY_TIMEOUT = 30
BASE = "/banksocket/v1"
FORM_FIELDS = {"dc", "code", "amount", "balance", "currency", "description", "account_id",
               "account", "bank", "opponent_id", "opponent_iban", "hash"}


class Banksocket:
    """One Banksocket customer: a client, a user and its token, and a data
    grant of its own bank (the bank of the events it should receive)."""

    def __init__(self, stack, admin):
        self.base = stack.api_url + BASE
        self.api_url = stack.api_url
        client = admin.create_client()
        self.client_id, self.api_secret = client["id"], client["api_secret"]
        user = admin.create_user(self.client_id)
        self.token = admin.create_token(user["id"])["token"]
        self.bank = unique("bs-bank")
        admin.grant(self.client_id, bank_id=self.bank)

    def call(self, method: str, path: str, auth: str | None = "Authentication",
             **kw) -> requests.Response:
        headers = kw.pop("headers", {})
        if auth == "Authentication":
            headers["Authentication"] = self.token
        elif auth == "Bearer":
            headers["Authorization"] = f"Bearer {self.token}"
        return requests.request(method, self.base + path, headers=headers, timeout=15, **kw)

    def expect(self, method: str, path: str, status: int, **kw) -> dict:
        r = self.call(method, path, **kw)
        assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text[:500]}"
        return r.json()

    def create(self, endpoint: str, event: str, account="all", title: str = "test") -> dict:
        body = self.expect("POST", "/webhooks", 200, json={
            "title": title, "endpoint": endpoint, "event": event, "account": account})
        hook = body["webhook"]
        assert isinstance(hook["id"], int) and hook["endpoint"] == endpoint, body
        assert hook["title"] == title
        return hook

    def native(self, path: str) -> dict:
        r = requests.get(self.api_url + path, timeout=15,
                         headers={"Authorization": f"Bearer {self.token}"})
        assert r.status_code == 200, r.text
        return r.json()


def bs_error(r: requests.Response, status: int, contains: str | None = None) -> str:
    assert r.status_code == status, f"{r.status_code} {r.text[:500]}"
    body = r.json()
    assert set(body) == {"status", "message"} and body["status"] == "error", body
    if contains is not None:
        assert contains in body["message"], body
    return body["message"]


def expected_hash(f: dict[str, str], api_secret: str) -> str:
    """Banksocket's check, written from the seed: base64 of the lowercase
    hex SHA-256 of dc+code+amount+balance+currency+description+secret."""
    text = (f["dc"] + f["code"] + f["amount"] + f["balance"] + f["currency"] +
            f["description"] + api_secret)
    return base64.b64encode(hashlib.sha256(text.encode()).hexdigest().encode()).decode()


def form(received) -> dict[str, str]:
    assert received.headers["content-type"] == "application/x-www-form-urlencoded"
    parsed = parse_qs(received.body.decode(), keep_blank_values=True, strict_parsing=True)
    assert all(len(v) == 1 for v in parsed.values()), parsed
    return {k: v[0] for k, v in parsed.items()}


@pytest.fixture
def customer(stack, admin):
    c = Banksocket(stack, admin)
    yield c
    # "all" webhooks would receive every later test's transactions
    for hook in c.expect("GET", "/webhooks", 200)["webhooks"]:
        c.call("DELETE", f"/webhooks/{hook['id']}")


def post_event(admin, ev: dict) -> str:
    return admin.expect("POST", "/v1/events", 202, json=ev)["id"]


# ------------------------------------------------------------------ the API


def test_create_list_delete_and_scoping(stack, admin, customer, receiver):
    a = customer.create(receiver.url("/a"), "NEW_TRANSACTION", title="TR işbank api test")
    b = customer.create(receiver.url("/b"), "NEW_DEBIT", account="69")
    assert b["id"] > a["id"]
    # Bearer works as well as Authentication
    listed = customer.expect("GET", "/webhooks", 200, auth="Bearer")["webhooks"]
    assert [(h["id"], h["endpoint"], h["title"], h["event"], h["account"]) for h in listed] == [
        (a["id"], receiver.url("/a"), "TR işbank api test", "NEW_TRANSACTION", "all"),
        (b["id"], receiver.url("/b"), "test", "NEW_DEBIT", "69")]
    # the native API lists them with their kind
    kinds = {e["url"]: e["kind"] for e in customer.native("/v1/endpoints")["data"]}
    assert kinds == {receiver.url("/a"): "banksocket", receiver.url("/b"): "banksocket"}

    # another client sees none of them and cannot delete them
    other = Banksocket(stack, admin)
    assert other.expect("GET", "/webhooks", 200) == {"webhooks": []}
    bs_error(other.call("DELETE", f"/webhooks/{a['id']}"), 404)
    assert len(customer.expect("GET", "/webhooks", 200)["webhooks"]) == 2

    assert customer.expect("DELETE", f"/webhooks/{a['id']}", 200) == {"status": "success"}
    bs_error(customer.call("DELETE", f"/webhooks/{a['id']}"), 404)
    bs_error(customer.call("DELETE", "/webhooks/not-a-number"), 404)
    bs_error(customer.call("DELETE", "/webhooks/99999999999"), 404)
    assert [h["id"] for h in customer.expect("GET", "/webhooks", 200)["webhooks"]] == [b["id"]]


def test_authentication_and_validation_errors(stack, customer, receiver):
    good = {"title": "t", "endpoint": receiver.url(), "event": "NEW_CREDIT", "account": "all"}
    bs_error(customer.call("POST", "/webhooks", auth=None, json=good), 401, "Authentication")
    bs_error(customer.call("GET", "/webhooks", auth=None,
                           headers={"Authentication": "bh_nope"}), 401)
    for field in good:
        body = {k: v for k, v in good.items() if k != field}
        bs_error(customer.call("POST", "/webhooks", json=body), 400, field)
    for field, value in (("event", "NEW_REFUND"), ("endpoint", "ftp://x"), ("title", 5),
                         ("title", "x" * 201), ("account", ""), ("account", ["1"])):
        bs_error(customer.call("POST", "/webhooks", json={**good, field: value}), 400, field)
    bs_error(customer.call("POST", "/webhooks", data="{", headers={
        "Content-Type": "application/json"}), 400)
    bs_error(customer.call("POST", "/webhooks", data="title=x", headers={
        "Content-Type": "text/plain"}), 415)
    bs_error(customer.call("PATCH", "/webhooks"), 405)
    bs_error(customer.call("GET", "/nothing-here"), 404)
    # an integer account id is accepted and shown as text
    hook = customer.create(receiver.url(), "NEW_CREDIT", account=69)
    assert hook["account"] == "69"
    assert customer.expect("GET", "/webhooks", 200)["webhooks"][0]["account"] == "69"


# ------------------------------------------------------------------ delivery


def test_credit_fires_by_direction_and_account_and_hash_verifies(stack, admin, customer,
                                                                 receiver):
    bank = customer.bank
    account, other_account = str(uuid.uuid4()), str(uuid.uuid4())
    hooks = {
        "credit": customer.create(receiver.url("/credit"), "NEW_CREDIT"),
        "all": customer.create(receiver.url("/all"), "NEW_TRANSACTION"),
        "debit": customer.create(receiver.url("/debit"), "NEW_DEBIT"),
        "mine": customer.create(receiver.url("/mine"), "NEW_TRANSACTION", account=account),
        "other": customer.create(receiver.url("/other"), "NEW_TRANSACTION",
                                 account=other_account),
    }

    def mine(path):  # "all" webhooks see other tests' transactions too
        return [r for r in receiver.got(path) if form(r)["account_id"] == account]

    credit = make_event(bank, account, amount="100")
    credit["data"].update(balance="18100.5", description="SN:276689 TEST & ÇÖ/2019",
                          account_name="Kadıköy TL Hesabı", bank_name="Türkiye İş Bankası")
    post_event(admin, credit)
    for path in ("/credit", "/all", "/mine"):
        wait_until(lambda: mine(path), DELIVERY_TIMEOUT, f"the credit at {path}")

    got = mine("/credit")[0]
    f = form(got)
    assert set(f) == FORM_FIELDS, f
    assert (f["dc"], f["code"], f["amount"], f["balance"], f["currency"]) == \
        ("Credit", "EFT", "100.00", "18100.50", "EUR")
    assert (f["description"], f["account"], f["bank"]) == \
        ("SN:276689 TEST & ÇÖ/2019", "Kadıköy TL Hesabı", "Türkiye İş Bankası")
    assert (f["opponent_id"], f["opponent_iban"]) == ("c1", "DE89370400440532013000")
    # the receiver's own check with the client's api_secret
    assert f["hash"] == expected_hash(f, customer.api_secret)
    assert f["hash"] != expected_hash(f, "wrong-secret")
    # and Standard Webhooks headers like every delivery
    endpoint = customer.native("/v1/endpoints/" + next(
        e["id"] for e in customer.native("/v1/endpoints")["data"]
        if e["url"] == receiver.url("/credit")))
    assert verify(endpoint["secret"], got.headers, got.body)

    # a debit afterwards: once NEW_DEBIT has it, the credit has provably not gone there
    debit = make_event(bank, account, amount="-42.5")
    debit["data"].update(dc="debit", balance="-7.1")
    post_event(admin, debit)
    wait_until(lambda: mine("/debit"), DELIVERY_TIMEOUT, "the debit at /debit")
    wait_until(lambda: len(mine("/all")) == 2, DELIVERY_TIMEOUT, "both at /all")
    debits = [form(r) for r in mine("/debit")]
    assert [(d["dc"], d["amount"], d["balance"]) for d in debits] == [("Debit", "42.50", "-7.10")]
    assert debits[0]["hash"] == expected_hash(debits[0], customer.api_secret)
    assert [form(r)["dc"] for r in mine("/credit")] == ["Credit"]
    assert not receiver.got("/other")

    # the delivery log has them, succeeded
    log = customer.native(f"/v1/deliveries?endpoint_id={endpoint['id']}")["data"]
    assert [d["status"] for d in log] == ["succeeded"]


def test_failed_attempts_are_retried(stack, admin, customer, receiver):
    account = str(uuid.uuid4())
    customer.create(receiver.url("/flaky"), "NEW_TRANSACTION", account=account)
    receiver.plan("/flaky", [500, 200])
    post_event(admin, make_event(customer.bank, account))
    wait_until(lambda: len(receiver.got("/flaky")) == 2, DELIVERY_TIMEOUT, "the retry")
    first, second = receiver.got("/flaky")
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    # the hash is the same on every attempt: it covers the fields, not the attempt
    assert form(first)["hash"] == form(second)["hash"]


def test_deleting_stops_deliveries(stack, admin, customer, receiver):
    bank, account = customer.bank, str(uuid.uuid4())
    gone = customer.create(receiver.url("/gone"), "NEW_TRANSACTION", account=account)
    kept = customer.create(receiver.url("/kept"), "NEW_TRANSACTION", account=account)
    post_event(admin, make_event(bank, account))
    wait_until(lambda: receiver.got("/gone") and receiver.got("/kept"), DELIVERY_TIMEOUT,
               "the first event at both")
    assert customer.expect("DELETE", f"/webhooks/{gone['id']}", 200) == {"status": "success"}
    time.sleep(0.5)  # workers reload subscriptions on their next batch
    post_event(admin, make_event(bank, account))
    wait_until(lambda: len(receiver.got("/kept")) == 2, DELIVERY_TIMEOUT,
               "the second event at the kept webhook")
    assert len(receiver.got("/gone")) == 1
    assert [h["id"] for h in customer.expect("GET", "/webhooks", 200)["webhooks"]] == \
        [kept["id"]]


def test_all_receives_only_what_the_client_is_granted(stack, admin, customer, receiver):
    """"account": "all" is all the client is entitled to (issue 12): a
    transaction at a bank another client holds never reaches it."""
    customer.create(receiver.url("/all"), "NEW_TRANSACTION")
    foreign_bank = unique("bs-foreign")
    theirs = post_event(admin, make_event(foreign_bank, str(uuid.uuid4())))
    ours = post_event(admin, make_event(customer.bank, str(uuid.uuid4())))
    wait_until(lambda: receiver.got("/all"), DELIVERY_TIMEOUT, "the granted transaction")
    # both were stored by then or soon; the foreign one has no delivery to this client
    wait_until(lambda: stack.sql(f"SELECT count(*) FROM events WHERE id = '{theirs}'") == "1",
               DELIVERY_TIMEOUT, "the foreign event to be stored")
    assert stack.sql("SELECT count(*) FROM deliveries WHERE event_id IN"
                     f" ('{theirs}', '{ours}') AND client_id = '{customer.client_id}'") == "1"
    assert len(receiver.got("/all")) == 1
    assert stack.sql(f"SELECT event_id FROM deliveries WHERE client_id = '{customer.client_id}'"
                     ) == ours
    # a client without any grant cannot name an account at all
    bare = Banksocket.__new__(Banksocket)
    bare.base, bare.api_url = customer.base, customer.api_url
    client = admin.create_client()
    bare.client_id = client["id"]
    bare.token = admin.create_token(admin.create_user(bare.client_id)["id"])["token"]
    bs_error(bare.call("POST", "/webhooks", json={
        "title": "t", "endpoint": receiver.url("/x"), "event": "NEW_CREDIT",
        "account": "4242"}), 403, "account")
