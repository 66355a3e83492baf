"""Checks that need no running stack: the compose file and Dockerfile are
well formed and complete, the CI entry point is in place, and the
Standard Webhooks helper the e2e tests verify with is itself right."""

from __future__ import annotations

import os
import re

import pytest
import yaml

from conftest import REPO
from webhooks import sign

COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_has_every_service(compose):
    assert set(compose["services"]) >= {"postgres", "kafka", "init", "api", "scheduler",
                                        "worker"}


def test_compose_pins_postgres_15_and_kafka_kraft(compose):
    s = compose["services"]
    assert s["postgres"]["image"].startswith("postgres:15")
    assert s["kafka"]["image"] == "apache/kafka:3.9.1"
    env = s["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert "zookeeper" not in s


@pytest.mark.parametrize("name", ["postgres", "kafka", "api", "scheduler", "worker"])
def test_compose_service_has_healthcheck(compose, name):
    hc = compose["services"][name].get("healthcheck")
    assert hc and hc.get("test"), f"{name} has no healthcheck"


@pytest.mark.parametrize("name,port", [("api", 8080), ("scheduler", 8082), ("worker", 8081)])
def test_compose_bankhook_healthcheck_uses_health_route(compose, name, port):
    test = " ".join(compose["services"][name]["healthcheck"]["test"])
    assert re.search(rf"127\.0\.0\.1:{port}/(healthz|readyz)", test), test


def test_compose_worker_is_scalable(compose):
    w = compose["services"]["worker"]
    assert "container_name" not in w
    assert "ports" not in w


def test_compose_init_runs_migrations_and_topics_before_the_rest(compose):
    s = compose["services"]
    cmd = " ".join(s["init"]["command"])
    assert "migrate" in cmd and "create-topics" in cmd
    assert s["init"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert s["init"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in ("api", "scheduler", "worker"):
        dep = s[name]["depends_on"]["init"]["condition"]
        assert dep == "service_completed_successfully", name


def test_compose_points_bankhook_at_the_containers(compose):
    for name in ("init", "api", "scheduler", "worker"):
        env = compose["services"][name]["environment"]
        assert "@postgres:5432/" in env["BANKHOOK_DATABASE_URL"], name
        assert env["BANKHOOK_KAFKA_BROKERS"] == "kafka:9092", name
        assert all(k.startswith("BANKHOOK_") for k in env), name


def test_dockerfile_is_multi_stage_bookworm():
    text = DOCKERFILE.read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(froms) >= 2, froms
    assert all("bookworm" in f for f in froms), froms
    assert "-dev" in text.split("FROM")[1], "the build stage installs -dev packages"
    runtime = text.rsplit("FROM", 1)[1]
    assert "-dev " not in runtime, "no -dev packages in the runtime image"
    assert "COPY --from=build" in runtime
    assert "USER" in runtime, "the runtime image does not run as root"


def test_ci_entry_point_is_executable_bash():
    ci = REPO / ".ci" / "run"
    assert os.access(ci, os.X_OK)
    text = ci.read_text()
    # -e is left out on purpose: every phase runs even when an earlier one failed.
    assert text.startswith("#!/usr/bin/env bash") and "set -uo pipefail" in text
    assert "deploy/setup.sh" in text and "make test" in text
    # The sanitizer run of the suite and the fuzz targets are part of CI (issue 8).
    assert "make SANITIZE=address,undefined test" in text and "make fuzz" in text


def test_clang_format_config_parses():
    conf = yaml.safe_load((REPO / ".clang-format").read_text())
    assert conf["UseTab"] and conf["IndentWidth"] == 8 and conf["ColumnLimit"] == 100


def test_webhook_helper_matches_published_standard_webhooks_vector():
    # So a wrong helper cannot make the signature e2e test pass.
    assert sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330, b'{"test": 2432232314}') == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.mark.parametrize("line,found", [
    ("==123==ERROR: AddressSanitizer: heap-use-after-free on address 0x6020", True),
    ("common/event.c:42:7: runtime error: signed integer overflow", True),
    ("==123==ERROR: LeakSanitizer: detected memory leaks", True),
    ("2026-11-25T10:15:00Z worker info delivered", False),
])
def test_harness_spots_sanitizer_reports(tmp_path, line, found):
    from conftest import sanitizer_reports
    log = tmp_path / "worker.log"
    log.write_text("starting\n" + line + "\nbye\n")
    assert bool(sanitizer_reports([log])) is found


# A real sanitizer report, not a hand-written line: the program below is
# built with the flags of `make SANITIZE=address,undefined` and run the way
# the harness runs the stack (output to a log), and both scanners (the
# teardown's and tests/lib.sh's, used for the unit tests) must find the
# report; a clean run must give none.
SANITIZED_PROGRAM = r"""
#include <limits.h>
#include <stdlib.h>
int main(int argc, char **argv)
{
	(void)argv;
	if (argc == 2) { /* heap-buffer-overflow */
		char *volatile p = malloc(8);
		p[argc + 6] = 1;
		return p[0];
	}
	if (argc == 3) { /* signed integer overflow (UBSan) */
		int x = INT_MAX - 1 + argc;
		return x;
	}
	if (argc == 4) { /* a leak (LeakSanitizer at exit) */
		void *volatile leak = malloc(64);
		leak = 0;
		return 0;
	}
	return 0; /* clean */
}
"""


@pytest.fixture(scope="module")
def sanitized_program(tmp_path_factory):
    import shutil
    import subprocess
    d = tmp_path_factory.mktemp("sanitized")
    (d / "prog.c").write_text(SANITIZED_PROGRAM)
    cc = shutil.which("cc")
    assert cc, "cc not found (deploy/setup.sh installs build-essential)"
    subprocess.run([cc, "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                    "-fno-omit-frame-pointer", "-o", str(d / "prog"), str(d / "prog.c")],
                   check=True, timeout=120)
    return d / "prog"


@pytest.mark.parametrize("args,kind", [
    (["a"], "AddressSanitizer"),
    (["a", "b"], "runtime error"),
    (["a", "b", "c"], "LeakSanitizer"),
    ([], None),
])
def test_scanners_spot_a_real_sanitizer_report(sanitized_program, tmp_path, args, kind):
    import subprocess
    from conftest import sanitizer_reports
    log = tmp_path / "proc.log"
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1")
    with open(log, "wb") as out:
        subprocess.run([str(sanitized_program), *args], stdout=out, stderr=subprocess.STDOUT,
                       env=env, timeout=60)
    text = log.read_text(errors="replace")
    found = sanitizer_reports([log])
    shell = subprocess.run(["bash", "-c", '. tests/lib.sh && bh_sanitizer_reports "$1"', "-",
                            str(log)], cwd=REPO, capture_output=True, text=True, timeout=60)
    if kind is None:
        assert not found and shell.returncode != 0, text
    else:
        assert kind in text, f"the program did not produce a {kind} report:\n{text}"
        assert found, f"teardown scanner missed:\n{text}"
        assert shell.returncode == 0 and str(log) in shell.stdout, f"lib.sh missed:\n{text}"
