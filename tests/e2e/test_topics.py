"""`bankhook-api create-topics` (the compose one-shot): creates missing
topics with kafka.partitions partitions, grows existing ones that have
fewer (more workers can then share them), never shrinks any, and is
idempotent. Uses topic names of its own, so the stack's topics and
consumer group are untouched."""

from __future__ import annotations

import re
import subprocess
import uuid

from conftest import BIN, REPO


def partitions(stack, topic: str) -> int:
    out = subprocess.run(["kcat", "-b", stack.brokers, "-L", "-t", topic], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    m = re.search(rf'topic "{re.escape(topic)}" with (\d+) partitions', out)
    assert m, out
    return int(m.group(1))


def create_topics(stack, names: dict[str, str], count: int) -> str:
    env = dict(stack.env, BANKHOOK_KAFKA_PARTITIONS=str(count), **names)
    r = subprocess.run([str(BIN / "bankhook-api"), "create-topics"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stderr


def test_create_topics_creates_grows_and_never_shrinks(stack):
    run = uuid.uuid4().hex[:8]
    names = {f"BANKHOOK_KAFKA_TOPIC_{k}": f"t-{run}-{k.lower()}"
             for k in ("EVENTS", "DELIVERIES", "REFRESH", "DLQ")}
    topics = list(names.values())

    create_topics(stack, names, 2)
    assert [partitions(stack, t) for t in topics] == [2] * 4

    log = create_topics(stack, names, 5)
    assert [partitions(stack, t) for t in topics] == [5] * 4
    assert f"topic {topics[0]}: growing from 2 to 5 partitions" in log

    log = create_topics(stack, names, 3)  # fewer: left as they are
    assert [partitions(stack, t) for t in topics] == [5] * 4
    assert "growing" not in log
    create_topics(stack, names, 5)  # again: nothing to do, still exit 0
