"""``capture(model, layers)``: record activations during a forward pass, and their gradients.

Hooks are registered on ``__enter__`` and removed in ``finally``, also after an exception. The
forward hook stores the layer's tensor and sends a *clone* downstream, so an in-place operation
later in the network (``ReLU(inplace=True)``) cannot change what was stored. Gradients come from
:func:`torch.autograd.grad`, never ``.backward()``, so the user's ``param.grad`` is untouched. The
model runs in eval mode inside the block and every module's ``training`` flag is restored on exit
(:func:`xcam._checks.eval_mode`). The block holds the model's lock (:func:`xcam._checks.model_lock`)
from ``__enter__`` to exit, so captures of one model in several threads run one after the other
instead of recording each other's tensors.
Each call of ``model`` starts a fresh record, so the tensors (and the count behind the warning for a
module that runs several times in one forward pass) always describe the last forward pass.

Example:
    >>> with xcam.capture(model, ["layer4", "avgpool:input"]) as cap:
    ...     logits = model(x)
    ...     grads = cap.gradients(logits[:, 3].sum())
    >>> cap["layer4"].shape, grads["layer4"].shape
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from types import TracebackType
from typing import Any

import torch
from torch import Tensor, nn

from ._checks import eval_mode as _eval_mode
from ._checks import model_lock
from .errors import DisconnectedError, GradientModeError, InputError, warn
from .layers import LayerSpec, Tap, resolve_layer

__all__ = ["Capture", "capture"]


class Capture:
    """Context manager that records tensors at taps; see :func:`capture`."""

    def __init__(
        self,
        model: nn.Module,
        layers: LayerSpec | Sequence[LayerSpec],
        *,
        eval_mode: bool = True,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        specs = [layers] if isinstance(layers, (str, nn.Module, Tap)) else list(layers)
        self.model = model
        self.taps: list[Tap] = []
        for spec in specs:
            tap = resolve_layer(model, spec)
            if tap not in self.taps:
                self.taps.append(tap)
        self.eval_mode = eval_mode
        self._stored: dict[Tap, Tensor] = {}
        self._calls: dict[Tap, int] = {}
        self._order: list[Tap] = []
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._stack: ExitStack | None = None
        self._grad_at_call = False
        self._no_grad_inside: set[Tap] = set()
        self._active = False

    # -- recording ---------------------------------------------------------------------------
    def _new_forward(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        # Pre-hook on the model itself: a new forward pass forgets the previous one, so running
        # the model twice in one block is not mistaken for a layer that runs twice in one pass.
        self._stored.clear()
        self._calls.clear()
        self._order.clear()
        self._no_grad_inside.clear()
        self._grad_at_call = torch.is_grad_enabled()

    def _store(self, tap: Tap, tensor: Tensor) -> Tensor:
        if self._grad_at_call and not torch.is_grad_enabled():
            # the model was called with gradients on, but this layer ran under no_grad inside
            # its forward (a frozen backbone in a linear probe): no gradient can reach it
            self._no_grad_inside.add(tap)
        if tap.kind == "relu":
            tensor = torch.relu(tensor)
        if torch.is_grad_enabled() and not tensor.requires_grad and not torch.is_inference_mode_enabled():
            # The layer is not connected to autograd (frozen parameters, input without grad):
            # make the stored tensor a leaf so that gradients with respect to it still exist.
            tensor = tensor.detach().requires_grad_(True)
        self._calls[tap] = self._calls.get(tap, 0) + 1
        if tap not in self._order:
            self._order.append(tap)
        self._stored[tap] = tensor
        return tensor.clone()

    def _output_hook(self, tap: Tap) -> Callable[[nn.Module, tuple[Any, ...], object], object]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: object) -> object:
            if not isinstance(output, Tensor):
                raise InputError(
                    f"layer {tap.label!r} returns {type(output).__name__}, not a tensor; "
                    "choose a submodule that returns a tensor (see xcam.list_layers(model, x))"
                )
            return self._store(tap, output)

        return hook

    def _input_hook(self, tap: Tap) -> Callable[[nn.Module, tuple[Any, ...]], object]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> object:
            if not args or not isinstance(args[0], Tensor):
                raise InputError(
                    f"layer {tap.label!r}: the module's first input is not a tensor; "
                    "tap its output instead"
                )
            return (self._store(tap, args[0]), *args[1:])

        return hook

    # -- context manager ---------------------------------------------------------------------
    def __enter__(self) -> Capture:
        if self._active:
            raise InputError(
                "this capture is already active (a with block inside another on the same capture "
                "object); create a new one with xcam.capture(model, layers)"
            )
        self._active = True
        self._stored.clear()
        self._calls.clear()
        self._order.clear()
        self._stack = ExitStack()
        try:
            # the lock first: another thread's capture of this model finishes before hooks go on
            self._stack.enter_context(model_lock(self.model))
            # prepend: the reset runs before a tap on the model's own input records it
            self._handles.append(
                self.model.register_forward_pre_hook(self._new_forward, prepend=True)
            )
            for tap in self.taps:
                if tap.kind == "output":
                    handle = tap.module.register_forward_hook(self._output_hook(tap))
                else:
                    handle = tap.module.register_forward_pre_hook(self._input_hook(tap))
                self._handles.append(handle)
            if self.eval_mode:
                self._stack.enter_context(_eval_mode(self.model))
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release()

    def _release(self) -> None:
        try:
            for handle in self._handles:
                handle.remove()
            self._handles.clear()
        finally:
            stack, self._stack = self._stack, None
            self._active = False
            if stack is not None:
                stack.close()  # flags restored, then the lock released

    # -- results -----------------------------------------------------------------------------
    def _tap(self, layer: LayerSpec) -> Tap:
        tap = resolve_layer(self.model, layer)
        if tap not in self.taps:
            raise InputError(
                f"layer {tap.label!r} is not recorded by this capture; recorded: "
                f"{[t.label for t in self.taps]}"
            )
        return tap

    def __getitem__(self, layer: LayerSpec) -> Tensor:
        """The tensor recorded at ``layer`` during the last forward pass of the model.

        A module that ran several times within that pass gives its last call's tensor, with a
        warning.
        """
        tap = self._tap(layer)
        if tap not in self._stored:
            raise InputError(
                f"layer {tap.label!r} did not run in the forward pass; check that the model "
                "uses it, or choose another layer"
            )
        if self._calls[tap] > 1:
            warn(
                f"layer {tap.label!r} ran {self._calls[tap]} times in one forward pass; "
                "xcam uses its last call"
            )
        return self._stored[tap]

    @property
    def activations(self) -> dict[str, Tensor]:
        """Recorded tensors by label, in the order the layers first ran."""
        return {tap.label: self._stored[tap] for tap in self._order}

    def order(self, layer: LayerSpec) -> int:
        """Position of ``layer`` among the recorded layers in execution order (0 = first)."""
        tap = self._tap(layer)
        if tap not in self._order:
            raise InputError(f"layer {tap.label!r} did not run in the forward pass")
        return self._order.index(tap)

    def gradients(
        self,
        scores: Tensor,
        layers: LayerSpec | Sequence[LayerSpec] | None = None,
        *,
        retain_graph: bool = False,
        create_graph: bool = False,
        allow_unused: bool = False,
    ) -> dict[str, Tensor]:
        """``d scores.sum() / d activation`` for each recorded layer, via ``torch.autograd.grad``.

        Samples of a batch are independent in eval mode, so the gradient of the sum gives every
        sample its own gradient in one backward pass that stops at the deepest requested layer.

        Args:
            scores: the (B,) scores to differentiate (their sum is differentiated).
            layers: the recorded layers to differentiate with respect to; None for all of them.
            retain_graph: keep the graph for a later call (``torch.autograd.grad``'s flag).
            create_graph: build the graph of the gradients (for higher derivatives).
            allow_unused: give a zero gradient for a layer the scores do not depend on, instead of
                raising :class:`~xcam.errors.DisconnectedError`.

        Raises:
            GradientModeError: inference mode; scores without autograd history; a layer that ran
                under ``torch.no_grad()`` inside the model's forward.
            DisconnectedError: the scores do not depend on a requested layer.
        """
        if torch.is_inference_mode_enabled():
            raise GradientModeError(
                "gradients cannot be computed under torch.inference_mode(); call the explainer "
                "outside that block"
            )
        if layers is None:
            taps = list(self._order)
        else:
            specs = [layers] if isinstance(layers, (str, nn.Module, Tap)) else list(layers)
            taps = [self._tap(s) for s in specs]
        tensors = [self[t] for t in taps]
        probed = [t.label for t in taps if t in self._no_grad_inside]
        if probed and not allow_unused:
            raise GradientModeError(
                f"layer {probed[0]!r} ran under torch.no_grad() inside {type(self.model).__name__}'s "
                "forward (a frozen backbone, as in a linear probe), so no gradient reaches it; "
                "freeze the backbone with requires_grad_(False) instead of no_grad, or explain a "
                "layer that runs with gradients"
            )
        if not scores.requires_grad:
            raise GradientModeError(
                "the scores do not require grad: the forward pass ran under torch.no_grad() or "
                "without any tensor that requires grad; run it with gradients enabled"
            )
        wanted = [t for t in tensors if t.requires_grad]
        found = iter(torch.autograd.grad(
            scores.sum(), wanted, retain_graph=retain_graph, create_graph=create_graph,
            allow_unused=True,
        ) if wanted else ())
        grads = [next(found) if t.requires_grad else None for t in tensors]
        out: dict[str, Tensor] = {}
        for tap, grad, tensor in zip(taps, grads, tensors):
            if grad is None and not allow_unused:
                raise DisconnectedError(
                    f"layer {tap.label!r}: the explained score does not depend on this layer (no "
                    f"autograd path from it to the score in {type(self.model).__name__}), so its "
                    "map would be all zero; choose a layer that feeds the output (see "
                    "xcam.list_layers(model)), or a target computed after it"
                )
            out[tap.label] = torch.zeros_like(tensor) if grad is None else grad
        return out


def capture(
    model: nn.Module,
    layers: LayerSpec | Sequence[LayerSpec],
    *,
    eval_mode: bool = True,
) -> Capture:
    """Record the tensors at ``layers`` while ``model`` runs inside a ``with`` block.

    Args:
        model: any ``nn.Module``.
        layers: one or several dotted names (``"layer4"``, ``"avgpool:input"`` for a module's input),
            modules, or :class:`~xcam.layers.Tap` objects.
        eval_mode: run the model in eval mode inside the block (default), restoring every module's
            ``training`` flag on exit.

    Returns:
        A :class:`Capture`; index it by layer for the recorded tensor, call
        :meth:`Capture.gradients` for gradients.
    """
    return Capture(model, layers, eval_mode=eval_mode)
