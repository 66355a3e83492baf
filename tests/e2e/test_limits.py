"""Abuse limits (PRODUCT.md section 7, issue 8) on a stack of their own
with small limits: the per-token rate limit (429 with Retry-After, in each
dialect's envelope), the per-client subscription cap in every dialect and
under concurrent creation, the URL and header size limits (414/431), and
slow clients (idle timeout, per-address connection cap).

Every call here opens its own connection (no keep-alive), so the small
per-address cap and idle timeout never trip over pooled connections."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import (TEST_OVERRIDES, Api, PatientApi, missing_binaries, missing_tools, private_stack,
                      unique, wait_until)
from test_acquirer import config_body, rjct
from test_banksocket import bs_error
from test_obp import account_body, new_bank, obp_error

RATE, BURST = 4, 12
MAX_SUBS = 3
MAX_URL, MAX_HEADERS = 2048, 4096
IDLE_TIMEOUT_S = 2
PER_IP = 12

LIMITS = {
    "BANKHOOK_API_RATE_LIMIT_PER_S": str(RATE),
    "BANKHOOK_API_RATE_LIMIT_BURST": str(BURST),
    "BANKHOOK_API_MAX_SUBSCRIPTIONS": str(MAX_SUBS),
    "BANKHOOK_API_MAX_URL_BYTES": str(MAX_URL),
    "BANKHOOK_API_MAX_HEADER_BYTES": str(MAX_HEADERS),
    "BANKHOOK_API_CONNECTION_TIMEOUT_S": str(IDLE_TIMEOUT_S),
    "BANKHOOK_API_MAX_CONNECTIONS_PER_IP": str(PER_IP),
}


@pytest.fixture(scope="module")
def limited():
    missing = missing_binaries() + missing_tools()
    if missing:
        pytest.fail(f"missing: {', '.join(missing)}", pytrace=False)
    # only the api: no event is delivered here
    yield from private_stack("bh-limits-", dict(TEST_OVERRIDES, **LIMITS), "limits",
                             procs=("api",))


@pytest.fixture(scope="module")
def ladmin(limited):
    from conftest import ADMIN_TOKEN
    return PatientApi(limited.api_url, ADMIN_TOKEN)


class Caller:
    """A fresh client with one user and one token on the limited stack,
    plus an OBP login of the same user (its own token)."""

    def __init__(self, st, admin: PatientApi, obp_roles: list[tuple[str, str]] = ()):
        self.base = st.api_url
        self.client_id = admin.create_client()["id"]
        self.password = "pw-" + uuid.uuid4().hex
        self.username = unique("lim-user")
        user = admin.expect("POST", f"/v1/clients/{self.client_id}/users", 201,
                            json={"username": self.username, "password": self.password})
        self.user_id = user["id"]
        for role, bank in obp_roles:
            admin.expect("POST", f"/v1/users/{self.user_id}/entitlements", 201,
                         json={"role": role, "bank_id": bank})
        # data grants (issue 12) of what the calls below name: the role's banks
        # and the acquirer merchant of create_in
        for bank in {bank for _, bank in obp_roles if bank}:
            admin.expect("POST", f"/v1/clients/{self.client_id}/grants", 201,
                         json={"bank_id": bank})
        admin.expect("POST", f"/v1/clients/{self.client_id}/grants", 201,
                     json={"acquirer_id": "1" * 25, "merchant_id": "2" * 10})
        self.token = admin.create_token(self.user_id)["token"]

    def obp_login(self) -> str:
        r = requests.post(f"{self.base}/obp/v4.0.0/my/logins/direct", timeout=15, headers={
            "DirectLogin": f"username={self.username}, password={self.password}, "
                           "consumer_key=test-consumer", "Connection": "close"})
        assert r.status_code == 201, r.text
        return r.json()["token"]

    def native(self, method: str, path: str, **kw) -> requests.Response:
        return self.raw(method, path, {"Authorization": f"Bearer {self.token}"}, **kw)

    def raw(self, method: str, path: str, headers: dict, **kw) -> requests.Response:
        return requests.request(method, self.base + path, timeout=15,
                                headers=dict(headers, Connection="close"), **kw)

    def acquirer_headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}", "x-ibm-client-id": self.client_id,
                "TPP-Request-ID": str(uuid.uuid4()), "User-ID": "u-1",
                "User-Organization-ID": "org-1"}


def native_error(r: requests.Response, status: int, code: str) -> str:
    assert r.status_code == status, f"{r.status_code} {r.text[:300]}"
    body = r.json()
    assert body["error"]["code"] == code, body
    return body["error"]["message"]


def exhaust(call, n: int = BURST * 4) -> requests.Response:
    """Makes n calls, 4 at a time so the refill (RATE a second) cannot keep
    up even on a slow machine; returns one 429, failing if none came."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: call(), range(n)))
    for r in results:
        assert r.status_code == 429 or r.status_code < 400, f"{r.status_code} {r.text[:300]}"
    limited = [r for r in results if r.status_code == 429]
    assert limited, f"no 429 in {n} calls with burst {BURST}"
    # the burst was served before the first refusal
    assert len(results) - len(limited) >= BURST, len(limited)
    return limited[0]


def retry_after(r: requests.Response) -> int:
    value = int(r.headers["Retry-After"])
    assert 1 <= value <= 60, value
    return value


# ------------------------------------------------------------------ rate limit


def test_rate_limit_native_429_with_retry_after_per_token(limited, ladmin):
    a, b = Caller(limited, ladmin), Caller(limited, ladmin)
    r = exhaust(lambda: a.native("GET", "/v1/endpoints"))
    msg = native_error(r, 429, "rate_limited")
    assert "rate limit" in msg and str(RATE) in msg, msg
    wait = retry_after(r)
    # another token of another client is not affected
    assert b.native("GET", "/v1/endpoints").status_code == 200
    # a second token of the same user has its own bucket: the limit is per token
    t2 = ladmin.create_token(a.user_id)["token"]
    assert a.raw("GET", "/v1/endpoints", {"Authorization": f"Bearer {t2}"}).status_code == 200
    # after Retry-After the token works again
    time.sleep(wait)
    assert a.native("GET", "/v1/endpoints").status_code == 200
    # refused calls are counted per route in /metrics
    m = requests.get(limited.api_url + "/metrics", timeout=15).text
    assert 'route="/v1/endpoints",status="429"' in m


def test_rate_limit_in_each_dialect_envelope(limited, ladmin):
    bank = new_bank(ladmin)
    obp = Caller(limited, ladmin, [("CanGetWebhooks", bank)])
    token = obp.obp_login()
    r = exhaust(lambda: obp.raw(
        "GET", f"/obp/v4.0.0/management/banks/{bank}/account-web-hooks",
        {"DirectLogin": f"token={token}"}))
    obp_error(r, 429, "OBP-10018: Too Many Requests.")
    retry_after(r)

    bs = Caller(limited, ladmin)
    r = exhaust(lambda: bs.raw("GET", "/banksocket/v1/webhooks", {"Authentication": bs.token}))
    assert "rate limit" in bs_error(r, 429)
    retry_after(r)

    acq = Caller(limited, ladmin)
    body = {"acquirerId": "1" * 25, "merchantId": "2" * 10}
    r = exhaust(lambda: acq.raw("POST", "/acquirer/v1/webhooks", acq.acquirer_headers(),
                                json=body))
    rs = rjct(r, 429, "rate limit")
    assert rs["statusCode"] == "429"
    assert r.headers["TPP-Request-ID"]
    retry_after(r)


# ------------------------------------------------------------------ subscription cap


def create_in(dialect: str, c: Caller, url: str, bank: str | None = None,
              obp_token: str | None = None, code: str | None = None) -> requests.Response:
    if dialect == "native":
        return c.native("POST", "/v1/endpoints", json={"url": url})
    if dialect == "obp":
        return c.raw("POST", f"/obp/v4.0.0/banks/{bank}/account-web-hooks",
                     {"DirectLogin": f"token={obp_token}"},
                     json=account_body(url, str(uuid.uuid4())))
    if dialect == "banksocket":
        return c.raw("POST", "/banksocket/v1/webhooks", {"Authentication": c.token},
                     json={"title": "t", "endpoint": url, "event": "NEW_CREDIT",
                           "account": "all"})
    if dialect == "acquirer":
        return c.raw("POST", f"/acquirer/v1/acquirers/{'1' * 25}/merchants/{'2' * 10}"
                     "/terminal/webhook", c.acquirer_headers(),
                     json=config_body(code or unique("code")[:20], ["CARD"], url=url))
    raise ValueError(dialect)


def created(dialect: str, r: requests.Response) -> None:
    want = {"native": 201, "obp": 201, "banksocket": 200, "acquirer": 200}[dialect]
    assert r.status_code == want, f"{dialect}: {r.status_code} {r.text[:300]}"
    if dialect == "acquirer":
        assert r.json()["transactionStatus"] == "ACTC", r.text


def assert_limit_error(dialect: str, r: requests.Response) -> None:
    """409 in the dialect's envelope, naming the limit."""
    if dialect == "native":
        msg = native_error(r, 409, "subscription_limit")
    elif dialect == "obp":
        msg = obp_error(r, 409)
        assert msg.startswith("OBP-39001: Webhook limit reached."), msg
    elif dialect == "banksocket":
        msg = bs_error(r, 409)
    else:
        rs = rjct(r, 409, "api.max_subscriptions")
        assert rs["statusCode"] == "403", rs
        msg = rs["statusDescription"]
    assert "api.max_subscriptions" in msg and str(MAX_SUBS) in msg, msg


def count_subs(st, client_id: str) -> int:
    return int(st.sql(f"SELECT count(*) FROM subscriptions WHERE client_id = '{client_id}'"))


DIALECTS = ["native", "obp", "banksocket", "acquirer"]


@pytest.mark.parametrize("over_in", DIALECTS)
def test_subscription_cap_across_dialects(limited, ladmin, over_in):
    """The client fills its cap with subscriptions of the other dialects,
    then one more in `over_in` is refused in that dialect's envelope and
    nothing is written; deleting one makes room again."""
    bank = new_bank(ladmin)
    c = Caller(limited, ladmin, [("CanCreateWebhook", bank)])
    token = c.obp_login()
    url = "http://127.0.0.1:9/hook"
    others = [d for d in DIALECTS if d != over_in]
    for d in others:
        created(d, create_in(d, c, url, bank=bank, obp_token=token))
    assert count_subs(limited, c.client_id) == MAX_SUBS
    assert_limit_error(over_in, create_in(over_in, c, url, bank=bank, obp_token=token))
    assert count_subs(limited, c.client_id) == MAX_SUBS
    # the native create is refused too: the cap counts every dialect
    assert_limit_error("native", create_in("native", c, url))

    # another client is not affected by this one's cap
    other = Caller(limited, ladmin)
    created("native", create_in("native", other, url))

    # deleting one makes room for exactly one
    first = c.native("GET", "/v1/endpoints").json()["data"][0]["id"]
    assert c.native("DELETE", f"/v1/endpoints/{first}").status_code == 204
    created(over_in, create_in(over_in, c, url, bank=bank, obp_token=token))
    assert count_subs(limited, c.client_id) == MAX_SUBS


def test_subscription_cap_holds_under_concurrent_creation(limited, ladmin):
    c = Caller(limited, ladmin)
    results: list[int] = []
    lock = threading.Lock()
    go = threading.Barrier(8)

    def one():
        go.wait()
        r = create_in("native", c, "http://127.0.0.1:9/race")
        with lock:
            results.append(r.status_code)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == [201] * MAX_SUBS + [409] * (8 - MAX_SUBS), results
    assert count_subs(limited, c.client_id) == MAX_SUBS


def test_acquirer_update_of_existing_code_is_not_capped(limited, ladmin):
    """An INS on a code the client already has updates it: no new
    subscription, so it passes at the cap."""
    c = Caller(limited, ladmin)
    url = "http://127.0.0.1:9/hook"
    created("acquirer", create_in("acquirer", c, url, code="keep1"))
    created("native", create_in("native", c, url))
    created("native", create_in("native", c, url))
    assert_limit_error("acquirer", create_in("acquirer", c, url, code="new1"))
    created("acquirer", create_in("acquirer", c, url + "2", code="keep1"))
    assert count_subs(limited, c.client_id) == MAX_SUBS


# ------------------------------------------------------------------ URL and header size


def test_url_over_limit_is_414_in_the_route_envelope(limited, ladmin):
    c = Caller(limited, ladmin)
    long_query = "?q=" + "a" * MAX_URL
    r = c.native("GET", "/v1/endpoints" + long_query)
    assert "url" in native_error(r, 414, "uri_too_long")
    r = c.raw("GET", "/banksocket/v1/webhooks" + long_query, {"Authentication": c.token})
    assert str(MAX_URL) in bs_error(r, 414)
    r = c.raw("POST", "/acquirer/v1/webhooks" + long_query, c.acquirer_headers(), json={})
    assert rjct(r, 414, "url")["statusCode"] == "203"
    r = c.raw("GET", f"/obp/v4.0.0/management/banks/b/account-web-hooks{long_query}", {})
    assert obp_error(r, 414).startswith("OBP-10001")
    # just under the limit is served
    assert c.native("GET", "/v1/endpoints?q=" + "a" * (MAX_URL - 100)).status_code == 200


def test_headers_over_limit_are_431_in_the_route_envelope(limited, ladmin):
    c = Caller(limited, ladmin)
    big = {f"X-Pad-{i}": "p" * 500 for i in range(MAX_HEADERS // 500 + 1)}
    r = c.raw("GET", "/v1/endpoints", dict(big, Authorization=f"Bearer {c.token}"))
    assert "headers" in native_error(r, 431, "headers_too_large")
    r = c.raw("GET", "/banksocket/v1/webhooks", dict(big, Authentication=c.token))
    assert str(MAX_HEADERS) in bs_error(r, 431)
    r = c.raw("POST", "/acquirer/v1/webhooks", dict(big, **c.acquirer_headers()), json={})
    assert rjct(r, 431, "headers")["statusCode"] == "105"
    # one header just under the limit is served
    ok = c.raw("GET", "/v1/endpoints", {"Authorization": f"Bearer {c.token}",
                                        "X-Pad": "p" * (MAX_HEADERS - 700)})
    assert ok.status_code == 200, ok.text


def raw_exchange(port: int, data: bytes, timeout: float = 20) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
    return out


@pytest.mark.parametrize("what", ["url", "headers"])
def test_far_over_the_buffer_is_refused_and_the_api_lives(limited, what):
    """Far past libmicrohttpd's buffer it answers 414/431 by itself (no
    envelope), or drops the connection; either way nothing is served and
    the api keeps answering."""
    port = limited.ports["api"]
    if what == "url":
        req = b"GET /v1/endpoints?q=" + b"a" * 1_000_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        want = b" 414 "
    else:
        req = (b"GET /v1/endpoints HTTP/1.1\r\nHost: x\r\n" +
               b"".join(b"X-P%d: %s\r\n" % (i, b"p" * 1000) for i in range(1000)) + b"\r\n")
        want = b" 431 "
    try:
        out = raw_exchange(port, req)
    except (BrokenPipeError, ConnectionResetError):
        out = b""  # closed while we were still sending: refused too
    status_line = out.split(b"\r\n", 1)[0]
    assert out == b"" or want in status_line, status_line
    assert requests.get(limited.api_url + "/healthz", timeout=15).status_code == 200


# ------------------------------------------------------------------ slow clients


def test_idle_connection_is_closed_after_the_timeout(limited):
    """A client that sends half a request and stalls is disconnected."""
    s = socket.create_connection(("127.0.0.1", limited.ports["api"]), timeout=30)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # no blank line: never complete
        t0 = time.monotonic()
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
        waited = time.monotonic() - t0
        assert data == b"", data
        # closed by the server's timeout, not our 30 s socket timeout
        assert IDLE_TIMEOUT_S - 0.5 <= waited < 20, waited
    finally:
        s.close()


def test_connections_per_address_are_capped(limited):
    """PER_IP idle connections from one address: the next is refused at
    once; when they go, the address is served again."""
    port = limited.ports["api"]
    held: list[socket.socket] = []
    # The idle timeout is short (and a loaded machine slow to open them all):
    # from the first connection on, every held one trickles a header line
    # well inside the timeout, so none is closed as idle and frees its slot.
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(IDLE_TIMEOUT_S / 8):
            for s in list(held):
                try:
                    s.sendall(b"X: y\r\n")
                except OSError:
                    pass  # one the cap refused; the count is still full

    keeper = threading.Thread(target=trickle, daemon=True)
    keeper.start()
    try:
        for _ in range(PER_IP):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"GET /healthz HTTP/1.1\r\n")
            held.append(s)
        time.sleep(0.5)  # let the daemon accept them all

        def refused() -> bool:
            try:
                requests.get(limited.api_url + "/healthz", timeout=5,
                             headers={"Connection": "close"})
                return False
            except requests.ConnectionError:
                return True

        assert refused(), "a connection beyond max_connections_per_ip was served"
    finally:
        stop.set()
        keeper.join()
        for s in held:
            s.close()
    wait_until(lambda: requests.get(limited.api_url + "/healthz", timeout=5,
                                    headers={"Connection": "close"}).status_code == 200,
               30, "the address to be served again")


def test_limits_leave_normal_use_alone(limited, ladmin):
    """Within every limit, the stack answers normally (and logs no limit hit)."""
    c = Caller(limited, ladmin)
    r = c.native("POST", "/v1/endpoints", json={"url": "http://127.0.0.1:9/ok"})
    assert r.status_code == 201, r.text
    assert c.native("GET", f"/v1/endpoints/{r.json()['id']}").status_code == 200
    assert json.loads(c.native("GET", "/v1/endpoints").text)["data"]
