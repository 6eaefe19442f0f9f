"""Names of a package imported on first use (PEP 562), so that importing the package loads no torch."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_names(package: str, names: dict[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports ``names[name]`` (a module path, or a subpackage of
    ``package`` when the name maps to ``""``) on first use and caches it in ``namespace`` (the module globals)."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = names[name]
        value = (
            importlib.import_module(f"{package}.{name}")
            if not module
            else getattr(importlib.import_module(module), name)
        )
        namespace[name] = value
        return value

    return __getattr__
