"""Event validation: schemas per event type and version, compiled once, strict by default.

``EventValidator`` is the public entry point (``_validator``); each schema version it
holds is compiled once into a ``Compiled`` (``_compiled``: the fast and the all-problems
checks, and the pydantic bridge). The modules behind those compile Python
schemas (``_python_schema``) and JSON Schema documents (``_json_schema``) into node trees
that check values and collect every problem (``_nodes``), and turn those trees into
msgspec types for the fast path (``_fast``).
"""

from __future__ import annotations

from ._validator import EventValidator

__all__ = ["EventValidator"]
