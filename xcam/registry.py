"""Registries of explainers and metrics, by name.

The registry drives the contract tests: a class registered here is picked up by them without any
test being edited.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ._checks import did_you_mean
from .errors import InputError

__all__ = [
    "Registry",
    "EXPLAINERS",
    "METRICS",
    "register_explainer",
    "register_metric",
    "create",
    "list_explainers",
    "list_metrics",
    "list_controls",
]

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object mapping that refuses duplicates and suggests close names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers an object under ``name`` (lower case)."""
        key = name.lower()

        def decorator(obj: T) -> T:
            existing = self._items.get(key)
            if existing is not None and existing is not obj:
                raise InputError(
                    f"{self.kind} name {key!r} is already registered to {existing!r}; "
                    "choose another name"
                )
            self._items[key] = obj
            return obj

        return decorator

    def unregister(self, name: str) -> T:
        """Remove ``name`` and return what was registered (a plug-in or a test cleaning up)."""
        self.get(name)  # an unknown name: the did-you-mean error
        return self._items.pop(name.lower())

    def get(self, name: str) -> T:
        """The object registered as ``name`` (case-insensitive), with a did-you-mean hint if none."""
        _load_builtins()
        key = name.lower()
        if key not in self._items:
            hint = did_you_mean(key, self._items)
            raise InputError(
                f"unknown {self.kind} {name!r}{hint} "
                f"(see xcam.list_{self.kind}s() for the {len(self._items)} available)"
            )
        return self._items[key]

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        _load_builtins()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        _load_builtins()
        return isinstance(name, str) and name.lower() in self._items


EXPLAINERS: Registry[type] = Registry("explainer")
METRICS: Registry[Callable[..., Any]] = Registry("metric")


def register_explainer(name: str) -> Callable[[type], type]:
    """Register an explainer class; sets ``cls.name`` to the registered name."""

    def decorator(cls: type) -> type:
        cls.name = name.lower()  # type: ignore[attr-defined]
        return EXPLAINERS.register(name)(cls)

    return decorator


def register_metric(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a metric function under ``name``."""
    return METRICS.register(name)


def create(name: str, model: Any, **kwargs: Any) -> Any:
    """Build the explainer registered as ``name`` for ``model``: ``xcam.create("gradcam", model)``."""
    return EXPLAINERS.get(name)(model, **kwargs)


def list_explainers() -> list[str]:
    """Names of every registered explainer, sorted."""
    return EXPLAINERS.names()


def list_controls() -> list[str]:
    """Names of the registered control explainers (class flag ``is_control``), sorted."""
    return [n for n in list_explainers() if getattr(EXPLAINERS.get(n), "is_control", False)]


def list_metrics() -> list[str]:
    """Names of every registered metric, sorted."""
    return METRICS.names()


_LOADED = False


def _load_builtins() -> None:
    """Import xcam's own methods and metrics once, so that their classes register themselves."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import importlib

    for package in ("xcam.methods", "xcam.metrics"):
        try:
            importlib.import_module(package)
        except ModuleNotFoundError as err:  # a package not written yet is not an error
            if err.name != package:
                raise
