"""The store conformance suite, continued: stream names a page at a time.

``EventStore.streams()`` reads every stream name at once (``StoreBackend.stream_names``):
with one stream per aggregate, millions of names in memory for each console view or
``streams`` run. ``EventStore.iter_streams`` gives the same names, in the same order,
from ``StoreBackend.stream_names_page`` (keyset pages in code-point order, optionally
under a prefix). :class:`StreamPagesConformance` is a base of
:class:`~tests.store.conformance.StoreConformance`, so every backend runs it; it uses
that class's ``store`` fixture and the backend's ``store_url``.
"""

from __future__ import annotations

from typing import Any

import pytest

from pepperpy.event import NO_STREAM, AccessDenied, ConfigurationError, Event, EventStore
from pepperpy.event.security import AccessControl
from pepperpy.event.store.base import StoreBackend

#: names around the prefix ``a.b``'s edges: ``!``, ``-`` and ``/`` sort between ``.`` and
#: letters or next to it, ``:`` and ``~`` after it; unicode from two and three UTF-8 bytes
#: and beyond the BMP (UTF-16 would order it before U+FFxx, UTF-8 and code points after)
NAMES = [
    "a",
    "a-b",
    "a/b",
    "a.b",
    "a.b!",
    "a.b-x",
    "a.b/x",
    "a.b:",
    "a.b~",
    "a.bc",
    "a.b.c",
    "a.b.Z",
    "a.b.c.d",
    "a.b.\u00e9",
    "a.b.\u65e5\u672c",
    "a.b.\uff5e",
    "a.b.\U0001f600",
    "b.1",
    "z.b.c",
    "\u00e9.b",
]

#: patterns with and without literal leading tokens
PATTERNS = ["#", "a.b", "a.b.#", "a.b.*", "a.#", "a", "*.b", "*.b.#", "#.c", "nothing.#"]


async def _written(store: EventStore, names: list[str] = NAMES) -> None:
    await store.append_streams({name: Event("t.x", {}) for name in names})


async def _iterated(store: EventStore, pattern: str, **options: Any) -> list[str]:
    return [name async for name in store.iter_streams(pattern, **options)]


async def _all_pages(
    backend: StoreBackend, size: int, prefix: str | None, *, default: bool = False
) -> list[str]:
    """Every name ``stream_names_page`` gives, page after page (``default``: the
    contract's own default over ``stream_names``); each page but the last is full."""
    got: list[str] = []
    after: str | None = None
    for _ in range(100):  # bounded: the test's names need far fewer pages
        if default:
            page = await StoreBackend.stream_names_page(backend, after, size, prefix)
        else:
            page = await backend.stream_names_page(after, size, prefix)
        assert len(page) <= size
        got.extend(page)
        if len(page) < size:
            return got
        after = page[-1]
    raise AssertionError("stream_names_page never gave a short page")


def _under(prefix: str | None) -> list[str]:
    every = sorted(NAMES)
    if prefix is None:
        return every
    return [name for name in every if name == prefix or name.startswith(prefix + ".")]


class StreamPagesConformance:
    # -- StoreBackend.stream_names_page ------------------------------------------------

    @pytest.mark.parametrize("size", [1, 2, 3, 100])
    @pytest.mark.parametrize("prefix", [None, "a", "a.b", "a.bc", "a.b.c", "\u00e9", "q"])
    async def test_name_pages_follow_stream_names_in_code_point_order(
        self, store: EventStore, size: int, prefix: str | None
    ) -> None:
        await _written(store)
        backend = store.backend
        assert await backend.stream_names() == sorted(NAMES)  # Python's str order
        assert await _all_pages(backend, size, prefix) == _under(prefix)
        assert await _all_pages(backend, size, prefix, default=True) == _under(prefix)

    @pytest.mark.parametrize(
        ("after", "prefix", "expected"),
        [
            ("a.b.b", None, ["a.b.c", "a.b.c.d", "a.b.\u00e9"]),  # not a stream: after it
            ("a.b.c", None, ["a.b.c.d", "a.b.\u00e9", "a.b.\u65e5\u672c"]),
            ("", None, ["a", "a-b", "a.b"]),
            ("a.b", "a.b", ["a.b.Z", "a.b.c", "a.b.c.d"]),  # past a.b!, a.b-x
            ("a.b.\u65e5", "a.b", ["a.b.\u65e5\u672c", "a.b.\uff5e", "a.b.\U0001f600"]),
            ("a.b.\U0001f600", "a.b", []),
            ("0", "a.b", ["a.b", "a.b.Z", "a.b.c"]),  # before the prefix: from its start
            ("zz", None, ["\u00e9.b"]),  # U+00E9 sorts after every ASCII letter
            ("\U0010ffff", "a", []),
        ],
    )
    async def test_a_name_page_starts_strictly_after_any_cursor(
        self, store: EventStore, after: str, prefix: str | None, expected: list[str]
    ) -> None:
        await _written(store)
        backend = store.backend
        assert await backend.stream_names_page(after, 3, prefix) == expected
        assert await StoreBackend.stream_names_page(backend, after, 3, prefix) == expected

    async def test_name_pages_leave_deleted_streams_out(self, store: EventStore) -> None:
        await _written(store, ["d.1", "d.2", "d.3", "d.4"])
        await store.delete_stream("d.2")
        await store.delete_stream("d.3")
        await store.append(
            "d.3", Event("t.x", {}), expected_version=NO_STREAM
        )  # written again: visible once more
        for prefix in (None, "d"):
            assert await _all_pages(store.backend, 1, prefix) == ["d.1", "d.3", "d.4"]
            assert await store.backend.stream_names_page("d.1", 1, prefix) == ["d.3"]
        assert await _iterated(store, "d.*", page_size=1) == await store.streams("d.*")

    # -- EventStore.iter_streams --------------------------------------------------------

    @pytest.mark.parametrize("page_size", [1, 2, 3, 1000])
    @pytest.mark.parametrize("pattern", PATTERNS)
    async def test_iter_streams_gives_what_streams_gives(
        self, store: EventStore, pattern: str, page_size: int
    ) -> None:
        await _written(store)
        expected = await store.streams(pattern)
        assert await _iterated(store, pattern, page_size=page_size) == expected
        for after in ("a.b", "a.b.b", "a.b.\u00e9"):
            later = [name for name in expected if name > after]
            assert await _iterated(store, pattern, page_size=page_size, after=after) == later

    @pytest.mark.parametrize(("pattern", "prefix"), [("a.b.#", "a.b"), ("*.b", None)])
    async def test_iter_streams_asks_for_pages_of_page_size_never_every_name(
        self, store: EventStore, pattern: str, prefix: str | None
    ) -> None:
        """Bounded memory: ``stream_names`` (every name) is never called; each read asks
        for ``page_size`` names, under the pattern's literal prefix when it has one."""
        await _written(store)
        expected = await store.streams(pattern)
        backend = store.backend
        calls: list[tuple[str | None, int, str | None]] = []
        paged = backend.stream_names_page

        async def every_name() -> list[str]:
            raise AssertionError("iter_streams read every stream name")

        async def page(after: str | None, limit: int, prefix: str | None = None) -> list[str]:
            calls.append((after, limit, prefix))
            return await paged(after, limit, prefix)

        backend.stream_names = every_name  # type: ignore[method-assign]
        backend.stream_names_page = page  # type: ignore[method-assign]
        assert await _iterated(store, pattern, page_size=2) == expected
        assert expected  # the pattern matches some of the names
        assert {limit for _, limit, _ in calls} == {2}
        assert {under for _, _, under in calls} == {prefix}
        assert len(calls) == len(_under(prefix)) // 2 + 1  # one per page, the last short
        assert [after for after, _, _ in calls[1:]] == _under(prefix)[1::2]

    @pytest.mark.parametrize("page_size", [0, -1, 100_001])
    async def test_iter_streams_refuses_a_page_size_out_of_range(
        self, store: EventStore, page_size: int
    ) -> None:
        with pytest.raises(ConfigurationError, match="page_size must be from 1 to 100000"):
            store.iter_streams(page_size=page_size)

    @pytest.mark.parametrize("page_size", [1.0, "10", True, None])
    async def test_iter_streams_refuses_a_page_size_that_is_not_an_int(
        self, store: EventStore, page_size: Any
    ) -> None:
        with pytest.raises(TypeError, match="page_size must be an int"):
            store.iter_streams(page_size=page_size)

    async def test_iter_streams_is_refused_where_streams_is(self, store_url: str) -> None:
        access = AccessControl(default="deny")
        access.allow("#", "append", "#")
        access.allow("#", "read", "orders.#")
        async with EventStore(store_url, access=access) as store:
            await _written(store, ["orders.1", "orders.2", "secret.1"])
            for pattern in ("#", "secret.*", "*.1"):
                with pytest.raises(AccessDenied):
                    await store.streams(pattern)
                with pytest.raises(AccessDenied):
                    store.iter_streams(pattern)
            assert await _iterated(store, "orders.#", page_size=1) == ["orders.1", "orders.2"]
            pages = store.iter_streams("orders.#", page_size=1)
            assert await anext(pages) == "orders.1"
            access.deny("#", "read", "orders.#")  # revoked: refused at the next page
            with pytest.raises(AccessDenied):
                await anext(pages)
