"""``replay --checkpoint`` on a store opened read-only names the command's options.

The library's refusal told the user to replay ``without checkpoint=, or give
checkpoints= a writable store``: keyword arguments the command line does not have.
"""

from __future__ import annotations

from pepperpy.event import Event

from .conftest import Cli
from .test_cli import one_line_error, seed


def test_a_read_only_store_refuses_the_checkpoint_in_the_commands_words(
    cli: Cli, store_url: str
) -> None:
    seed(store_url, [("a.1", Event("t.x", {}))])
    result = cli("replay", "--checkpoint", "nightly", "--store", f"{store_url}?mode=ro")
    one_line_error(
        result,
        "--checkpoint 'nightly' cannot be saved: the store ",
        "is open read-only, so nothing was replayed; replay without --checkpoint, or with a "
        "--store that can be written",
    )
    assert "checkpoints=" not in result.err
    assert result.out == ""
    replayed = cli("replay", "--store", f"{store_url}?mode=ro")
    assert (replayed.code, replayed.lines) == (0, ["0 a.1:0 t.x {}"]), replayed.err
