"""``capture(model, layers)``: record activations during a forward pass, and their gradients.

Hooks are registered on ``__enter__`` and removed in ``finally``, also after an exception. The
forward hook stores the layer's tensor and sends a *clone* downstream, so an in-place operation
later in the network (``ReLU(inplace=True)``) cannot change what was stored. Gradients come from
:func:`torch.autograd.grad`, never ``.backward()``, so the user's ``param.grad`` is untouched. The
model runs in eval mode inside the block and every module's ``training`` flag is restored on exit.
Each call of ``model`` starts a fresh record, so the tensors (and the count behind the warning for a
module that runs several times in one forward pass) always describe the last forward pass.

Example:
    >>> with xcam.capture(model, ["layer4", "avgpool:input"]) as cap:
    ...     logits = model(x)
    ...     grads = cap.gradients(logits[:, 3].sum())
    >>> cap["layer4"].shape, grads["layer4"].shape
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

import torch
from torch import Tensor, nn

from .errors import GradientModeError, InputError, warn
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
        self._flags: dict[nn.Module, bool] = {}
        self._active = False

    # -- recording ---------------------------------------------------------------------------
    def _new_forward(self, module: nn.Module, args: tuple) -> None:
        # Pre-hook on the model itself: a new forward pass forgets the previous one, so running
        # the model twice in one block is not mistaken for a layer that runs twice in one pass.
        self._stored.clear()
        self._calls.clear()
        self._order.clear()

    def _store(self, tap: Tap, tensor: Tensor) -> Tensor:
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

    def _output_hook(self, tap: Tap):
        def hook(module: nn.Module, args: tuple, output: object) -> object:
            if not isinstance(output, Tensor):
                raise InputError(
                    f"layer {tap.label!r} returns {type(output).__name__}, not a tensor; "
                    "choose a submodule that returns a tensor (see xcam.list_layers(model, x))"
                )
            return self._store(tap, output)

        return hook

    def _input_hook(self, tap: Tap):
        def hook(module: nn.Module, args: tuple) -> object:
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
            raise RuntimeError("this capture is already active; create a new one")
        self._active = True
        self._stored.clear()
        self._calls.clear()
        self._order.clear()
        try:
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
                self._flags = {m: m.training for m in self.model.modules()}
                self.model.eval()
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
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for module, flag in self._flags.items():
            module.training = flag
        self._flags.clear()
        self._active = False

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
    ) -> dict[str, Tensor]:
        """``d scores.sum() / d activation`` for each recorded layer, via ``torch.autograd.grad``.

        Samples of a batch are independent in eval mode, so the gradient of the sum gives every
        sample its own gradient in one backward pass that stops at the deepest requested layer.
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
        if not scores.requires_grad:
            raise GradientModeError(
                "the scores do not require grad: the forward pass ran under torch.no_grad() or "
                "without any tensor that requires grad; run it with gradients enabled"
            )
        grads = torch.autograd.grad(
            scores.sum(), tensors, retain_graph=retain_graph, create_graph=create_graph,
            allow_unused=True,
        )
        out: dict[str, Tensor] = {}
        for tap, grad, tensor in zip(taps, grads, tensors):
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
