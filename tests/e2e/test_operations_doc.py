"""docs/OPERATIONS.md against the programs: its configuration table is the
configuration table of the binaries (every key, type and default, both
ways), and its metrics list is what each process's /metrics exposes."""

from __future__ import annotations

import re
import subprocess

import requests

from conftest import BIN, REPO

DOC = REPO / "docs" / "OPERATIONS.md"


def doc_table(heading: str) -> list[list[str]]:
    """The rows of the first Markdown table after `## heading`, as cells
    with the backticks removed."""
    text = DOC.read_text()
    start = text.index(f"## {heading}\n")
    rows, in_table = [], False
    for line in text[start:].splitlines()[1:]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            in_table = True
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if set("".join(cells)) <= set("- "):
                continue  # the separator row
            rows.append([c.replace("`", "") for c in cells])
        elif in_table:
            break
    return rows[1:]  # without the header


def test_configuration_reference_is_the_config_table():
    out = subprocess.run([str(BIN / "bankhook-api"), "config-keys"], capture_output=True,
                         text=True, check=True).stdout
    actual = {}
    for line in out.splitlines():
        section, key, type_, default = line.split("\t")
        actual[f"{section}.{key}"] = (f"BANKHOOK_{section.upper()}_{key.upper()}", type_,
                                      default)
    documented = {}
    for row in doc_table("Configuration reference"):
        key, env, type_, default, meaning = row
        assert key not in documented, f"{key} documented twice"
        assert meaning, f"{key}: no meaning given"
        documented[key] = (env, type_, default)
    missing = sorted(set(actual) - set(documented))
    extra = sorted(set(documented) - set(actual))
    assert not missing, f"keys missing from docs/OPERATIONS.md: {missing}"
    assert not extra, f"documented keys that do not exist: {extra}"
    wrong = {k: (documented[k], actual[k]) for k in actual if documented[k] != actual[k]}
    assert not wrong, f"(documented, actual) differ: {wrong}"


def exposed_families(url: str) -> set[str]:
    text = requests.get(url, timeout=10).text
    return set(re.findall(r"^# TYPE (\S+) \S+$", text, re.M))


def test_metrics_list_is_what_the_processes_expose(stack):
    documented: dict[str, set[str]] = {}
    for process, metric, type_, meaning in doc_table("Observability"):
        name = metric.split("{", 1)[0]
        documented.setdefault(process, set()).add(name)
    assert set(documented) == {"api", "worker", "scheduler"}
    for process, names in documented.items():
        port = stack.http_port(process)
        exposed = exposed_families(f"http://127.0.0.1:{port}/metrics")
        assert names == exposed, (f"{process}: documented only {sorted(names - exposed)}, "
                                  f"exposed only {sorted(exposed - names)}")
