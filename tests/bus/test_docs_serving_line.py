"""docs/bus.md's consumer, run as a process: the line it logs once serving is the one the
page quotes (it showed the namespace as ``, namespace=...`` after the URL, where the
example's URL names it and the line shows that URL as given)."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from tests.conftest import unique_name
from tests.helpers import delete_redis_keys
from tests.script_process import ScriptProcess
from tests.test_docs_blocks import DOCS, parse


def quoted_line() -> str:
    text = (DOCS / "bus.md").read_text()
    start = text.index("- **Start the consumer first.**")
    [line] = re.findall(r"`(EventBus serving on [^`]*)`", text[start:].replace("\n  ", " ")[:600])
    return line


@pytest.mark.redis
async def test_the_docs_consumer_logs_the_serving_line_quoted(
    redis_url: str, tmp_path: Path
) -> None:
    [consumer] = [
        block
        for block in parse((DOCS / "bus.md").read_text())
        if "await bus.serve()" in block.code and block.fragment
    ]
    namespace = unique_name("pepservingline")
    script = tmp_path / "billing.py"
    script.write_text(consumer.code.replace("docs_example", namespace))
    try:
        async with ScriptProcess(script) as service:
            await service.wait_for("EventBus serving on")
            service.process.send_signal(signal.SIGTERM)
            assert await service.exit_code() == 0
        [logged] = [line for line in service.lines if "EventBus serving on" in line]
        assert logged.endswith(quoted_line().replace("docs_example", namespace))
    finally:
        await delete_redis_keys(redis_url, f"{namespace}:*")
