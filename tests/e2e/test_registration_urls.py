"""Registration-time URL checks (issue 12, finding 7) on a stack of its own
with delivery.allow_loopback false, as in production: every spelling of a
loopback host that libcurl would connect to (names, short, octal, decimal
and hex IPv4 forms, IPv6 literals, a name that resolves to loopback) is
refused when a webhook is registered, in every dialect, with a 400 in the
dialect's envelope naming the URL field; a public address is accepted.
docs/DESIGN.md, "Registration-time URL checks"."""

from __future__ import annotations

import socket

import pytest
import requests

from conftest import (ADMIN_TOKEN, TEST_OVERRIDES, Api, missing_binaries, missing_tools,
                      private_stack)
from test_acquirer import rjct
from test_banksocket import bs_error
from test_limits import Caller, create_in, created
from test_obp import new_bank, notification_body, obp_error

LOOPBACK_HOSTS = ["localhost", "localhost.", "LOCALHOST", "api.localhost", "127.1",
                  "0177.0.0.1", "2130706433", "0x7f000001", "0", "[::1]",
                  "[::ffff:127.0.0.1]", "%6c%6fcalhost"]
PUBLIC_URL = "http://8.8.8.8:9/hook"


def name_resolving_to_loopback() -> str | None:
    """A host name (not localhost) that this machine resolves to loopback:
    its own host name or another /etc/hosts entry."""
    names = [socket.gethostname()]
    try:
        with open("/etc/hosts") as f:
            for line in f:
                names += line.split("#", 1)[0].split()[1:]
    except OSError:
        pass
    for name in names:
        if "localhost" in name:
            continue
        try:
            infos = socket.getaddrinfo(name, None)
        except OSError:
            continue
        addrs = {i[4][0] for i in infos}
        if addrs and all(a.startswith("127.") or a == "::1" for a in addrs):
            return name
    return None


@pytest.fixture(scope="module")
def strict():
    missing = missing_binaries() + missing_tools()
    if missing:
        pytest.fail(f"missing: {', '.join(missing)}", pytrace=False)
    # only the api: nothing is delivered here
    yield from private_stack("bh-urls-", dict(TEST_OVERRIDES,
                                              BANKHOOK_DELIVERY_ALLOW_LOOPBACK="false"),
                             "registration-url", procs=("api",))


@pytest.fixture(scope="module")
def sadmin(strict):
    return Api(strict.api_url, ADMIN_TOKEN)


def hosts() -> list[str]:
    name = name_resolving_to_loopback()
    return LOOPBACK_HOSTS + ([name] if name else [])


def register(dialect: str, c: Caller, url: str, bank: str, obp_token: str) -> requests.Response:
    if dialect == "obp-notification":
        return c.raw("POST", f"/obp/v4.0.0/banks/{bank}/web-hooks/account/notifications/"
                     "on-create-transaction", {"DirectLogin": f"token={obp_token}"},
                     json=notification_body(url))
    if dialect == "psd2":
        return c.native("PUT", "/tpp/v1/webhook-settings",
                        json={"enabled": True, "endpoint": url})
    return create_in(dialect, c, url, bank=bank, obp_token=obp_token)


def refusal(dialect: str, r: requests.Response) -> str:
    """The 400 in the dialect's envelope; returns its message."""
    if dialect in ("native", "psd2"):
        assert r.status_code == 400, f"{r.status_code} {r.text[:300]}"
        return r.json()["error"]["message"]
    if dialect in ("obp", "obp-notification"):
        return obp_error(r, 400)
    if dialect == "banksocket":
        return bs_error(r, 400)
    return rjct(r, 400, "value")["statusDescription"]


FIELD = {"native": "url:", "obp": "url:", "obp-notification": "url:",
         "banksocket": "endpoint:", "acquirer": "channelTypeNotification.value:",
         "psd2": "endpoint:"}


@pytest.mark.parametrize("dialect", list(FIELD))
def test_loopback_spellings_are_refused_at_registration(strict, sadmin, dialect):
    bank = new_bank(sadmin)
    c = Caller(strict, sadmin, [("CanCreateWebhook", bank),
                                ("CanCreateAccountNotificationWebhookAtOneBank", bank)])
    token = c.obp_login() if dialect.startswith("obp") else ""
    for host in hosts():
        url = f"http://{host}:9/hook"
        msg = refusal(dialect, register(dialect, c, url, bank, token))
        assert FIELD[dialect] in msg, f"{url}: {msg}"
        assert "loopback" in msg or "127.0.0.1" in msg or "::1" in msg, f"{url}: {msg}"
    n = strict.sql(f"SELECT count(*) FROM subscriptions WHERE client_id = '{c.client_id}'")
    assert n == "0", "a refused registration stored nothing"
    # a public address is accepted by the same call
    r = register(dialect, c, PUBLIC_URL, bank, token)
    if dialect == "psd2":
        assert r.status_code == 200, r.text
    elif dialect == "obp-notification":
        assert r.status_code == 201, r.text
    else:
        created(dialect, r)


@pytest.mark.parametrize("url", [
    "http://[2001:db8::1]/hook",         # documentation
    "http://[64:ff9b::7f00:1]/hook",     # NAT64 of 127.0.0.1
    "http://[2002:7f00:1::1]/hook",      # 6to4 of 127.0.0.1
    "http://[2001:0:4136:e378::1]/hook",  # Teredo
    "http://[100::1]/hook",              # discard
    "http://203.0.113.9/hook",           # documentation (TEST-NET-3)
])
def test_transition_and_special_ranges_are_refused(strict, sadmin, url):
    c = Caller(strict, sadmin)
    r = c.native("POST", "/v1/endpoints", json={"url": url})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"].startswith("url: host "), r.text


def test_connector_url_is_read_as_libcurl_reads_it(strict, sadmin):
    """Connector URLs are the operator's (loopback allowed), but link-local
    metadata in a hex spelling is refused like everywhere else."""
    r = sadmin.request("PUT", "/v1/banks/urls-bank", json={
        "name": "B", "code": "UB", "connector_url": "http://0xa9fea9fe/latest"})
    assert r.status_code == 400, r.text
    assert "connector_url: host 169.254.169.254" in r.json()["error"]["message"], r.text
    sadmin.expect("PUT", "/v1/banks/urls-bank", 201, json={
        "name": "B", "code": "UB", "connector_url": "http://127.1:9/connector"})
