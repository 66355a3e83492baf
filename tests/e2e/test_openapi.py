"""docs/openapi.yaml against the api: every registered route is documented
and nothing is documented that is not registered, and the running api
serves the document at GET /openapi.yaml."""

from __future__ import annotations

import subprocess

import requests
import yaml

from conftest import BIN, REPO, free_ports

DOC = REPO / "docs" / "openapi.yaml"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def registered_routes() -> set[tuple[str, str]]:
    out = subprocess.run([str(BIN / "bankhook-api"), "routes"], capture_output=True, text=True,
                         check=True).stdout
    routes = set()
    for line in out.splitlines():
        method, pattern = line.split(" ", 1)
        routes.add((method.upper(), pattern))
    return routes


def documented_routes(doc: dict) -> set[tuple[str, str]]:
    return {(m.upper(), path) for path, item in doc["paths"].items()
            for m in item if m in METHODS}


def test_every_registered_route_is_documented_and_only_those():
    doc = yaml.safe_load(DOC.read_text())
    registered, documented = registered_routes(), documented_routes(doc)
    assert len(registered) > 30
    missing = sorted(registered - documented)
    extra = sorted(documented - registered)
    assert not missing, f"registered but not in docs/openapi.yaml: {missing}"
    assert not extra, f"in docs/openapi.yaml but not registered: {extra}"


def test_document_is_openapi_3_with_resolvable_refs():
    doc = yaml.safe_load(DOC.read_text())
    assert doc["openapi"].startswith("3.")

    def walk(node, path="#"):
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                target = doc
                for part in ref.lstrip("#/").split("/"):
                    assert part in target, f"{path}: unresolvable $ref {ref}"
                    target = target[part]
            for k, v in node.items():
                walk(v, f"{path}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}/{i}")

    walk(doc)
    # Every {param} of a path is declared as a path parameter of it.
    for path, item in doc["paths"].items():
        names = {seg[1:-1] for seg in path.split("/") if seg.startswith("{")}
        for m, op in item.items():
            if m not in METHODS:
                continue
            params = list(item.get("parameters", [])) + list(op.get("parameters", []))
            declared = set()
            for p in params:
                if "$ref" in p:
                    p = doc["components"]["parameters"][p["$ref"].rsplit("/", 1)[1]]
                if p["in"] == "path":
                    declared.add(p["name"])
            assert names == declared, (m, path, names, declared)


def test_api_serves_the_document(stack):
    r = requests.get(stack.api_url + "/openapi.yaml", timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/yaml")
    assert r.content == DOC.read_bytes()


def test_api_without_the_document_answers_404_and_keeps_serving(stack):
    """api.openapi_path names a file that is not there: 404 with the
    native error, and the rest of the api works."""
    port = free_ports(1)[0]
    stack.ports["api_nodoc_http"] = port
    stack.start("api_nodoc", binary="api",
                env={"BANKHOOK_API_PORT": str(port),
                     "BANKHOOK_API_OPENAPI_PATH": "/nonexistent/openapi.yaml"})
    try:
        stack.wait_ready("api_nodoc")
        r = requests.get(f"http://127.0.0.1:{port}/openapi.yaml", timeout=10)
        assert r.status_code == 404, r.text
        assert r.json()["error"]["code"] == "not_found"
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
    finally:
        assert stack.stop("api_nodoc") == 0
