"""Read-only JSON containers: what ``event.data`` is made of once frozen.

``FrozenDict`` and ``FrozenList`` subclass ``dict`` and ``list`` so that they compare
equal to plain containers, serialize natively with orjson and pass ``isinstance``
checks, while every mutating method raises ``TypeError``.
"""

from __future__ import annotations

from typing import Any, NoReturn

__all__ = ["FrozenDict", "FrozenList"]


def _readonly(self: object, *args: object, **kwargs: object) -> NoReturn:
    raise TypeError(f"{type(self).__name__} is read-only: event data cannot be modified")


class FrozenDict(dict[str, Any]):
    """A ``dict`` whose contents cannot change."""

    __slots__ = ()
    __setitem__ = __delitem__ = _readonly
    clear = pop = popitem = setdefault = update = _readonly
    __ior__ = _readonly

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenDict:
        return self


class FrozenList(list[Any]):
    """A ``list`` whose contents cannot change."""

    __slots__ = ()
    __setitem__ = __delitem__ = _readonly
    append = extend = insert = pop = remove = clear = sort = reverse = _readonly
    __iadd__ = __imul__ = _readonly

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenList, (list(self),))

    def __copy__(self) -> FrozenList:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenList:
        return self

    def __hash__(self) -> int:  # type: ignore[override]
        raise TypeError("unhashable type: 'FrozenList'")
