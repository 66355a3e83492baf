"""Connection safety and authentication abuse (issue 12, findings 3 to 5)
on a stack of their own with small limits: slowloris from several
addresses while /healthz, /readyz and an authenticated call still answer
within 2 s, the head and request deadlines however a client trickles, DirectLogin
brute force answered 429 with Retry-After and a growing back-off, the
process-wide scrypt budget, the per-client rate limit that minting tokens
does not escape, and the per-client caps on tokens and users (409).

Calls that must come from a given loopback address (127.0.0.2 and up, all
local on Linux) bind their source address, so the per-address state of
one test never reaches another's."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import (ADMIN_TOKEN, TEST_OVERRIDES, PatientApi, missing_binaries, missing_tools,
                      private_stack, unique)

# main's global cap is api.threads * 64: with one thread, 64 connections
THREADS, MAX_CONNS, PER_IP = 1, 48, 12
ATTACK_ADDRS = [f"127.0.0.{i}" for i in range(2, 8)]  # 6 x 12 = 72 > 64 and > 48
IDLE_S, HEAD_S, REQUEST_S = 3, 4, 8
# the admin's own token and client do the setup: roomy enough for that
RATE, BURST, CLIENT_RATE, CLIENT_BURST = 20, 40, 10, 30
FREE_FAILURES, FREE_FAILURES_PER_IP, MAX_BACKOFF_S = 3, 6, 30
# below what the machine can do, so the budget is what refuses; the burst
# covers the sequential logins of the other tests
SCRYPT_PER_S, SCRYPT_BURST = 3, 10
MAX_USERS, MAX_TOKENS = 3, 12

LIMITS = {
    "BANKHOOK_API_THREADS": str(THREADS),
    "BANKHOOK_API_MAX_CONNECTIONS": str(MAX_CONNS),
    "BANKHOOK_API_MAX_CONNECTIONS_PER_IP": str(PER_IP),
    "BANKHOOK_API_CONNECTION_TIMEOUT_S": str(IDLE_S),
    "BANKHOOK_API_HEADER_TIMEOUT_S": str(HEAD_S),
    "BANKHOOK_API_REQUEST_TIMEOUT_S": str(REQUEST_S),
    "BANKHOOK_API_RATE_LIMIT_PER_S": str(RATE),
    "BANKHOOK_API_RATE_LIMIT_BURST": str(BURST),
    "BANKHOOK_API_CLIENT_RATE_LIMIT_PER_S": str(CLIENT_RATE),
    "BANKHOOK_API_CLIENT_RATE_LIMIT_BURST": str(CLIENT_BURST),
    "BANKHOOK_API_LOGIN_FREE_FAILURES": str(FREE_FAILURES),
    "BANKHOOK_API_LOGIN_FREE_FAILURES_PER_IP": str(FREE_FAILURES_PER_IP),
    "BANKHOOK_API_LOGIN_MAX_BACKOFF_S": str(MAX_BACKOFF_S),
    "BANKHOOK_API_SCRYPT_PER_S": str(SCRYPT_PER_S),
    "BANKHOOK_API_SCRYPT_BURST": str(SCRYPT_BURST),
    "BANKHOOK_API_MAX_USERS_PER_CLIENT": str(MAX_USERS),
    "BANKHOOK_API_MAX_TOKENS_PER_CLIENT": str(MAX_TOKENS),
}

LOGIN = "/obp/v4.0.0/my/logins/direct"


@pytest.fixture(scope="module")
def abuse():
    missing = missing_binaries() + missing_tools()
    if missing:
        pytest.fail(f"missing: {', '.join(missing)}", pytrace=False)
    yield from private_stack("bh-abuse-", dict(TEST_OVERRIDES, **LIMITS), "abuse",
                             procs=("api",))


@pytest.fixture(scope="module")
def aadmin(abuse):
    return PatientApi(abuse.api_url, ADMIN_TOKEN)


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)


def call_from(st, src: str, method: str, path: str, headers: dict | None = None,
              body: bytes | None = None, timeout: float = 15) -> Reply:
    """One request on a connection of its own from source address src."""
    conn = http.client.HTTPConnection("127.0.0.1", st.ports["api"], timeout=timeout,
                                      source_address=(src, 0))
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}, Connection="close"))
        r = conn.getresponse()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def login_from(st, src: str, username: str, password: str) -> Reply:
    return call_from(st, src, "POST", LOGIN, {
        "DirectLogin": f"username={username}, password={password}, consumer_key=ck"})


def new_user(admin: PatientApi, password: str | None = None, client_id: str | None = None):
    client_id = client_id or admin.create_client()["id"]
    body = {"username": unique("abuse-user")}
    if password:
        body["password"] = password
    user = admin.expect("POST", f"/v1/clients/{client_id}/users", 201, json=body)
    return client_id, user


def retry_after(r) -> int:
    headers = {k.lower(): v for k, v in r.headers.items()}
    value = int(headers["retry-after"])
    assert 1 <= value <= MAX_BACKOFF_S, value
    return value


# ------------------------------------------------------------------ slowloris


class Slowloris:
    """`per_addr` connections from each address, each sending a request
    line and then one header byte a second (inside the idle timeout, so
    only a deadline can end them); a connection the server closes is
    opened again, so the pressure stays on for as long as it runs."""

    def __init__(self, port: int, addrs: list[str], per_addr: int):
        self.port = port
        self.slots = [(a, None) for a in addrs for _ in range(per_addr)]
        self.stop = threading.Event()
        self.opened = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def connect(self, addr: str):
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=2,
                                         source_address=(addr, 0))
            s.sendall(b"GET /v1/endpoints HTTP/1.1\r\nHost: x\r\n")
            s.setblocking(False)
            self.opened += 1
            return s
        except OSError:
            return None

    @staticmethod
    def alive(s) -> bool:
        try:
            if s.recv(1) == b"":
                return False
        except BlockingIOError:
            pass
        except OSError:
            return False
        try:
            s.send(b"X")  # one byte of a header line that never ends
            return True
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False

    def run(self):
        while not self.stop.is_set():
            for i, (addr, s) in enumerate(self.slots):
                if self.stop.is_set():
                    break
                if s is not None and not self.alive(s):
                    s.close()
                    s = None
                if s is None:
                    s = self.connect(addr)
                self.slots[i] = (addr, s)
            self.stop.wait(1.0)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(30)
        for _, s in self.slots:
            if s is not None:
                s.close()


def test_slowloris_from_several_addresses_leaves_health_and_api_answering(abuse, aadmin):
    client_id, user = new_user(aadmin)
    token = aadmin.create_token(user["id"])["token"]
    base = abuse.api_url
    with Slowloris(abuse.ports["api"], ATTACK_ADDRS, PER_IP) as attack:
        time.sleep(3)  # every slot opened, the budget full
        assert attack.opened >= MAX_CONNS, attack.opened
        t_end = time.monotonic() + 2 * HEAD_S + 2
        checks = 0
        while time.monotonic() < t_end:
            for path, headers in (("/healthz", {}), ("/readyz", {}),
                                  ("/v1/endpoints", {"Authorization": f"Bearer {token}"})):
                t0 = time.monotonic()
                try:
                    r = requests.get(base + path, timeout=2,
                                     headers=dict(headers, Connection="close"))
                except requests.RequestException as e:
                    pytest.fail(f"{path} under slowloris: {e!r} after "
                                f"{time.monotonic() - t0:.1f} s")
                took = time.monotonic() - t0
                assert r.status_code == 200, f"{path}: {r.status_code} {r.text[:200]}"
                assert took < 2, f"{path} took {took:.1f} s under slowloris"
                checks += 1
            time.sleep(0.5)
        assert checks >= 12
        # the attack kept reconnecting: its connections were closed by the
        # deadline or given up to the newcomers, not kept forever
        assert attack.opened > len(attack.slots), attack.opened
    m = requests.get(base + "/metrics", timeout=15, headers={"Connection": "close"}).text
    counts = {o: float(next(line.split()[-1] for line in m.splitlines() if line.startswith(
        f'bankhook_api_connections_total{{outcome="{o}"}}')))
        for o in ("refused", "taken", "timed_out")}
    assert all(v > 0 for v in counts.values()), counts


def trickle_until_closed(st, src: str, first: bytes, limit_s: float) -> float | None:
    """Sends `first`, then one byte a second; the seconds until the server
    closed the connection, or None if it still had not after limit_s."""
    s = socket.create_connection(("127.0.0.1", st.ports["api"]), timeout=1,
                                 source_address=(src, 0))
    t0 = time.monotonic()
    try:
        s.sendall(first)
        while time.monotonic() - t0 < limit_s:
            try:
                if s.recv(4096) == b"":
                    return time.monotonic() - t0
            except socket.timeout:
                pass
            except OSError:
                return time.monotonic() - t0
            try:
                s.sendall(b"a")
            except OSError:
                return time.monotonic() - t0
        return None
    finally:
        s.close()


def test_trickled_head_is_closed_at_the_header_deadline(abuse):
    waited = trickle_until_closed(abuse, "127.0.0.20",
                                  b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ", HEAD_S + 6)
    assert waited is not None, "a trickling head was still open after the header deadline"
    assert HEAD_S - 0.5 <= waited < HEAD_S + 3, waited


def test_trickled_body_is_closed_at_the_request_deadline(abuse):
    head = (b"POST /v1/endpoints HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n")
    waited = trickle_until_closed(abuse, "127.0.0.21", head, REQUEST_S + 6)
    assert waited is not None, "a trickling body was still open after the request deadline"
    assert REQUEST_S - 0.5 <= waited < REQUEST_S + 3, waited


# ------------------------------------------------------------------ DirectLogin brute force


def test_directlogin_brute_force_backs_off_with_429(abuse, aadmin):
    pw = "pw-" + uuid.uuid4().hex
    _, user = new_user(aadmin, pw)
    name, src = user["username"], "127.0.0.30"
    # the free failures are plain 401s
    for _ in range(FREE_FAILURES):
        assert login_from(abuse, src, name, "wrong-password").status == 401
    # one more fails too, and starts the back-off: 1 s, then 2 s
    assert login_from(abuse, src, name, "wrong-password").status == 401
    waits = []
    for _ in range(2):
        r = login_from(abuse, src, name, "wrong-password")
        assert r.status == 429, (r.status, r.body[:300])
        assert r.json() == {"code": 429, "message": "OBP-10018: Too Many Requests."}
        waits.append(retry_after(r))
        # blocked means blocked: the right password waits too, from anywhere
        assert login_from(abuse, "127.0.0.31", name, pw).status == 429
        time.sleep(waits[-1] + 0.2)
        if len(waits) == 1:
            assert login_from(abuse, src, name, "wrong-password").status == 401
    assert waits == [1, 2], waits
    # after the wait, the right password logs in, and that resets the username
    r = login_from(abuse, "127.0.0.31", name, pw)
    assert r.status == 201, r.body[:300]
    assert login_from(abuse, "127.0.0.31", name, "wrong-password").status == 401


def test_directlogin_spraying_usernames_backs_off_the_address(abuse):
    """Wrong passwords for ever new usernames: the address backs off."""
    src = "127.0.0.40"
    statuses = [login_from(abuse, src, unique("nobody"), "whatever-pw").status
                for _ in range(FREE_FAILURES_PER_IP + 1)]
    assert statuses == [401] * (FREE_FAILURES_PER_IP + 1), statuses
    r = login_from(abuse, src, unique("nobody"), "whatever-pw")
    assert r.status == 429, r.body[:300]
    assert int(r.headers["retry-after"]) >= 1
    # another address is not affected
    assert login_from(abuse, "127.0.0.41", unique("nobody"), "whatever-pw").status == 401


def test_scrypt_runs_are_bounded_per_second(abuse, aadmin):
    """Password sets across clients (no per-client limit reached) all at
    once: the process-wide scrypt budget answers 429 over it."""
    n = 40  # more than the database pool lets through at once, and the burst
    clients = [aadmin.create_client()["id"] for _ in range((n + MAX_USERS - 1) // MAX_USERS)]
    time.sleep(SCRYPT_BURST / SCRYPT_PER_S)  # every bucket refilled before and after


    go = threading.Barrier(n)

    def create(i: int) -> Reply:
        body = json.dumps({"username": unique("scrypt-user"),
                           "password": "pw-" + uuid.uuid4().hex}).encode()
        go.wait(30)
        # each from an address of its own: more at once than one address may open
        return call_from(abuse, f"127.0.1.{i + 1}", "POST",
                         f"/v1/clients/{clients[i % len(clients)]}/users",
                         {"Authorization": f"Bearer {ADMIN_TOKEN}",
                          "Content-Type": "application/json"}, body)

    with ThreadPoolExecutor(max_workers=n) as pool:
        results = list(pool.map(create, range(n)))
    statuses = sorted(r.status for r in results)
    assert set(statuses) <= {201, 429}, statuses
    assert 1 <= statuses.count(201) < n, statuses
    limited = [r for r in results if r.status == 429]
    for r in limited:
        assert r.json()["error"]["code"] == "rate_limited", r.body
        retry_after(r)
    msgs = [r.json()["error"]["message"] for r in limited]
    assert any(m.startswith("password:") and "api.scrypt_per_s" in m for m in msgs), msgs
    time.sleep(SCRYPT_BURST / SCRYPT_PER_S)


# ------------------------------------------------------------------ per-client rate limit


def test_many_tokens_of_one_client_are_still_rate_limited(abuse, aadmin):
    client_id, user = new_user(aadmin)
    tokens = [aadmin.create_token(user["id"])["token"] for _ in range(10)]
    # each token alone stays inside its own burst: 12 calls each
    n = 120

    def call(i: int) -> requests.Response:
        return requests.get(f"{abuse.api_url}/v1/endpoints", timeout=15, headers={
            "Authorization": f"Bearer {tokens[i % 10]}", "Connection": "close"})

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(call, range(n)))
    limited = [r for r in results if r.status_code == 429]
    assert limited, f"no 429 in {n} calls of one client over 10 tokens"
    assert all(r.status_code in (200, 429) for r in results)
    served = n - len(limited)
    assert CLIENT_BURST <= served < n, served
    body = limited[0].json()
    assert body["error"]["code"] == "rate_limited"
    assert "api.client_rate_limit_per_s" in body["error"]["message"], body
    retry_after(limited[0])
    # another client is not affected
    _, other = new_user(aadmin)
    t = aadmin.create_token(other["id"])["token"]
    assert requests.get(f"{abuse.api_url}/v1/endpoints", timeout=15, headers={
        "Authorization": f"Bearer {t}", "Connection": "close"}).status_code == 200


# ------------------------------------------------------------------ caps per client


def test_tokens_per_client_are_capped_409_native_and_obp(abuse, aadmin):
    pw = "pw-" + uuid.uuid4().hex
    client_id, user = new_user(aadmin, pw)
    # a second user of the same client: the cap is the client's, over its users
    _, user2 = new_user(aadmin, client_id=client_id)
    made = [aadmin.create_token(user["id"] if i % 2 else user2["id"])
            for i in range(MAX_TOKENS)]
    r = aadmin.request("POST", "/v1/tokens", json={"user_id": user["id"]})
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["code"] == "token_limit", err
    assert "api.max_tokens_per_client" in err["message"] and str(MAX_TOKENS) in err["message"]
    # DirectLogin creates a token too: 409 in OBP's envelope
    r = login_from(abuse, "127.0.0.50", user["username"], pw)
    assert r.status == 409, r.body[:300]
    body = r.json()
    assert body["code"] == 409, body
    assert body["message"].startswith("OBP-39002: Token limit reached."), body
    assert "api.max_tokens_per_client" in body["message"], body
    assert int(abuse.sql(
        "SELECT count(*) FROM tokens t JOIN users u ON u.id = t.user_id"
        f" WHERE u.client_id = '{client_id}'")) == MAX_TOKENS
    # deleting one makes room for one
    aadmin.expect("DELETE", f"/v1/tokens/{made[0]['id']}", 204)
    assert login_from(abuse, "127.0.0.50", user["username"], pw).status == 201
    assert aadmin.request("POST", "/v1/tokens",
                          json={"user_id": user["id"]}).status_code == 409


def test_users_per_client_are_capped_409(abuse, aadmin):
    client_id = aadmin.create_client()["id"]
    for _ in range(MAX_USERS):
        new_user(aadmin, client_id=client_id)
    r = aadmin.request("POST", f"/v1/clients/{client_id}/users",
                       json={"username": unique("one-too-many")})
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["code"] == "user_limit", err
    assert "api.max_users_per_client" in err["message"] and str(MAX_USERS) in err["message"]
    assert int(abuse.sql(f"SELECT count(*) FROM users WHERE client_id = '{client_id}'")) \
        == MAX_USERS
    # another client is not affected
    new_user(aadmin)
