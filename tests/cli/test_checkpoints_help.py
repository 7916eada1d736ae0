"""``checkpoints --help`` says what ``--json`` prints: a checkpoint per line, not an
event (the option shared with the event commands said "Print each event as a JSON
object")."""

from __future__ import annotations

from tests.cli.conftest import Cli
from tests.cli.test_cli import ok


def test_json_prints_checkpoints(cli: Cli) -> None:
    shown = " ".join(ok(cli("checkpoints", "--help")).out.split())
    assert "Print each checkpoint as a JSON object" in shown
    assert "each event" not in shown
