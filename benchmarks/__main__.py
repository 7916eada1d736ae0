"""Run every ``benchmarks/bench_*.py`` and write ``docs/benchmarks.md``.

``python -m benchmarks`` (or ``make bench``) runs all of them; ``--quick`` shortens each;
names given on the command line (``dispatch store``) run just those. ``--append`` adds the
named sections to ``docs/benchmarks.md``, titled with the Python that ran them: ``make
bench`` runs the dispatch benchmark a second time on CPython 3.13, whose eager tasks
change what several handlers cost (docs/manager.md, "How handlers run").
"""

from __future__ import annotations

import asyncio
import importlib
import pathlib
import platform
import sys
import time

from benchmarks._harness import machine

HERE = pathlib.Path(__file__).parent
REPORT = HERE.parent / "docs" / "benchmarks.md"
ANALYSIS = "## Analysis per area"

HEADER = """# Benchmarks

Every comparison runs its contenders in one process, interleaved over several passes, and
reports the median; ratios are what to read, since absolute numbers drift between
machines. Regenerate with `make bench` (writes this file). Per-area write-ups with
analysis are linked at the end.

Machine: {machine}.
"""


def main() -> None:
    quick = "--quick" in sys.argv
    append = "--append" in sys.argv
    wanted = {arg for arg in sys.argv[1:] if not arg.startswith("-")}
    if append and not wanted:
        sys.exit("--append needs the names of the benchmarks to add (say: dispatch)")
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
    if append:
        python = ".".join(platform.python_version_tuple()[:2])
        added = "\n".join(_retitled(section, f"on CPython {python}") for section in sections[1:])
        before, mark, after = REPORT.read_text().partition(ANALYSIS)
        REPORT.write_text(f"{before}{added}\n{mark}{after}" if mark else f"{before}\n{added}")
        print(f"added to {REPORT}", file=sys.stderr)
        return
    write_ups = sorted(p.name for p in REPORT.parent.glob("benchmarks-*.md"))
    if write_ups:
        sections.append(ANALYSIS + "\n\n" + "\n".join(f"- [{n}]({n})" for n in write_ups) + "\n")
    text = "\n".join(sections)
    if wanted:
        print(text)
    else:
        REPORT.write_text(text)
        print(f"wrote {REPORT}", file=sys.stderr)


def _retitled(section: str, suffix: str) -> str:
    """``section`` with ``suffix`` added to its first heading."""
    title, _, rest = section.partition("\n")
    return f"{title}, {suffix}\n{rest}"


main()
