"""``async with`` for the objects that are closed with ``await obj.close()``."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self

from ._errors import ClosedError

__all__ = ["AsyncClosing"]


class _Closable(Protocol):
    async def close(self) -> None: ...


class AsyncClosing:
    """A base for a class with an async ``close()``: ``async with obj`` gives ``obj``
    itself and awaits ``obj.close()`` when the block ends, however it ends. A class closed
    for good says so in :meth:`_closed_for_good`: ``async with`` then raises
    :class:`ClosedError` at once, as ``EventBus`` does, not at the block's first use."""

    __slots__ = ()

    async def __aenter__(self) -> Self:
        if self._closed_for_good():
            raise ClosedError(f"the {type(self).__name__} is closed")
        return self

    def _closed_for_good(self) -> bool:
        return False

    async def __aexit__(
        self: _Closable,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
