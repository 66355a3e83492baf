"""Checks that need no running stack: the compose file and Dockerfile are
well formed and complete, the CI entry point is in place, and the
Standard Webhooks helper the e2e tests verify with is itself right."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import BIN, REPO
from harness import COMMANDS, PORT_NAMES, stack_env
from webhooks import sign

COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


BANKHOOK_SERVICES = ("migrate", "create-topics", "api", "scheduler", "worker")
ENTRYPOINT = REPO / "deploy" / "entrypoint.sh"


def config_keys() -> dict[str, tuple[str, str]]:
    """BANKHOOK_<SECTION>_<KEY> -> (type, default), from the binary's table."""
    out = subprocess.run([str(BIN / "bankhook-api"), "config-keys"], capture_output=True,
                         text=True, check=True).stdout
    keys = {}
    for line in out.splitlines():
        section, key, type_, default = line.split("\t")
        keys[f"BANKHOOK_{section.upper()}_{key.upper()}"] = (type_, default)
    assert len(keys) > 20, out
    return keys


def entrypoint_command(verb: str) -> list[str]:
    """The command deploy/entrypoint.sh would exec for a verb."""
    r = subprocess.run(["sh", str(ENTRYPOINT), verb], capture_output=True, text=True,
                       check=True, env={"PATH": os.environ["PATH"],
                                        "BH_ENTRYPOINT_DRY_RUN": "1"})
    return r.stdout.split()


def test_compose_has_every_service(compose):
    assert set(compose["services"]) >= {"postgres", "kafka", *BANKHOOK_SERVICES}


def test_compose_config_accepts_the_file():
    """`docker compose config` validates against the Compose schema where a
    client is installed; without one the YAML checks below stand alone."""
    if shutil.which("docker") is None or subprocess.run(
            ["docker", "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("no docker compose client here; the YAML checks stand alone")
    r = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "config", "-q"],
                       capture_output=True, text=True,
                       env=dict(os.environ, BANKHOOK_API_ADMIN_TOKEN="bh_admin_" + "0" * 32))
    assert r.returncode == 0, r.stderr


def test_compose_pins_postgres_15_and_kafka_kraft_of_the_local_version(compose):
    s = compose["services"]
    assert s["postgres"]["image"].startswith("postgres:15")
    pom = (REPO / "deploy" / "kafka" / "pom.xml").read_text()
    version = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom).group(1)
    assert s["kafka"]["image"] == f"apache/kafka:{version}"
    env = s["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert "zookeeper" not in s


def test_compose_postgres_and_kafka_keep_their_data_in_volumes(compose):
    for name, path in (("postgres", "/var/lib/postgresql/data"),
                       ("kafka", "/var/lib/kafka/data")):
        vols = compose["services"][name]["volumes"]
        named = [v.split(":")[0] for v in vols if v.split(":")[1] == path]
        assert named and named[0] in compose["volumes"], (name, vols)


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
    assert "replicas" in w["deploy"]
    # No other service may pin a name either: `--scale` copies need their own.
    assert not [n for n, s in compose["services"].items() if "container_name" in s]


def test_compose_topics_have_partitions_for_several_workers(compose):
    env = compose["services"]["create-topics"]["environment"]
    value = env["BANKHOOK_KAFKA_PARTITIONS"]
    default = int(re.fullmatch(r"\$\{BANKHOOK_KAFKA_PARTITIONS:-(\d+)\}", value).group(1))
    assert default >= 8, "fewer partitions than workers one would scale to"


def test_compose_one_shots_run_before_the_rest(compose):
    s = compose["services"]
    assert s["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert s["create-topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in ("migrate", "create-topics"):
        assert s[name].get("restart") == "no", name
    for name in ("api", "scheduler", "worker"):
        for dep in ("migrate", "create-topics"):
            cond = s[name]["depends_on"][dep]["condition"]
            assert cond == "service_completed_successfully", (name, dep)


@pytest.mark.parametrize("name", BANKHOOK_SERVICES)
def test_compose_runs_what_the_harness_runs(compose, name):
    """Each container's command is an entry-point verb that execs the very
    command the e2e harness starts natively, which the binary accepts."""
    svc = compose["services"][name]
    assert svc["command"] == [name]
    argv = entrypoint_command(name)
    assert argv == COMMANDS[name], (argv, COMMANDS[name])
    if len(argv) > 1:  # a sub-command: the binary's usage must list it
        usage = subprocess.run([str(BIN / argv[0]), "--no-such-option"], capture_output=True,
                               text=True).stderr
        assert re.search(rf"[\[|]{re.escape(argv[1])}[|\]]", usage), usage


def test_entrypoint_passes_other_commands_through():
    assert entrypoint_command("sh") == ["sh"]
    r = subprocess.run(["sh", str(ENTRYPOINT)], capture_output=True, text=True,
                       env={"PATH": os.environ["PATH"], "BH_ENTRYPOINT_DRY_RUN": "1"})
    assert r.stdout.split() == COMMANDS["api"], "no argument serves the api"


@pytest.mark.parametrize("name", BANKHOOK_SERVICES)
def test_compose_environment_is_the_harness_environment(compose, name):
    """Configuration through BANKHOOK_* variables only: every one a key of
    the configuration table, and every key the harness sets natively set
    in the container too (pointing at the containers)."""
    env = compose["services"][name]["environment"]
    keys = config_keys()
    assert all(k in keys for k in env), sorted(set(env) - set(keys))
    native = stack_env(Path("/tmp/x"), dict.fromkeys(PORT_NAMES, 1))
    harness_keys = {k for k in native if k.startswith("BANKHOOK_")}
    assert harness_keys <= set(env), sorted(harness_keys - set(env))
    assert "@postgres:5432/" in env["BANKHOOK_DATABASE_URL"], name
    assert env["BANKHOOK_KAFKA_BROKERS"] == "kafka:9092", name
    assert env["BANKHOOK_API_HOST"] == "0.0.0.0"


def test_compose_bakes_no_secret(compose):
    """The admin token must come from the operator's environment, and the
    image build copies no configuration file that could hold one."""
    env = compose["services"]["api"]["environment"]
    assert re.fullmatch(r"\$\{BANKHOOK_API_ADMIN_TOKEN:\?[^}]+\}",
                        env["BANKHOOK_API_ADMIN_TOKEN"])
    text = DOCKERFILE.read_text()
    assert "bankhook.yaml" not in re.sub(r"(?m)^#.*$", "", text)
    assert not re.search(r"(?mi)^\s*(ENV|ARG)\s+\S*(TOKEN|SECRET|PASSWORD)", text)


def test_dockerfile_is_multi_stage_bookworm():
    text = DOCKERFILE.read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(froms) >= 2, froms
    assert all("bookworm" in f for f in froms), froms
    assert "-dev" in text.split("FROM")[1], "the build stage installs -dev packages"
    runtime = text.rsplit("FROM", 1)[1]
    assert "-dev " not in runtime, "no -dev packages in the runtime image"
    assert "COPY --from=build" in runtime
    user = re.search(r"^USER\s+(\S+)", runtime, re.M)
    assert user and not user.group(1).startswith(("root", "0")), "runs as root"


def test_dockerfile_ships_what_the_programs_read_at_run_time():
    """The three binaries, the entry point, the migrations and the OpenAPI
    document at the default (relative) paths of the configuration."""
    runtime = DOCKERFILE.read_text().rsplit("FROM", 1)[1]
    for what in ("bankhook-api", "bankhook-scheduler", "bankhook-worker"):
        assert f"/src/bin/{what}" in runtime, what
    keys = config_keys()
    assert re.search(r"^WORKDIR\s+/opt/bankhook", runtime, re.M)
    for key in ("BANKHOOK_DATABASE_MIGRATIONS_DIR", "BANKHOOK_API_OPENAPI_PATH"):
        rel = keys[key][1]
        assert re.search(rf"^COPY\s+{re.escape(rel)}/?\s+{re.escape(rel)}/?$", runtime,
                         re.M), (key, rel)
    assert re.search(r'^ENTRYPOINT\s+\["bankhook-entrypoint"\]', runtime, re.M)
    assert "deploy/entrypoint.sh /usr/local/bin/bankhook-entrypoint" in runtime
    ignored = (REPO / ".dockerignore").read_text().split()
    for needed in ("docs", "deploy", "common", "api", "worker", "scheduler", "Makefile"):
        assert needed not in ignored, needed


def test_ci_entry_point_is_executable_bash():
    ci = REPO / ".ci" / "run"
    assert os.access(ci, os.X_OK)
    text = ci.read_text()
    # -e is left out on purpose: every phase runs even when an earlier one failed.
    assert text.startswith("#!/usr/bin/env bash") and "set -uo pipefail" in text
    assert "deploy/setup.sh" in text and "make test" in text
    # The sanitizer run of the suite and the fuzz targets are part of CI (issue 8).
    assert "make SANITIZE=address,undefined test" in text and "make fuzz" in text


def test_product_code_is_clang_formatted():
    """`make format-check` (STYLE.md): the product code is in the style of
    .clang-format, so `make format` on a change touches only that change."""
    if shutil.which("clang-format") is None:
        pytest.fail("clang-format not found (run deploy/setup.sh)", pytrace=False)
    r = subprocess.run(["make", "-s", "format-check"], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]


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
