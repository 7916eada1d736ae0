"""Every ``python`` block of docs/*.md runs as written, each as a script in a fresh directory.

Docs whose blocks another test already runs (listed in ``COVERED_ELSEWHERE``) are left to
that test. A block that is not meant to run alone (it shows a signature, say) is marked
with an HTML comment line right before its fence, invisible when the page is rendered::

    <!-- fragment -->
    ```python

Prefer making a block complete over marking it. A block followed by a line ``prints``
and a ``text`` block must print exactly that. Warnings are errors (as in the suite), and
a block must not leak what Python reports on exit (unclosed sockets, pending tasks).

A block that names a broker URL needs that service: skipped when it is down on a
developer machine, a failure in CI. The docs name their broker objects ``docs_example``
(``DOCS_EXAMPLE``, ``docs.example``): each run gets a unique name instead, so concurrent
runs never share a stream or a group, and whatever a block left under that name (Redis
keys, a NATS stream) is deleted afterwards. RabbitMQ blocks delete their topology
themselves.
"""

from __future__ import annotations

import asyncio
import pathlib
import re
import shutil
import subprocess
import sys
from typing import NamedTuple

import pytest

from tests.conftest import require_service, unique_name
from tests.helpers import delete_redis_keys

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

#: doc -> the test that already runs its python blocks
COVERED_ELSEWHERE = {
    "notifications.md": "tests/notifications/test_docs.py",
    "replay.md": "tests/replay/test_docs.py",
    "security.md": "tests/security/test_docs.py",
    "store.md": "tests/store/test_docs.py",
}

FRAGMENT = "<!-- fragment -->"
FENCE = re.compile(r"^```python\n(.*?)^```\n", re.DOTALL | re.MULTILINE)
PRINTS = re.compile(r"\s*prints:?\n\s*```text\n(.*?)^```", re.DOTALL | re.MULTILINE)
#: a URL scheme in a block -> the service (and the pytest marker) it needs
SERVICES = {
    "redis://": "redis",
    "nats://": "nats",
    "amqp://": "rabbitmq",
    "postgresql://": "postgres",
    "postgres://": "postgres",
}
#: what Python writes to stderr about resources a script leaked
LEAKS = ("Exception ignored", "Task was destroyed", "was never awaited", "Unclosed")
EXAMPLE = "docs_example"
REDIS = "redis://127.0.0.1:6379/0"
NATS = "nats://127.0.0.1:4222"
RABBITMQ = "amqp://guest:guest@127.0.0.1:5672/"
TIMEOUT = 30


class Block(NamedTuple):
    number: int  # from 1, within its doc
    line: int  # of the block's first code line in the doc
    code: str
    fragment: bool
    prints: str | None  # the output shown below the block, if any


def parse(text: str) -> list[Block]:
    blocks = []
    for number, match in enumerate(FENCE.finditer(text), start=1):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        shown = PRINTS.match(text, match.end())
        blocks.append(
            Block(
                number,
                text.count("\n", 0, match.start()) + 2,
                match.group(1),
                before.strip() == FRAGMENT,
                shown.group(1) if shown else None,
            )
        )
    return blocks


def _docs() -> list[tuple[str, Block]]:
    return [
        (doc.name, block)
        for doc in sorted(DOCS.glob("*.md"))
        if doc.name not in COVERED_ELSEWHERE
        for block in parse(doc.read_text())
    ]


def _params() -> list[object]:
    params = []
    for doc, block in _docs():
        needs = sorted({name for scheme, name in SERVICES.items() if scheme in block.code})
        marks = [getattr(pytest.mark, name) for name in needs]
        if block.fragment:
            marks.append(pytest.mark.skip(reason=f"marked {FRAGMENT} in docs/{doc}"))
        params.append(pytest.param(doc, block, needs, marks=marks, id=f"{doc}#{block.number}"))
    return params


def test_the_parser_sees_fragments_and_shown_output() -> None:
    text = (
        "Intro\n\n```python\nprint(1)\n```\n\nprints\n\n```text\n1\n```\n\n"
        f"{FRAGMENT}\n```python\ndef f(x): ...\n```\n\n```python\npass\n```\n"
    )
    assert parse(text) == [
        Block(1, 4, "print(1)\n", False, "1\n"),
        Block(2, 15, "def f(x): ...\n", True, None),
        Block(3, 19, "pass\n", False, None),
    ]


def test_docs_tested_elsewhere_still_are() -> None:
    for doc, test in COVERED_ELSEWHERE.items():
        assert (DOCS / doc).exists(), f"docs/{doc} is gone: drop it from COVERED_ELSEWHERE"
        assert f'"{doc}"' in (ROOT / test).read_text(), f"{test} no longer runs docs/{doc}"


def test_fragments_are_rare() -> None:
    blocks = [block for _, block in _docs()]
    assert len(blocks) >= 25
    assert sum(block.fragment for block in blocks) <= 3, "make blocks runnable instead"


@pytest.mark.parametrize(("doc", "block", "needs"), _params())
def test_doc_block_runs(doc: str, block: Block, needs: list[str], tmp_path: pathlib.Path) -> None:
    for service in needs:
        require_service(service)
    name = unique_name("docs")
    code = block.code
    for example, unique in ((EXAMPLE, name), (EXAMPLE.upper(), name.upper())):
        code = code.replace(example, unique).replace(example.replace("_", "."), unique)
    script = tmp_path / doc.replace(".md", ".py")
    # blank lines up front: a traceback names the line in the markdown file
    script.write_text("\n" * (block.line - 1) + code)
    try:
        done = _run(script)
    finally:
        asyncio.run(_clean_up(needs, name))
    where = f"docs/{doc} block {block.number} (line {block.line})"
    assert done.returncode == 0, f"{where} failed:\n{done.stderr}"
    leaks = [line for line in done.stderr.splitlines() if line.startswith(LEAKS)]
    assert not leaks, f"{where} leaks:\n{done.stderr}"
    if block.prints is not None:
        assert done.stdout == block.prints, f"{where} does not print what the doc shows"


def _run(script: pathlib.Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-W", "error", str(script)]
    try:
        return subprocess.run(
            command, cwd=script.parent, capture_output=True, text=True, timeout=TIMEOUT
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{script.name}: still running after {TIMEOUT}s\n{exc.stderr!r}")


async def _clean_up(services: list[str], name: str) -> None:
    """Delete what a block may have left under ``name``."""
    if "redis" in services:
        await delete_redis_keys(REDIS, f"{name}:*")
    if "nats" in services:
        from pepperpy.event import NatsTransport

        await NatsTransport(NATS, stream=name.upper()).delete_stream()
    if "rabbitmq" in services:
        await _delete_rabbitmq(name)


async def _delete_rabbitmq(name: str) -> None:
    """Delete the exchanges and queues named after ``name`` (its groups' too).

    The block declared them in its own process, so no transport here knows their names:
    they are listed with rabbitmqctl (on the broker's machine, as in CI), then deleted.
    """
    if shutil.which("rabbitmqctl") is None:
        return
    import aio_pika

    def listed(kind: str) -> list[str]:
        done = subprocess.run(
            ["rabbitmqctl", kind, "-q", "--no-table-headers", "name"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return [line for line in done.stdout.split() if line.startswith(name)]

    queues, exchanges = listed("list_queues"), listed("list_exchanges")
    connection = await aio_pika.connect(RABBITMQ)
    async with connection:
        channel = await connection.channel()
        for queue in queues:
            await channel.queue_delete(queue)
        for exchange in sorted(exchanges, key=len, reverse=True):
            await channel.exchange_delete(exchange)
