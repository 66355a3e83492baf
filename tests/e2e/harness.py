"""The e2e harness as a plain module: a private bankhook stack (PostgreSQL
and Kafka through deploy/stack.sh, then the three programs) on free ports
under a temporary run directory, plus the helpers the tests share.

tests/e2e/conftest.py wraps it in fixtures; tests/bench/bench.py starts its
own stack with it. Never uses the `make up` ports (8080-8082, 9092/9093,
55432), so it runs beside that stack.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / "bin"
STACK = REPO / "deploy" / "stack.sh"
# Ports of the `make up` stack; never used here.
RESERVED_PORTS = {8080, 8081, 8082, 9092, 9093, 55432}
SANITIZER_RE = re.compile(r"ERROR: AddressSanitizer|runtime error:|LeakSanitizer")
PROCS = ("api", "worker", "scheduler")
ADMIN_TOKEN = "bh_admin_" + uuid.uuid4().hex
TOPIC_EVENTS = "bankhook.events"
TOPIC_DLQ = "bankhook.events.dlq"
# How each program is started, by the verb of deploy/entrypoint.sh (the
# image's entry point): the containers run exactly these commands, and
# test_static.py checks the two agree.
COMMANDS = {
    "api": ["bankhook-api"],
    "scheduler": ["bankhook-scheduler"],
    "worker": ["bankhook-worker"],
    "migrate": ["bankhook-api", "migrate"],
    "create-topics": ["bankhook-api", "create-topics"],
}
PORT_NAMES = ("pg", "kafka", "kafka_controller", "api", "worker_http", "scheduler_http")

# The e2e configuration: attempts 1 s apart, a dead worker's deliveries
# re-dispatched after 3 s. The benchmark leaves these at production values.
TEST_OVERRIDES = {
    "BH_PG_FAST": "1",
    "BANKHOOK_DELIVERY_SCHEDULE": "0,1,1",
    "BANKHOOK_DELIVERY_LEASE_S": "3",
    "BANKHOOK_DELIVERY_JITTER_PERCENT": "0",
    "BANKHOOK_DELIVERY_TIMEOUT_MS": "5000",
    "BANKHOOK_SCHEDULER_TICK_MS": "200",
    # PSD2 (tests/e2e/test_psd2.py): short windows and connector calls, and
    # the test-only activation tick (`bankhook-scheduler psd2-tick`).
    "BANKHOOK_PSD2_TEST_CLOCK": "true",
    "BANKHOOK_PSD2_AGGREGATION_WINDOW_S": "8",
    "BANKHOOK_PSD2_CONNECTOR_TIMEOUT_MS": "2000",
    "BANKHOOK_PSD2_CONNECTOR_ATTEMPTS": "3",
    "BANKHOOK_PSD2_CONNECTOR_RETRY_MS": "500",
}


# --------------------------------------------------------------- helpers


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1, none of the reserved ones."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)  # held open until all are chosen: no repeats
            port = s.getsockname()[1]
            if port not in RESERVED_PORTS and port + 1 not in RESERVED_PORTS:
                ports.append(port)
    finally:
        for s in socks:
            s.close()
    return ports


def _slowdown() -> float:
    """3 when bin/ holds a sanitizer build (make SANITIZE=..., bin/.flavour
    not empty), else 1: ASan+UBSan binaries run several times slower, and the
    sanitizer run of the suite must fail on reports, not on waits."""
    try:
        return 3.0 if (BIN / ".flavour").read_text().strip() else 1.0
    except OSError:
        return 1.0


SLOWDOWN = _slowdown()


def wait_until(fn: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Calls fn until it returns something truthy, and returns that; fails
    the test naming `what` after `timeout` seconds (times SLOWDOWN)."""
    timeout *= SLOWDOWN
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = fn()
            if value:
                return value
        except (requests.RequestException, AssertionError) as exc:
            last_exc = exc
        if time.monotonic() > deadline:
            extra = f" (last error: {last_exc})" if last_exc else ""
            pytest.fail(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(interval)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def make_event(bank_id: str, account_id: str, *, event_id: str | None = None,
               type_: str = "transaction.created", amount: str = "100.00", **extra: Any) -> dict:
    """A valid event of the given type (PRODUCT.md section 3)."""
    if type_ == "transaction.created":
        data = {"transaction_id": unique("txn"), "dc": "credit", "code": "EFT",
                "amount": amount, "balance": "739.00", "currency": "EUR",
                "description": "salary", "account_name": "Main", "bank_name": "Test Bank",
                "counterparty": {"id": "c1", "iban": "DE89370400440532013000", "name": "ACME"},
                "related_entities": [{"user_id": "u1", "customer_ids": ["c9"]}]}
    elif type_ == "balance.changed":
        data = {"balance": "10.50", "previous_balance": "5.00", "currency": "EUR"}
    else:
        raise ValueError(type_)
    ev = {"type": type_, "occurred_at": "2026-11-25T10:15:00Z", "bank_id": bank_id,
          "account_id": account_id, "data": data}
    if event_id is not None:
        ev["id"] = event_id
    ev.update(extra)
    return ev


def sanitizer_reports(paths: list[Path]) -> list[str]:
    found = []
    for p in paths:
        try:
            text = p.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            if SANITIZER_RE.search(line):
                found.append(f"{p}: {line.strip()}")
                break
    return found


# ------------------------------------------------------------------ API


class Api:
    """A requests session bound to the API with one bearer token."""

    def __init__(self, base: str, token: str | None):
        self.base = base
        self.s = requests.Session()
        if token:
            self.s.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 15)
        return self.s.request(method, self.base + path, **kw)

    def get(self, path: str, **kw):
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw):
        return self.request("POST", path, **kw)

    def expect(self, method: str, path: str, status: int, **kw) -> Any:
        r = self.request(method, path, **kw)
        assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text[:500]}"
        return r.json() if r.content else None

    # identity
    def create_client(self, name: str | None = None) -> dict:
        return self.expect("POST", "/v1/clients", 201, json={"name": name or unique("client")})

    def create_user(self, client_id: str, username: str | None = None) -> dict:
        return self.expect("POST", f"/v1/clients/{client_id}/users", 201,
                           json={"username": username or unique("user")})

    def create_token(self, user_id: str) -> dict:
        return self.expect("POST", "/v1/tokens", 201, json={"user_id": user_id})

    def grant(self, client_id: str, **body) -> dict:
        """A data grant (admin): bank_id [account_id] or acquirer_id [merchant_id]."""
        return self.expect("POST", f"/v1/clients/{client_id}/grants", 201, json=body)

    def create_endpoint(self, url: str, **body) -> dict:
        ep = self.expect("POST", "/v1/endpoints", 201, json={"url": url, **body})
        assert ep.get("id") and ep.get("secret", "").startswith("whsec_"), ep
        return ep

    def deliveries(self, **query) -> list[dict]:
        """Every delivery matching the query, following next_cursor."""
        out, cursor = [], None
        for _ in range(100):
            q = dict(query, limit=1000)
            if cursor:
                q["cursor"] = cursor
            page = self.expect("GET", "/v1/deliveries", 200, params=q)
            out.extend(page["data"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return out


# --------------------------------------------------------------- stack


class PatientApi(Api):
    """An admin on a stack with small rate limits: one connection per call
    (so the per-address connection cap is not what it trips), and a 429
    waited out as Retry-After says, so setup never fails on the limit the
    test is about."""

    def __init__(self, base: str, token: str | None):
        super().__init__(base, token)
        self.s.headers["Connection"] = "close"

    def request(self, method: str, path: str, **kw) -> requests.Response:
        for _ in range(60):
            r = super().request(method, path, **kw)
            if r.status_code != 429:
                return r
            time.sleep(int(r.headers["Retry-After"]))
        return r


@dataclass
class Stack:
    run_dir: Path
    ports: dict[str, int]
    env: dict[str, str]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    expected_exit: set[int] = field(default_factory=set)  # pids we killed on purpose
    deaths: list[str] = field(default_factory=list)

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    @property
    def brokers(self) -> str:
        return f"127.0.0.1:{self.ports['kafka']}"

    def api(self, token: str | None = ADMIN_TOKEN) -> Api:
        return Api(self.api_url, token)

    # -- commands

    def run_cmd(self, args: list[str], logname: str, timeout: float = 180) -> None:
        with open(self.log_dir / logname, "ab") as log:
            r = subprocess.run(args, cwd=REPO, env=self.env, stdin=subprocess.DEVNULL,
                               stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
        if r.returncode != 0:
            tail = (self.log_dir / logname).read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{' '.join(args)} failed ({r.returncode}):\n{tail}")

    def start(self, name: str, binary: str | None = None,
              env: dict[str, str] | None = None) -> None:
        """Starts bin/bankhook-<binary or name> as process `name`, its
        output appended to logs/<name>.log; env adds to the stack's."""
        argv = COMMANDS[binary or name]
        log = open(self.log_dir / f"{name}.log", "ab")
        # Own session: a Ctrl-C of pytest reaches us, and we stop them in order.
        self.procs[name] = subprocess.Popen([str(BIN / argv[0])] + argv[1:], cwd=REPO,
                                            env=dict(self.env, **(env or {})),
                                            stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def http_port(self, name: str) -> int:
        return self.ports[name if name == "api" else f"{name}_http"]

    def wait_ready(self, name: str, timeout: float = 60) -> None:
        url = f"http://127.0.0.1:{self.http_port(name)}/readyz"

        def ready():
            p = self.procs[name]
            if p.poll() is not None:
                tail = (self.log_dir / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"bankhook-{name} exited with {p.returncode}:\n{tail}")
            try:
                return requests.get(url, timeout=2).status_code == 200
            except requests.RequestException:
                return False

        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer 200 within {timeout}s")
            time.sleep(0.2)

    def stop(self, name: str, kill9: bool = False, timeout: float = 15) -> int | None:
        p = self.procs.get(name)
        if p is None or p.poll() is not None:
            if p is not None and p.pid not in self.expected_exit:
                self.deaths.append(f"bankhook-{name} (pid {p.pid}) exited by itself "
                                   f"with {p.returncode}")
            return None if p is None else p.returncode
        self.expected_exit.add(p.pid)
        p.send_signal(signal.SIGKILL if kill9 else signal.SIGTERM)
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.deaths.append(f"bankhook-{name} ignored SIGTERM for {timeout}s")
            p.kill()
            return p.wait()

    def restart_worker(self, kill9: bool = True) -> None:
        """Kills the worker (SIGKILL by default: no drain, no commit) and
        starts a new one on the same configuration."""
        self.stop("worker", kill9=kill9)
        self.start("worker")
        self.wait_ready("worker")

    # -- more workers (scale-out tests)

    def start_extra_worker(self, name: str = "worker2") -> None:
        """Starts another bankhook-worker in the same consumer group, with
        its own ops port (ports[name + "_http"]) and logs/<name>.log.
        Stop it with stop(name); wait_ready(name) and metrics(name) work."""
        assert name not in PROCS, name
        port = free_ports(1)[0]
        self.ports[f"{name}_http"] = port
        self.start(name, binary="worker", env={"BANKHOOK_WORKER_HTTP_PORT": str(port)})

    # -- observation

    def metrics(self, name: str) -> dict[str, float]:
        """The process's /metrics as {"name{labels}": value}."""
        r = requests.get(f"http://127.0.0.1:{self.http_port(name)}/metrics", timeout=5)
        r.raise_for_status()
        out = {}
        for line in r.text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    def peak_rss_mb(self, name: str) -> float | None:
        """VmHWM (peak resident set) of a running process, in MiB."""
        p = self.procs.get(name)
        if p is None or p.poll() is not None:
            return None
        try:
            for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
        except OSError:
            pass
        return None

    def sql(self, query: str, timeout: float = 30) -> str:
        """One query through psql; its unaligned, tuples-only output."""
        r = subprocess.run(["psql", "-X", "-q", "-tA", "-h", "127.0.0.1", "-p",
                            str(self.ports["pg"]), "-U", "postgres", "-d", "bankhook",
                            "-c", query], capture_output=True, text=True, timeout=timeout,
                           env=self.env)
        if r.returncode != 0:
            raise RuntimeError(f"psql: {r.stderr.strip()}")
        return r.stdout.strip()

    def infra(self, command: str, timeout: float = 240) -> None:
        """deploy/stack.sh <command> on this stack (pg-restart, kafka-restart, ...)."""
        self.run_cmd([str(STACK), command], "stack.log", timeout=timeout)

    # -- Kafka

    def produce(self, messages: list[str] | str, key: str | None = None,
                topic: str = TOPIC_EVENTS, keys: list[str] | None = None) -> None:
        """Writes messages (one per line; no newlines inside) with kcat.
        Either one fixed key, or one key per message."""
        if isinstance(messages, str):
            messages = [messages]
        assert all("\n" not in m for m in messages)
        args = ["kcat", "-P", "-b", self.brokers, "-t", topic]
        if keys is not None:
            assert len(keys) == len(messages) and all("\t" not in k for k in keys)
            args += ["-K", "\t"]
            data = "".join(f"{k}\t{m}\n" for k, m in zip(keys, messages))
        else:
            if key is not None:
                args += ["-k", key]
            data = "".join(m + "\n" for m in messages)
        subprocess.run(args, input=data.encode(), check=True, timeout=60,
                       stdout=subprocess.DEVNULL)

    def consume(self, topic: str) -> list[dict]:
        """Every message on topic so far, as kcat JSON envelopes
        ({"key","payload","partition","offset",...})."""
        r = subprocess.run(["kcat", "-C", "-b", self.brokers, "-t", topic, "-e", "-o",
                            "beginning", "-J", "-q"], capture_output=True, timeout=60,
                           check=True)
        return [json.loads(line) for line in r.stdout.decode().splitlines() if line.strip()]

    # -- teardown

    def all_logs(self) -> list[Path]:
        return sorted(self.log_dir.glob("*.log"))


def stack_env(run_dir: Path, ports: dict[str, int],
              overrides: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every stack command and process: the stack's
    ports and run dir, then `overrides` (TEST_OVERRIDES for the e2e tests)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANKHOOK_")}
    env.update({
        # deploy/stack.sh
        "BH_RUN_DIR": str(run_dir),
        "BH_PG_PORT": str(ports["pg"]),
        "BH_PG_FAST": "0",
        "BH_KAFKA_PORT": str(ports["kafka"]),
        "BH_KAFKA_CONTROLLER_PORT": str(ports["kafka_controller"]),
        "BH_KAFKA_LIBS": os.environ.get("BH_KAFKA_LIBS", str(REPO / ".run" / "kafka-libs")),
        # bankhook's configuration (common/config.c)
        "BANKHOOK_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{ports['pg']}/bankhook",
        "BANKHOOK_KAFKA_BROKERS": f"127.0.0.1:{ports['kafka']}",
        "BANKHOOK_API_HOST": "127.0.0.1",
        "BANKHOOK_API_PORT": str(ports["api"]),
        "BANKHOOK_API_ADMIN_TOKEN": ADMIN_TOKEN,
        "BANKHOOK_WORKER_HTTP_PORT": str(ports["worker_http"]),
        "BANKHOOK_SCHEDULER_HTTP_PORT": str(ports["scheduler_http"]),
        "BANKHOOK_DELIVERY_ALLOW_LOOPBACK": "true",
        # sanitizer builds: full reports in the logs, leaks checked at exit
        "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0"),
        "UBSAN_OPTIONS": os.environ.get("UBSAN_OPTIONS", "print_stacktrace=1"),
    })
    env.update(overrides or {})
    return env


def missing_binaries() -> list[str]:
    """The programs a stack runs that are not built yet."""
    return [f"bin/bankhook-{n}" for n in PROCS if not (BIN / f"bankhook-{n}").exists()]


def missing_tools(tools: tuple[str, ...] = ("kcat", "java")) -> list[str]:
    return [tool for tool in tools if shutil.which(tool) is None]


def new_stack(prefix: str, overrides: dict[str, str] | None = None) -> Stack:
    """A Stack on free ports in a fresh run directory; nothing started yet."""
    # Under /tmp, not pytest's tmp_path: /tmp/pytest-of-root is 0700 and the
    # postgres OS user (PostgreSQL runs as it when we are root) must get in.
    run_dir = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(run_dir, 0o755)
    (run_dir / "logs").mkdir()
    ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES))))
    return Stack(run_dir=run_dir, ports=ports, env=stack_env(run_dir, ports, overrides))


def start_stack(st: Stack, procs: tuple[str, ...] = PROCS) -> None:
    """PostgreSQL and Kafka, the schema and topics, then `procs`, ready."""
    st.infra("infra-up")
    for verb in ("migrate", "create-topics"):
        argv = COMMANDS[verb]
        st.run_cmd([str(BIN / argv[0])] + argv[1:], f"{verb}.log")
    for name in procs:
        st.start(name)
    for name in procs:
        st.wait_ready(name)


def stop_stack(st: Stack, keep: bool = False) -> list[str]:
    """Stops every process (extra workers first) and the infrastructure,
    then scans the logs for sanitizer reports. Returns what went wrong
    (processes that died by themselves, reports, a failed infra-down);
    removes the run directory unless something did or `keep` (the caller
    says where it is)."""
    failure: list[str] = []
    extras = [n for n in st.procs if n not in PROCS]
    for name in extras + list(reversed(PROCS)):  # scheduler, worker, then api
        st.stop(name)
    try:
        st.infra("infra-down", timeout=120)
    except Exception as exc:  # still scan the logs and clean up
        failure.append(f"infra-down: {exc}")
    failure += st.deaths
    reports = sanitizer_reports(st.all_logs())
    if reports:
        failure.append("sanitizer reports:\n  " + "\n  ".join(reports))
    if not (failure or keep):
        shutil.rmtree(st.run_dir, ignore_errors=True)
    return failure


def private_stack(prefix: str, overrides: dict[str, str] | None, what: str,
                  procs: tuple[str, ...] = PROCS) -> Iterator[Stack]:
    """The body of a pytest fixture with a stack of its own: started, yielded,
    stopped; the run directory is kept (and named) when anything went wrong
    or BH_KEEP_RUN is set, and a teardown failure (a process that died, a
    sanitizer report) fails the tests. `yield from private_stack(...)`."""
    st = new_stack(prefix, overrides)
    print(f"\n{what} stack in {st.run_dir}: {st.ports}")
    failure: list[str] = []
    try:
        start_stack(st, procs)
        yield st
    finally:
        keep = bool(os.environ.get("BH_KEEP_RUN"))
        failure = stop_stack(st, keep=keep)
        if failure or keep:
            print(f"\n{what} run directory kept: {st.run_dir}")
    if failure:
        pytest.fail(f"{what} stack teardown: " + "\n".join(failure), pytrace=False)


def serve_http(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """A threaded HTTP server on a free loopback port, already serving in the
    background: the tests' receivers and fake connectors. Its port is
    server.server_address[1]; shutdown() and server_close() stop it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
