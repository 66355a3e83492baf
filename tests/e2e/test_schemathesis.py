"""Schemathesis (property-based API fuzzing) against docs/openapi.yaml and
the running api, with the admin token so every route is reachable: no
5xx, every status, content type, header and body as documented, invalid
input rejected. Bounded
(BH_SCHEMATHESIS_EXAMPLES per operation; default 40 as admin, 20 as a
client) so both runs stay under 2 minutes on 2 cores. The seed is fixed for reproducible CI runs;
set BH_SCHEMATHESIS_SEED to explore others."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from conftest import ADMIN_TOKEN, REPO

DOC = REPO / "docs" / "openapi.yaml"
# Conformance of every response, plus: input the document calls invalid is
# rejected with a 4xx, and a deleted resource is gone / a created one there.
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance",
          "negative_data_rejection", "use_after_free", "ensure_resource_availability")


def client_token(admin) -> tuple[str, str]:
    """A fresh client and a token of one of its users (no role)."""
    client = admin.create_client()
    user = admin.create_user(client["id"])
    return client["id"], admin.create_token(user["id"])["token"]


@pytest.mark.parametrize("who,examples", [("admin", 40), ("client", 20)])
def test_api_conforms_to_its_openapi_document(stack, admin, tmp_path, who, examples):
    """As admin every route is reachable; as a plain client the scoped
    paths (own data only, roles refused) are fuzzed too."""
    if importlib.util.find_spec("schemathesis") is None:
        pytest.fail("schemathesis is not installed (run deploy/setup.sh)", pytrace=False)
    headers = [f"Authorization: Bearer {ADMIN_TOKEN}"]
    if who == "client":
        client_id, token = client_token(admin)
        # x-ibm-client-id must name the token's client for the acquirer dialect.
        headers = [f"Authorization: Bearer {token}", f"x-ibm-client-id: {client_id}"]
    examples = int(os.environ.get("BH_SCHEMATHESIS_EXAMPLES", examples))
    seed = os.environ.get("BH_SCHEMATHESIS_SEED", "20261126")
    report = tmp_path / "junit.xml"
    # One worker: with two, Hypothesis parses source in both threads at once and
    # CPython 3.11's ast.parse is not thread-safe there ("SystemError: AST
    # constructor recursion depth mismatch", CPython gh-106905); it failed CI
    # once in a few runs, depending on PYTHONHASHSEED (1 reproduces it).
    args = [sys.executable, "-m", "schemathesis.cli", "run", str(DOC), "--url", stack.api_url,
            "--checks", ",".join(CHECKS),
            "--max-examples", str(examples), "--seed", seed,
            "--phases", "examples,coverage,fuzzing,stateful",
            "--workers", "1", "--request-timeout", "20",
            "--report", "junit", "--report-junit-path", str(report),
            "--no-color"]
    for h in headers:
        args += ["-H", h]
    r = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, "schemathesis found problems:\n" + out[-12000:]
    assert "Tested: 0" not in out and report.exists(), out[-3000:]
    # The api must still be up: no crash under the fuzzing.
    assert stack.procs["api"].poll() is None, "bankhook-api died during the run"


# Regressions schemathesis found, kept as plain cases.

def test_reply_quoting_input_cut_mid_character_is_still_json(stack, admin):
    """An error message quoting input with "%.40s" cut a 4-byte character
    in half; the reply was no longer UTF-8, JSON encoding failed, and the
    api answered 500 instead of 404 (DELETE /banksocket/v1/webhooks/{id})."""
    r = admin.request("DELETE", "/banksocket/v1/webhooks/a" + "\U0001d57f" * 12)
    assert r.status_code == 404, r.text
    assert r.json()["message"].startswith("id: no webhook a\U0001d57f")
    # The same through the native envelope: an unknown member's name is quoted cut to 100 bytes.
    r = admin.request("POST", "/v1/clients", json={"\u20ac" * 40: 1})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"].endswith(": unknown field")
