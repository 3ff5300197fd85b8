"""Registries of explainers and metrics, by name.

The registry drives the contract tests: a class registered here is picked up by them without any
test being edited.

Names are looked up leniently, so that names from other libraries work: case, ``-``, ``_``, spaces
and dots are ignored and ``++`` / ``PlusPlus`` read as ``pp`` (``"Grad-CAM++"``,
``"GradCAMPlusPlus"`` and torch-cam's ``"GradCAMpp"`` are all ``"gradcampp"``); a registered
class's own name works too (``"InputGradient"`` is ``"gradient"``); and :data:`PEER_ALIASES` maps
the few peer names that differ (captum's ``LayerGradCam``). :meth:`Registry.canonical` says which
registered name a spelling means. Peer methods xcam does not implement get an error that says what
to use instead (:data:`NOT_IMPLEMENTED`).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

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
    "squash",
    "PEER_ALIASES",
    "NOT_IMPLEMENTED",
]

T = TypeVar("T")
_C = TypeVar("_C", bound=type)
_F = TypeVar("_F", bound=Callable[..., Any])

#: peer names (squashed, see :func:`squash`) whose xcam name is not just a respelling
PEER_ALIASES: dict[str, str] = {
    "layergradcam": "gradcam",  # captum.attr.LayerGradCam
    "vanillagradient": "gradient",
    "ig": "integrated_gradients",
    "pointinggamebalanced": "pointing_game",
    "modelparameterrandomisation": "model_parameter_randomization",  # Quantus's British spelling
    "modelparameterrandomization": "model_parameter_randomization",
    "relevancemassaccuracy": "relevance_mass",  # Quantus
    "relevancerankaccuracy": "relevance_rank",  # Quantus
    "faithfulnesscorrelation": "faithfulness_correlation",
    "maxsensitivity": "max_sensitivity",
    "randomlogit": "random_logit",
    "averagedrop": "average_drop",
    "increaseinconfidence": "increase_in_confidence",
    "roadmorf": "road_morf",
    "roadlerf": "road_lerf",
    "road": "road_morf",  # Quantus ROAD and pytorch-grad-cam ROADMostRelevantFirst
    "roadmostrelevantfirst": "road_morf",
    "roadleastrelevantfirst": "road_lerf",
}

#: peer methods xcam does not implement (squashed name -> what to use instead)
NOT_IMPLEMENTED: dict[str, str] = {
    "finercam": "Finer-CAM is a target in xcam, usable with every method: "
                "targets=xcam.targets.finer(...)",
    "eigengradcam": "not implemented; eigencam or gradcam with eigen_smooth=True are close",
    "gradcamelementwise": "not implemented; hirescam (element-wise gradient x activation) is close",
    "fullgrad": "not implemented",
    "kpcacam": "not implemented; eigencam is the linear-PCA variant",
    "sscam": "not implemented; scorecam is the un-smoothed variant",
    "iscam": "not implemented; scorecam is the un-smoothed variant",
    "noisetunnel": "captum's NoiseTunnel is smoothgrad (nt_type='smoothgrad') or vargrad "
                   "(nt_type='vargrad') here",
    "guidedbackprop": "not implemented",
    "randomcam": "pytorch-grad-cam's RandomCAM (random channel weights) is not implemented; xcam's "
                 "controls are 'random' (a random map), 'blank', 'center' and 'edges'",
    "guidedgradcam": "not implemented",
}


def squash(name: str) -> str:
    """The lookup key of a name: lower case, no ``-_ .``, ``++`` and ``plusplus`` as ``pp``."""
    key = name.lower().replace("++", "pp").replace("plusplus", "pp")
    for ch in "-_ .":
        key = key.replace(ch, "")
    return key


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
        return self._items.pop(self.canonical(name))

    def _spellings(self) -> dict[str, str]:
        """Squashed spelling -> registered name: the names, the classes' names, the peer aliases."""
        out: dict[str, str] = {}
        ambiguous: set[str] = set()
        for key, obj in self._items.items():
            cls_name = getattr(obj, "__name__", None)
            if isinstance(obj, type) and cls_name:
                sq = squash(cls_name)
                if out.get(sq, key) != key:
                    ambiguous.add(sq)
                out.setdefault(sq, key)
        for sq in ambiguous:
            out.pop(sq, None)
        out.update({alias: key for alias, key in PEER_ALIASES.items() if key in self._items})
        out.update({squash(key): key for key in self._items})
        return out

    def canonical(self, name: str) -> str:
        """The registered name that ``name`` means (``"Grad-CAM++"`` -> ``"gradcampp"``).

        Raises:
            InputError: no registered name matches; the message suggests the closest one, or says
                what to use instead for a peer method xcam does not implement.
        """
        _load_builtins()
        if not isinstance(name, str):
            raise InputError(f"{self.kind} name must be a str, got {type(name).__name__} ({name!r})")
        key = name.lower()
        if key in self._items:
            return key
        spellings = self._spellings()
        sq = squash(name)
        if sq in spellings:
            return spellings[sq]
        if sq in NOT_IMPLEMENTED:
            raise InputError(f"{self.kind} {name!r}: {NOT_IMPLEMENTED[sq]} "
                             f"(see xcam.list_{self.kind}s())")
        close = difflib.get_close_matches(sq, list(spellings), n=1, cutoff=0.6)
        hint = f"; did you mean {spellings[close[0]]!r}?" if close else ""
        raise InputError(
            f"unknown {self.kind} {name!r}{hint} "
            f"(see xcam.list_{self.kind}s() for the {len(self._items)} available)"
        )

    def get(self, name: str) -> T:
        """The object registered as ``name`` (any spelling :meth:`canonical` accepts)."""
        return self._items[self.canonical(name)]

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        _load_builtins()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self.canonical(name)
        except InputError:
            return False
        return True


EXPLAINERS: Registry[type] = Registry("explainer")
METRICS: Registry[Callable[..., Any]] = Registry("metric")


def register_explainer(name: str) -> Callable[[_C], _C]:
    """Register an explainer class; sets ``cls.name`` to the registered name.

    The decorator returns the class itself (typed as such, so type checkers that apply class
    decorators, pyright among them, still see ``GradCAM`` and not a bare ``type``).
    """

    def decorator(cls: _C) -> _C:
        cls.name = name.lower()  # type: ignore[attr-defined]
        EXPLAINERS.register(name)(cls)
        return cls

    return decorator


def register_metric(name: str) -> Callable[[_F], _F]:
    """Register a metric function under ``name``; the function is returned unchanged."""

    def decorator(fn: _F) -> _F:
        METRICS.register(name)(fn)
        return fn

    return decorator


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
