"""Types of the optional C extension ``_cevent`` (see _cevent.c and _event._bind_c)."""

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

from ._event import Event

def bind(
    event: type[Event],
    frozen_dict: type[dict[str, Any]],
    atoms: tuple[type, ...],
    freeze_nested: Callable[[Any], Any],
    metadata_dict: Callable[[Any], dict[str, Any]],
    check_long_type: Callable[[str], None],
    long_type: int,
    clock: list[int],
    counter: Iterator[int],
    globals: dict[str, Any],
    freeze_parsed: Callable[[Any], Any],
) -> None: ...
def make_event(type: str, data: Any, metadata: Mapping[str, Any] | None) -> Event: ...
def restore(
    type: str,
    data: Any,
    metadata: dict[str, Any] | None,
    id: int | str,
    ts: int | datetime,
    version: int,
    extra: tuple[Any, ...] | None,
) -> Event: ...
def freeze_parsed(value: Any) -> Any: ...
def literal_table(literals: dict[str, int]) -> object: ...
def shape_key(topic: str, table: object, max_length: int) -> str | None: ...
def bind_trie(node: type) -> None: ...
def trie_lookup(root: Any, tokens: tuple[str, ...]) -> tuple[Any, ...]: ...
