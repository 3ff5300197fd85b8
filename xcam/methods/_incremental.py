"""Incremental occlusion: propagate only the region a window changes, layer by layer.

Idea from Nakandala, Kumar and Papakonstantinou, "Incremental and Approximate Inference for Faster
Occlusion-based Deep CNN Explanations" (SIGMOD 2019). The clean image runs once and every layer's
output is kept. For a batch of window positions, each layer is computed only on the part of its
output that the window can change (the window grown by each layer's kernel, stride and padding),
from the clean output with the changed region pasted in. Where that region covers most of a
layer's output, the computation falls back to the whole layer from there on.

Regions are tracked on an unclipped canvas: every window position has a region of the same size
(its origin differs), so all positions are computed in one batch; canvas cells outside a tensor
read that layer's padding value, exactly as the full computation does.

The graph comes from :func:`torch.fx.symbolic_trace`. Supported incrementally: convolutions
(modules, or ``F.conv2d`` calls), batch norm in eval mode, element-wise activations, max / average
pooling, zero padding, residual additions and channel concatenation. Any other operation runs on
the whole tensor (exact, just not incremental); a model that cannot be traced raises
:class:`IncrementalUnsupported` so that the caller can fall back to plain occlusion.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from ..errors import XcamError
from ..outputs import OutputFn, logits

__all__ = ["IncrementalUnsupported", "IncrementalModel", "Cost", "occluded_outputs"]


class IncrementalUnsupported(XcamError, RuntimeError):
    """The model cannot be run incrementally (not traceable, or no spatial layers)."""


_ELEMENTWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh,
                        nn.LeakyReLU, nn.GELU, nn.ELU, nn.Identity, nn.Dropout, nn.Dropout2d)
_ELEMENTWISE_FUNCS = {F.relu, torch.relu, F.relu6, F.silu, F.hardswish, F.gelu, torch.sigmoid,
                      torch.tanh, F.dropout}
_ADD = {operator.add, operator.iadd, torch.add}


@dataclass
class _Val:
    """A node's value for N window positions: ``patch`` holds the region starting at (oy, ox)."""

    patch: Tensor  # (N, C, h, w); when full: the whole tensor (N, ...)
    oy: Tensor  # (N,) int64
    ox: Tensor
    full: bool


@dataclass(frozen=True)
class _Geom:
    """Per-node region on the canvas, decided once per (model, input size, window, stride)."""

    oy: Tensor  # (P,) origins for all P window positions
    ox: Tensor
    h: int
    w: int
    full: bool


@dataclass(frozen=True)
class Cost:
    """Multiply-accumulates of the spatial layers: plain occlusion vs incremental, per window."""

    plain_macs: int
    incremental_macs: int

    @property
    def speedup(self) -> float:
        return self.plain_macs / max(1, self.incremental_macs)


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class IncrementalModel:
    """A traced model that evaluates occluded copies of one image incrementally.

    Args:
        model: a CNN in eval mode (batch norm must use running statistics).
        max_fraction: a layer whose changed region covers more than this fraction of its output is
            computed whole, and so is everything after it.
        cap: approximate mode; ``None`` for exact. A float in (0, 1]: the region a window changes
            may grow to at most ``cap`` times each layer's height and width; changes beyond are
            ignored (the paper's projective-field threshold).

    Raises:
        IncrementalUnsupported: the model cannot be traced by ``torch.fx``.
    """

    def __init__(self, model: nn.Module, max_fraction: float = 0.5, cap: float | None = None) -> None:
        try:
            self.gm = fx.symbolic_trace(model)
        except Exception as err:  # noqa: BLE001 - any tracing failure means "not supported"
            raise IncrementalUnsupported(
                f"torch.fx cannot trace {type(model).__name__}: {type(err).__name__}: {err}"
            ) from err
        self.modules = dict(self.gm.named_modules())
        self.max_fraction = max_fraction
        self.cap = cap
        self._plan_key: tuple[Any, ...] | None = None
        self._geoms: dict[fx.Node, _Geom] = {}
        # convolution -> the batch norm that alone reads its output: folded together in eval mode
        self._bn_after: dict[fx.Node, fx.Node] = {}
        for n in self.gm.graph.nodes:
            src = n.args[0] if n.op == "call_module" and n.args else None
            if isinstance(self.modules[n.target] if n.op == "call_module" else None, nn.BatchNorm2d) \
                    and isinstance(src, fx.Node) and src.op == "call_module" \
                    and isinstance(self.modules[src.target], nn.Conv2d) and len(src.users) == 1 \
                    and self.modules[src.target].padding_mode == "zeros":
                self._bn_after[src] = n
        self._folded: dict[fx.Node, tuple[Tensor, Tensor]] = {}
        self._folded_into: dict[fx.Node, fx.Node] = {}  # batch norm -> its convolution

    # -- clean pass ----------------------------------------------------------------------
    def clean(self, x: Tensor) -> dict[fx.Node, Any]:
        """Run the clean image and keep every node's value."""
        env: dict[fx.Node, Any] = {}

        class Recorder(fx.Interpreter):
            def run_node(self, n: fx.Node) -> Any:
                env[n] = super().run_node(n)
                return env[n]

        with torch.no_grad():
            Recorder(self.gm).run(x)
            self._fold_batch_norms()
        return env

    def _fold_batch_norms(self) -> None:
        """Fold each eval-mode batch norm into the convolution before it, from the current weights.

        Incremental runs then skip the batch norms (one pass over every patch less); the result
        differs from the unfolded computation by float rounding only.
        """
        self._folded, self._folded_into = {}, {}
        for conv_node, bn_node in self._bn_after.items():
            conv, bn = self.modules[conv_node.target], self.modules[bn_node.target]
            if bn.training or bn.running_mean is None or bn.running_var is None:
                continue
            scale = (bn.weight if bn.weight is not None else 1.0) * torch.rsqrt(bn.running_var + bn.eps)
            weight = conv.weight * scale.reshape(-1, *([1] * (conv.weight.dim() - 1))).to(conv.weight)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            bias = (bias - bn.running_mean) * scale + (bn.bias if bn.bias is not None else 0.0)
            self._folded[conv_node] = (weight, bias.to(conv.weight))
            self._folded_into[bn_node] = conv_node

    # -- geometry ------------------------------------------------------------------------
    def _window_op(self, n: fx.Node) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int],
                                              tuple[int, int], float] | None:
        """(kernel, stride, padding, dilation, pad value) of a windowed op, or None."""
        if n.op == "call_module":
            m = self.modules[n.target]
            if isinstance(m, nn.Conv2d) and isinstance(m.padding, tuple) and m.padding_mode == "zeros":
                return _pair(m.kernel_size), _pair(m.stride), _pair(m.padding), _pair(m.dilation), 0.0
            if isinstance(m, nn.MaxPool2d) and not m.ceil_mode:
                return (_pair(m.kernel_size), _pair(m.stride or m.kernel_size), _pair(m.padding),
                        _pair(m.dilation), float("-inf"))
            if isinstance(m, nn.AvgPool2d) and not m.ceil_mode and m.count_include_pad \
                    and m.divisor_override is None:
                return _pair(m.kernel_size), _pair(m.stride or m.kernel_size), _pair(m.padding), (1, 1), 0.0
            if isinstance(m, nn.ZeroPad2d) and min(m.padding) >= 0:
                left, _, top, _ = m.padding  # right / bottom only extend the output
                return (1, 1), (1, 1), (top, left), (1, 1), 0.0
        if n.op == "call_function" and n.target is F.conv2d:
            weight = n.args[1] if len(n.args) > 1 else n.kwargs.get("weight")
            if not isinstance(weight, fx.Node):
                return None
            ks = self._static_shape(weight)
            if ks is None:
                return None
            def get(i: int, k: str, d: Any) -> Any:
                return n.args[i] if len(n.args) > i else n.kwargs.get(k, d)

            pad = get(4, "padding", 0)
            if isinstance(pad, str):
                return None
            return ks, _pair(get(3, "stride", 1)), _pair(pad), _pair(get(5, "dilation", 1)), 0.0
        return None

    def _static_shape(self, node: fx.Node) -> tuple[int, int] | None:
        if node.op == "get_attr":
            t = self.gm
            for part in str(node.target).split("."):
                t = getattr(t, part)
            return (int(t.shape[-2]), int(t.shape[-1]))  # type: ignore[index]
        return None

    def _elementwise(self, n: fx.Node) -> bool:
        if n.op == "call_module":
            m = self.modules[n.target]
            if isinstance(m, nn.BatchNorm2d):
                return not m.training
            return isinstance(m, _ELEMENTWISE_MODULES)
        if n.op == "call_function":
            return n.target in _ELEMENTWISE_FUNCS
        if n.op == "call_method":
            return n.target in ("relu", "relu_", "sigmoid", "clamp")
        return False

    def plan(self, env: dict[fx.Node, Any], windows: Tensor, size: tuple[int, int]) -> None:
        """Regions of every node for all window positions ``windows`` (P, 4) = y0, y1, x0, x1."""
        geoms: dict[fx.Node, _Geom] = {}
        for n in self.gm.graph.nodes:
            out = env[n]
            spatial = isinstance(out, Tensor) and out.dim() == 4
            if n.op == "placeholder":
                geoms[n] = _Geom(windows[:, 0], windows[:, 2], int((windows[:, 1] - windows[:, 0]).max()),
                                 int((windows[:, 3] - windows[:, 2]).max()), False)
                continue
            inputs = [a for a in n.all_input_nodes if a in geoms]
            if not inputs:
                continue  # static: does not depend on the image
            g_in = [geoms[a] for a in inputs]
            if any(g.full for g in g_in) or not spatial:
                geoms[n] = _Geom(windows[:, 0] * 0, windows[:, 0] * 0, 0, 0, True)
                continue
            op = self._window_op(n)
            H, W = out.shape[-2:]
            if op is not None and len(inputs) == 1:
                (kh, kw), (sh, sw), (ph, pw), (dh, dw), _ = op
                g = g_in[0]
                lo_y = torch.div(g.oy + ph - dh * (kh - 1) + sh - 1, sh, rounding_mode="floor")
                hi_y = torch.div(g.oy + g.h - 1 + ph, sh, rounding_mode="floor")
                lo_x = torch.div(g.ox + pw - dw * (kw - 1) + sw - 1, sw, rounding_mode="floor")
                hi_x = torch.div(g.ox + g.w - 1 + pw, sw, rounding_mode="floor")
                oy, ox = lo_y, lo_x
                h, w = int((hi_y - lo_y).max()) + 1, int((hi_x - lo_x).max()) + 1
            elif self._elementwise(n) and len(inputs) == 1:
                oy, ox, h, w = g_in[0].oy, g_in[0].ox, g_in[0].h, g_in[0].w
            elif (n.op == "call_function" and (n.target in _ADD or n.target is torch.cat)) or \
                    (n.op == "call_method" and n.target in ("add", "add_")):
                if n.target is torch.cat and (n.kwargs.get("dim", n.args[1] if len(n.args) > 1 else 0)
                                              not in (1, -3)):
                    geoms[n] = _Geom(windows[:, 0] * 0, windows[:, 0] * 0, 0, 0, True)
                    continue
                oy = torch.stack([g.oy for g in g_in]).min(0).values
                ox = torch.stack([g.ox for g in g_in]).min(0).values
                h = int((torch.stack([g.oy + g.h for g in g_in]).max(0).values - oy).max())
                w = int((torch.stack([g.ox + g.w for g in g_in]).max(0).values - ox).max())
            else:
                geoms[n] = _Geom(windows[:, 0] * 0, windows[:, 0] * 0, 0, 0, True)
                continue
            if self.cap is not None:
                # approximate mode: the region may grow to at most cap x the layer's size
                mh, mw = max(1, math.ceil(self.cap * H)), max(1, math.ceil(self.cap * W))
                if h > mh:
                    oy, h = oy + (h - mh) // 2, mh
                if w > mw:
                    ox, w = ox + (w - mw) // 2, mw
            full = h * w > self.max_fraction * H * W
            geoms[n] = _Geom(oy, ox, h, w, full)
        self._geoms = geoms

    # -- evaluation ----------------------------------------------------------------------
    @staticmethod
    def _gather(clean: Tensor, val: _Val | None, oy: Tensor, ox: Tensor, h: int, w: int,
                pad: float) -> Tensor:
        """(N, C, h, w): the node's values on the canvas window at (oy, ox), padding outside.

        Built from slice copies, one or two per position (the clean values, then the changed
        patch over them): a handful of memory copies, where an index tensor per element would
        cost as much as the convolutions it saves.
        """
        _, c, H, W = clean.shape
        n = oy.shape[0]
        layout = torch.channels_last if clean.stride(1) == 1 and c > 1 else torch.contiguous_format
        out = torch.empty((n, c, h, w), dtype=clean.dtype, device=clean.device, memory_format=layout)
        ys, xs = oy.tolist(), ox.tolist()
        partial = val is not None and not val.full
        if partial:
            assert val is not None
            pys, pxs = val.oy.tolist(), val.ox.tolist()
            ph, pw = val.patch.shape[-2:]
        for i in range(n):
            y, x = ys[i], xs[i]
            r0, r1, c0, c1 = max(y, 0), min(y + h, H), max(x, 0), min(x + w, W)
            if r0 > y or c0 > x or r1 < y + h or c1 < x + w:
                out[i].fill_(pad)  # part of the window lies outside the tensor
            if r0 >= r1 or c0 >= c1:
                continue
            src = val.patch[i] if val is not None and val.full else clean[0]
            out[i, :, r0 - y:r1 - y, c0 - x:c1 - x] = src[:, r0:r1, c0:c1]
            if partial:
                py, px = pys[i], pxs[i]
                a0, a1, b0, b1 = max(r0, py), min(r1, py + ph), max(c0, px), min(c1, px + pw)
                if a0 < a1 and b0 < b1:
                    out[i, :, a0 - y:a1 - y, b0 - x:b1 - x] = \
                        val.patch[i, :, a0 - py:a1 - py, b0 - px:b1 - px]  # type: ignore[union-attr]
        return out

    def _full(self, n: fx.Node, env: dict[fx.Node, Any], vals: dict[fx.Node, _Val], count: int) -> Any:
        """A node's value as a whole tensor for the N positions (clean value if static)."""
        if n not in vals:
            return env[n]
        v = vals[n]
        if v.full:
            return v.patch
        clean = env[n]
        H, W = clean.shape[-2:]
        zero = torch.zeros(count, dtype=torch.long, device=clean.device)
        return self._gather(clean, v, zero, zero, H, W, 0.0)

    def run(self, env: dict[fx.Node, Any], positions: Tensor, fills: Tensor) -> Any:
        """Model outputs for the window positions ``positions`` (indices into the planned windows).

        Args:
            env: clean values from :meth:`clean`.
            positions: (N,) indices of planned windows.
            fills: (N, C, h0, w0) the input's values on each window's canvas region (the baseline
                inside the image, anything outside).
        """
        vals: dict[fx.Node, _Val] = {}
        count = positions.shape[0]
        output = None
        for n in self.gm.graph.nodes:
            if n.op == "output":
                output = fx.node.map_arg(n.args[0], lambda a: self._full(a, env, vals, count))
                break
            g = self._geoms.get(n)
            if g is None:
                continue  # static node: its clean value serves every position
            oy, ox = g.oy[positions], g.ox[positions]
            if n.op == "placeholder":
                vals[n] = _Val(fills, oy, ox, False)
                continue
            conv = self._folded_into.get(n)
            if conv is not None:
                vals[n] = vals[conv]  # a batch norm folded into the convolution before it
                continue
            if g.full:
                args = fx.node.map_arg(n.args, lambda a: self._full(a, env, vals, count))
                kwargs = fx.node.map_arg(n.kwargs, lambda a: self._full(a, env, vals, count))
                vals[n] = _Val(self._call(n, args, kwargs), oy, ox, True)
                continue
            op = self._window_op(n)
            if op is not None:
                (kh, kw), (sh, sw), (ph, pw), (dh, dw), padv = op
                src = next(a for a in n.all_input_nodes if a in vals)
                wy, wx = oy * sh - ph, ox * sw - pw
                wh, ww = (g.h - 1) * sh + dh * (kh - 1) + 1, (g.w - 1) * sw + dw * (kw - 1) + 1
                window = self._gather(env[src], vals[src], wy, wx, wh, ww, padv)
                vals[n] = _Val(self._call_window(n, window), oy, ox, False)
            elif self._elementwise(n):
                src = next(a for a in n.all_input_nodes if a in vals)
                def pick(a: fx.Node, src: fx.Node = src) -> Any:
                    return vals[a].patch if a is src else env[a]

                args = fx.node.map_arg(n.args, pick)
                kwargs = fx.node.map_arg(n.kwargs, pick)
                vals[n] = _Val(self._call(n, args, kwargs), oy, ox, False)
            else:  # add / cat on the union region
                def region(a: fx.Node, oy: Tensor = oy, ox: Tensor = ox, g: _Geom = g) -> Any:
                    return self._gather(env[a], vals.get(a), oy, ox, g.h, g.w, 0.0) \
                        if isinstance(env[a], Tensor) and env[a].dim() == 4 else env[a]

                args = fx.node.map_arg(n.args, region)
                kwargs = fx.node.map_arg(n.kwargs, region)
                vals[n] = _Val(self._call(n, args, kwargs), oy, ox, False)
        return output

    def _call(self, n: fx.Node, args: Any, kwargs: Any) -> Any:
        if n in self._folded:
            m = self.modules[n.target]
            weight, bias = self._folded[n]
            return F.conv2d(args[0], weight, bias, m.stride, m.padding, m.dilation, m.groups)
        if n.op == "call_module":
            m = self.modules[n.target]
            if isinstance(m, (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish)) and getattr(m, "inplace", False):
                return {nn.ReLU: F.relu, nn.ReLU6: F.relu6, nn.SiLU: F.silu,
                        nn.Hardswish: F.hardswish}[type(m)](args[0])
            return m(*args, **kwargs)
        if n.op == "call_function":
            if n.target is operator.iadd:
                return operator.add(*args)
            return n.target(*args, **kwargs)  # type: ignore[operator]
        if n.op == "call_method":
            target = {"add_": "add", "relu_": "relu"}.get(str(n.target), str(n.target))
            return getattr(args[0], target)(*args[1:], **kwargs)
        if n.op == "get_attr":
            raise AssertionError("get_attr nodes are static")
        raise IncrementalUnsupported(f"node {n.format_node()} cannot be evaluated")

    def _call_window(self, n: fx.Node, window: Tensor) -> Tensor:
        """A windowed op on a materialized window (its padding already applied)."""
        if n.op == "call_module":
            m = self.modules[n.target]
            if isinstance(m, nn.Conv2d):
                weight, bias = self._folded.get(n, (m.weight, m.bias))
                return F.conv2d(window, weight, bias, m.stride, 0, m.dilation, m.groups)
            if isinstance(m, nn.MaxPool2d):
                return F.max_pool2d(window, m.kernel_size, m.stride or m.kernel_size, 0, m.dilation)
            if isinstance(m, nn.AvgPool2d):
                return F.avg_pool2d(window, m.kernel_size, m.stride or m.kernel_size, 0)
            if isinstance(m, nn.ZeroPad2d):
                return window
        get: Any = lambda i, k, d: n.args[i] if len(n.args) > i else n.kwargs.get(k, d)  # noqa: E731
        weight, bias = get(1, "weight", None), get(2, "bias", None)
        t = self.gm
        w_t = _attr(t, weight)
        b_t = None if bias is None else _attr(t, bias)
        return F.conv2d(window, w_t, b_t, get(3, "stride", 1), 0, get(5, "dilation", 1), get(6, "groups", 1))

    # -- cost ----------------------------------------------------------------------------
    def cost(self, env: dict[fx.Node, Any]) -> Cost:
        """MACs of convolutions per window position: full vs changed region (after :meth:`plan`)."""
        plain = inc = 0
        for n in self.gm.graph.nodes:
            op = self._window_op(n)
            out = env.get(n)
            is_conv = (n.op == "call_function" and n.target is F.conv2d) or (
                n.op == "call_module" and isinstance(self.modules[n.target], nn.Conv2d))
            if op is None or not is_conv or not isinstance(out, Tensor) or out.dim() != 4:
                continue
            (kh, kw) = op[0]
            cin = _input_channels(self, n, env)
            per_pixel = kh * kw * cin * out.shape[1] // max(1, _groups(self, n))
            H, W = out.shape[-2:]
            plain += per_pixel * H * W
            g = self._geoms.get(n)
            inc += per_pixel * (H * W if g is None or g.full else g.h * g.w)
        return Cost(plain, inc)


def _attr(gm: nn.Module, node: Any) -> Tensor:
    t: Any = gm
    for part in str(node.target).split("."):
        t = getattr(t, part)
    return cast(Tensor, t)


def _input_channels(im: IncrementalModel, n: fx.Node, env: dict[fx.Node, Any]) -> int:
    src = n.all_input_nodes[0]
    v = env.get(src)
    return int(v.shape[1]) if isinstance(v, Tensor) and v.dim() == 4 else 0


def _groups(im: IncrementalModel, n: fx.Node) -> int:
    if n.op == "call_module":
        m = im.modules[n.target]
        return int(getattr(m, "groups", 1))
    groups: Any = n.args[6] if len(n.args) > 6 else n.kwargs.get("groups", 1)
    return int(groups)


def occluded_outputs(
    model: nn.Module,
    image: Tensor,
    windows: Tensor,
    baseline: Tensor,
    batch_size: int = 64,
    engine: IncrementalModel | None = None,
    channels_last: bool = False,
    output_fn: OutputFn | None = None,
) -> Tensor:
    """Model outputs for ``image`` (1, C, H, W) with each window filled by ``baseline``.

    Args:
        model: the model (in eval mode, gradients off: the caller's business).
        image: (1, C, H, W) the clean image.
        windows: (P, 4) int64 ``y0, y1, x0, x1`` of every window, all of one size; a window may
            reach past the border (the part outside the image is ignored).
        baseline: a tensor broadcastable to ``image``.
        batch_size: occluded copies per pass.
        engine: a prepared :class:`IncrementalModel` (built from ``model`` when None).
        channels_last: run in channels-last memory format (faster convolutions on the CPU; the
            values differ only by float rounding).
        output_fn: replaces the rules of :func:`xcam.outputs.logits`, which read the scores in a
            model that returns a dict, a tuple or a ``ModelOutput``.

    Returns:
        (P, ...) the outputs, exactly (up to float rounding) ``model(occluded image)``.
    """
    engine = engine or IncrementalModel(model)
    if channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    env = engine.clean(image)
    engine.plan(env, windows, (int(image.shape[-2]), int(image.shape[-1])))
    h = int((windows[:, 1] - windows[:, 0]).max())
    w = int((windows[:, 3] - windows[:, 2]).max())
    base = torch.broadcast_to(baseline.to(image), image.shape)
    outs = []
    with torch.no_grad():
        for start in range(0, windows.shape[0], batch_size):
            pos = torch.arange(start, min(start + batch_size, windows.shape[0]), device=image.device)
            wy, wx = windows[pos, 0], windows[pos, 2]
            fills = IncrementalModel._gather(base, None, wy, wx, h, w, 0.0)
            outs.append(logits(engine.run(env, pos, fills), output_fn))
    return torch.cat(outs)
