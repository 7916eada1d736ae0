"""``validate --validator module:attr`` naming a module whose top-level code ends the
program (a script's ``main()`` or ``argparse`` run unguarded on import).

Its ``sys.exit`` used to end the command with the module's status and no word (``sys.exit(3)``
exited 3 in silence, and a script's ``argparse`` exited 2 after complaining about the
command's own arguments), so a CI step failed without saying why. It is now one line
naming the module, the call and where it was made, exit status 1. An attribute the module
lacks is named as missing, where the message said it found "nothing".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import Cli


@pytest.mark.parametrize(("call", "shown"), [("sys.exit(3)", "3"), ("sys.exit()", "None")])
def test_a_module_that_exits_on_import_is_one_line(
    cli: Cli, tmp_path: Path, store_url: str, call: str, shown: str
) -> None:
    (tmp_path / "shop_script.py").write_text(f"import sys\n\n{call}\n", encoding="utf-8")
    appended = cli("append", "order.1", "order.paid", '{"amount": 1}', "--store", store_url)
    assert appended.code == 0, appended

    result = cli("validate", "--validator", "shop_script:validator", "--store", store_url)

    assert result.code == 1, result
    [line] = result.err.splitlines()
    assert line.startswith(
        f"pepperpy-event: error: --validator shop_script:validator: importing 'shop_script' "
        f"called sys.exit({shown}) at "
    ), line
    assert "shop_script.py:3" in line
    assert "if __name__ == '__main__':" in line


def test_a_missing_attribute_is_named(cli: Cli, tmp_path: Path, store_url: str) -> None:
    (tmp_path / "shop_rules.py").write_text("validator_v2 = None\n", encoding="utf-8")
    result = cli("validate", "--validator", "shop_rules:validator", "--store", store_url)
    assert result.code == 1, result
    assert result.err == (
        "pepperpy-event: error: --validator shop_rules:validator: module 'shop_rules' has "
        "no attribute 'validator'\n"
    )
