"""A Redis idempotency store never shows the password of its URL (audit 9).

Its repr and the NotificationError of a failed call showed ``redis://:PASSWORD@...``.
"""

from __future__ import annotations

import pytest

from pepperpy.event import NotificationError
from pepperpy.event.notifications import RedisIdempotencyStore

SECRET = "S3cretPw9"


async def test_repr_and_errors_hide_the_password() -> None:
    pytest.importorskip("redis")
    store = RedisIdempotencyStore(f"redis://:{SECRET}@127.0.0.1:1/0")  # nothing listens
    try:
        assert SECRET not in repr(store) and "***" in repr(store)
        with pytest.raises(NotificationError) as failed:
            await store.claim("order.1")
        assert SECRET not in str(failed.value)
        assert "127.0.0.1:1" in str(failed.value)
    finally:
        await store.close()
