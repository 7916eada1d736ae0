"""A Python script run in a process of its own, its output read line by line.

For the tests of services that run until signalled (``EventBus.serve()``,
``Projection.serve()``): start the script, wait for lines it prints, signal it, check how
it ended.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

__all__ = ["DEADLINE", "ScriptProcess"]

#: seconds any one wait for the process may take
DEADLINE = 30.0


class ScriptProcess:
    """``python -W error SCRIPT ARGS...`` (in ``cwd`` if given), stderr joined to stdout.

    ``async with`` starts it and kills it on exit if it is still running.
    """

    def __init__(self, script: Path | str, *args: str, cwd: Path | None = None) -> None:
        self.args = [str(script), *args]
        self.cwd = cwd
        self.lines: list[str] = []
        self.process: asyncio.subprocess.Process

    async def __aenter__(self) -> ScriptProcess:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-W",
            "error",
            *self.args,
            cwd=self.cwd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    def saw(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    async def wait_for(self, *texts: str) -> None:
        """Read output until every one of ``texts`` was seen (in any order)."""
        assert self.process.stdout is not None
        async with asyncio.timeout(DEADLINE):
            while not all(self.saw(text) for text in texts):
                line = await self.process.stdout.readline()
                if not line:
                    raise AssertionError(
                        f"the process ended before printing {texts}:\n" + "\n".join(self.lines)
                    )
                self.lines.append(line.decode().rstrip("\n"))

    async def exit_code(self, *, traceback: bool = False) -> int:
        """Wait for the process to end; its output must hold a traceback if ``traceback``,
        else none."""
        assert self.process.stdout is not None
        async with asyncio.timeout(DEADLINE):
            rest = await self.process.stdout.read()
            self.lines += rest.decode().splitlines()
            code = await self.process.wait()
        tracebacks = [line for line in self.lines if line.startswith(("Traceback", "Exception"))]
        assert bool(tracebacks) == traceback, "\n".join(self.lines)
        return code
