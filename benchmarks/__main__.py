"""Run every ``benchmarks/bench_*.py`` and write ``docs/benchmarks.md``.

``python -m benchmarks`` (or ``make bench``) runs all of them; ``--quick`` shortens each;
names given on the command line (``dispatch store``) run just those.
"""

from __future__ import annotations

import asyncio
import importlib
import pathlib
import sys
import time

from benchmarks._harness import machine

HERE = pathlib.Path(__file__).parent
REPORT = HERE.parent / "docs" / "benchmarks.md"

HEADER = """# Benchmarks

Every comparison runs its contenders in one process, interleaved over several passes, and
reports the median; ratios are what to read, since absolute numbers drift between
machines. Regenerate with `make bench` (writes this file). Per-area write-ups with
analysis are linked at the end.

Machine: {machine}.
"""


def main() -> None:
    quick = "--quick" in sys.argv
    wanted = {arg for arg in sys.argv[1:] if not arg.startswith("-")}
    modules = sorted(p.stem for p in HERE.glob("bench_*.py"))
    sections = [HEADER.format(machine=machine())]
    for name in modules:
        if wanted and name.removeprefix("bench_") not in wanted:
            continue
        module = importlib.import_module(f"benchmarks.{name}")
        started = time.perf_counter()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            section = asyncio.run(module.main(quick))
        except Exception as exc:  # one broken benchmark must not hide the others
            section = f"## {name}\n\nFailed to run: `{type(exc).__name__}: {exc}`\n"
        elapsed = time.perf_counter() - started
        print(f"  done in {elapsed:.0f}s", file=sys.stderr)
        sections.append(section)
    write_ups = sorted(p.name for p in REPORT.parent.glob("benchmarks-*.md"))
    if write_ups:
        sections.append(
            "## Analysis per area\n\n" + "\n".join(f"- [{n}]({n})" for n in write_ups) + "\n"
        )
    text = "\n".join(sections)
    if wanted:
        print(text)
    else:
        REPORT.write_text(text)
        print(f"wrote {REPORT}", file=sys.stderr)


main()
