#!/usr/bin/env bash
# Installs what bankhook needs to build, test and run locally, only when it is
# missing: Debian packages, Python test modules, and the Apache Kafka jars
# (from Maven Central into .run/kafka-libs). A second call does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential pkg-config librdkafka-dev libpq-dev
          libcurl4-openssl-dev libjansson-dev libyaml-dev libmicrohttpd-dev
          libssl-dev libcmocka-dev postgresql kcat maven
          openjdk-17-jre-headless python3 curl
          clang-14 libclang-rt-14-dev   # make fuzz: clang with libFuzzer
          clang-format)                 # make format-check
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! python3 -c 'import pytest, requests, cryptography, yaml' 2>/dev/null; then
    echo "setup: installing pytest, requests, cryptography and PyYAML"
    python3 -m pip install -q pytest requests cryptography pyyaml 2>/dev/null ||
        python3 -m pip install -q --break-system-packages pytest requests cryptography pyyaml
fi

# Schemathesis fuzzes the api against docs/openapi.yaml (tests/e2e/test_schemathesis.py).
# Pinned: its CLI options and checks change between releases; 4.x runs on Python 3.9+.
SCHEMATHESIS_VERSION=4.32.5
if [ "$(python3 -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null)" \
        != "$SCHEMATHESIS_VERSION" ]; then
    echo "setup: installing schemathesis $SCHEMATHESIS_VERSION"
    python3 -m pip install -q "schemathesis==$SCHEMATHESIS_VERSION" 2>/dev/null ||
        python3 -m pip install -q --break-system-packages "schemathesis==$SCHEMATHESIS_VERSION"
fi

libs=.run/kafka-libs
if ! ls "$libs"/kafka_2.13-*.jar >/dev/null 2>&1; then
    echo "setup: fetching Apache Kafka jars from Maven Central"
    mkdir -p "$libs"
    mvn -q -B -f deploy/kafka/pom.xml dependency:copy-dependencies \
        -DoutputDirectory="$PWD/$libs" -DincludeScope=runtime
fi
