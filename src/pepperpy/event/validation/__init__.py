"""Event validation: schemas per event type and version, compiled once, strict by default.

``EventValidator`` is the public entry point; the modules behind it compile schemas
(``_compile``) into node trees that check values and collect every problem (``_nodes``).
"""

from __future__ import annotations

from ._validator import EventValidator

__all__ = ["EventValidator"]
