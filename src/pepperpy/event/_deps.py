"""Optional dependencies: import them with an install hint when they are missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from ._errors import MissingDependencyError


def require(module: str, *, extra: str, feature: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name is not None and module.split(".")[0] != exc.name.split(".")[0]:
            raise
        raise MissingDependencyError(feature, extra, module.split(".")[0]) from exc
