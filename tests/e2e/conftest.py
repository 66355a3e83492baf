"""End-to-end fixtures: a private bankhook stack per test session.

Like pgbouncer's test/utils.py, the tests start the real things: a
PostgreSQL cluster and a single-node Kafka (through deploy/stack.sh), then
bin/bankhook-api, bin/bankhook-worker and bin/bankhook-scheduler, all on
free ports under a temporary run directory, so the suite runs beside a
`make up` stack (8080-8082, 9092/9093, 55432) without touching it.

At teardown every process log is scanned for sanitizer reports (Redis's
check_sanitizer_errors); one found fails the session. Set BH_KEEP_RUN=1 to
keep the run directory afterwards.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

# The stack and the plain helpers live in harness.py (the benchmark starts
# its stack with it too); they are re-exported here because the tests
# import them from conftest.
from harness import (ADMIN_TOKEN, BIN, PROCS, REPO, STACK, TEST_OVERRIDES,  # noqa: F401
                     TOPIC_DLQ, TOPIC_EVENTS, Api, PatientApi, Stack, free_ports, make_event,
                     missing_binaries, missing_tools, new_stack, private_stack, serve_http,
                     sanitizer_reports, start_stack, stop_stack, unique, wait_until)


@pytest.fixture(scope="session")
def stack(request):
    missing = missing_binaries()
    if missing:
        pytest.fail(f"not built: {', '.join(missing)} (run make)", pytrace=False)
    for tool in missing_tools():
        pytest.fail(f"{tool} not found (run deploy/setup.sh)", pytrace=False)

    yield from private_stack("bh-e2e-", TEST_OVERRIDES, "e2e")


@pytest.fixture(scope="session")
def admin(stack) -> Api:
    return stack.api()


@pytest.fixture
def scope():
    """Unique bank and account ids for one test, so endpoints filtered on
    them see only this test's events on the shared stack."""
    return {"bank_id": unique("bank"), "account_id": str(uuid.uuid4())}


# -------------------------------------------------------------- receiver


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A threaded HTTP server that records every request and answers each
    path from a programmable plan ([500, 500, 200]: then 200 forever)."""

    def __init__(self):
        self.requests: list[Received] = []
        self.plans: dict[str, list[int]] = {}
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                path = self.path.split("?", 1)[0]
                with outer.lock:
                    outer.requests.append(Received(
                        self.command, self.path,
                        {k.lower(): v for k, v in self.headers.items()}, body, time.time()))
                    plan = outer.plans.get(path)
                    status = plan.pop(0) if plan else 200
                reply = json.dumps({"status": status}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_POST = do_PUT = do_GET = _handle

            def log_message(self, *args):  # quiet
                pass

        self.server = serve_http(Handler)
        self.port = self.server.server_address[1]

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def plan(self, path: str, statuses: list[int]) -> None:
        with self.lock:
            self.plans[path] = list(statuses)

    def got(self, path: str | None = None) -> list[Received]:
        with self.lock:
            return [r for r in self.requests
                    if path is None or r.path.split("?", 1)[0] == path]

    def event_ids(self, path: str | None = None) -> set[str]:
        ids = set()
        for r in self.got(path):
            try:
                ids.add(r.json()["id"])
            except (ValueError, KeyError, TypeError):
                pass
        return ids

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()
