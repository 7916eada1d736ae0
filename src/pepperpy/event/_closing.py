"""``async with`` for the objects that are closed with ``await obj.close()``."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self

__all__ = ["AsyncClosing"]


class _Closable(Protocol):
    async def close(self) -> None: ...


class AsyncClosing:
    """A base for a class with an async ``close()``: ``async with obj`` gives ``obj``
    itself and awaits ``obj.close()`` when the block ends, however it ends."""

    __slots__ = ()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self: _Closable,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
