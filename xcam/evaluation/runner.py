"""The per-batch work: decode, forward, explain with every method, score with every metric.

Images are decoded by a :class:`torch.utils.data.DataLoader` (:class:`ImageDataset`, workers as
``num_workers`` says) and go through the model, every method and every metric ``batch_size`` at a
time. Deterministic methods and metrics run on the whole batch; stochastic ones run image by image,
each with a generator seeded by (seed, image key) (:func:`xcam.evaluation.spec.image_seed`), so that
no score depends on the batch size, on the batch an image lands in, or on the number of processes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..errors import XcamError
from ..metrics.base import MetricInputs, PerImage
from ..outputs import logits
from .data import ImageData
from .records import picture_name, save_thumbnail
from .spec import CompareError, RunConfig, image_seed, metric_of

__all__ = ["BatchRunner", "ImageDataset", "Image", "ForwardCounter", "is_stochastic", "explain_batch"]

#: what a failing image, method or metric raises; anything else is a bug and stops the run
FAILURES = (XcamError, ValueError, RuntimeError, TypeError, IndexError, OSError)


class ForwardCounter:
    """Counts the images that go through ``model``.

    A forward pre-hook on the root module, removed by :meth:`close`.
    """

    def __init__(self, model: nn.Module) -> None:
        self.n = 0
        self._handle = model.register_forward_pre_hook(self._hook)

    def _hook(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if args and isinstance(args[0], Tensor) and args[0].dim() >= 1:
            self.n += int(args[0].shape[0])

    def close(self) -> None:
        """Remove the hook."""
        self._handle.remove()


def sync(device: torch.device) -> None:
    """Wait for the device (CUDA) so that a timing covers the work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class ImageDataset(Dataset[dict[str, Any]]):
    """Image ``i`` of the data, read and brought to the model input's geometry (for a DataLoader).

    An image that cannot be read gives ``{"index", "key", "error"}`` instead of raising, so that
    the run records it and goes on.
    """

    def __init__(self, data: ImageData, size: tuple[int, int], geometry: Any) -> None:
        self.data = data
        self.size = size
        self.geometry = geometry

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.data[index]
        item: dict[str, Any] = {"index": index, "key": sample.key, "label": sample.label}
        try:
            loaded = self.data.load(index, self.size, preprocess=self.geometry)
        except FAILURES as err:
            item["error"] = f"{type(err).__name__}: {err}"
            return item
        item.update(pixels=loaded.pixels, boxes=loaded.boxes, info=loaded.info,
                    original_size=list(loaded.original_size),
                    gt_fraction=loaded.gt_fraction() if loaded.boxes else None)
        return item


def keep_list(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The DataLoader's ``collate_fn``: the batch stays a list of per-image dicts."""
    return items


@dataclass
class Image:
    """One image of a batch after the clean forward pass (``x`` (1, C, H, W), ``output`` (1, K))."""

    index: int
    key: str
    x: Tensor
    pixels: Tensor
    output: Tensor
    target: int
    boxes: list[list[float]]


def is_stochastic(explainer: Any) -> bool:
    """Whether ``explainer`` draws random numbers from its ``seed`` (then run image by image)."""
    return not getattr(explainer, "deterministic", True) and hasattr(explainer, "seed")


def explain_batch(explainer: Any, x: Tensor, targets: Tensor, keys: list[str], seed: int) -> Tensor:
    """Maps (B, H, W) of ``explainer`` on ``x``: in one call, or image by image with per-image seeds.

    A stochastic explainer (``deterministic`` False, with a ``seed`` attribute) runs once per image
    with ``seed`` set to :func:`~xcam.evaluation.spec.image_seed` of (``seed``, key); its own seed
    is restored afterwards.
    """
    if not is_stochastic(explainer):
        result = explainer(x, targets)
        return getattr(result, "maps", result)  # type: ignore[no-any-return]
    own = explainer.seed
    maps = []
    try:
        for j, key in enumerate(keys):
            explainer.seed = image_seed(seed, key)
            result = explainer(x[j:j + 1], targets[j:j + 1])
            maps.append(getattr(result, "maps", result))
    finally:
        explainer.seed = own
    return torch.cat(maps)


class BatchRunner:
    """Runs batches of images through the model, every method and every per-image metric."""

    def __init__(self, model: nn.Module, data: ImageData, cfg: RunConfig,
                 explainers: dict[str, Any]) -> None:
        from .models import Preprocess

        self.model = model
        self.data = data
        self.cfg = cfg
        self.geometry = cfg.preprocess if isinstance(cfg.preprocess, Preprocess) else None
        self.explainers = explainers
        self.counter = ForwardCounter(model)

    def close(self) -> None:
        """Remove the forward counter's hook."""
        self.counter.close()

    def loader(self, batches: list[list[int]]) -> Iterator[list[dict[str, Any]]]:
        """The decoded batches (lists of :class:`ImageDataset` items), in order."""
        if not batches:
            return iter(())
        from torch.utils.data import DataLoader

        dataset = ImageDataset(self.data, self.cfg.size, self.geometry)
        workers = self.cfg.num_workers
        return iter(DataLoader(dataset, batch_sampler=batches, num_workers=workers,
                               collate_fn=keep_list, persistent_workers=False,
                               multiprocessing_context="fork" if workers and _can_fork() else None))

    # ---- the clean forward -------------------------------------------------------------------

    def target(self, key: str, label: int | None, predicted: int, n_classes: int) -> int:
        """The class to explain, by the target policy."""
        from ..errors import InputError

        policy = self.cfg.targets
        if isinstance(policy, int):
            target = policy
        elif policy == "predicted" or (policy == "auto" and label is None):
            target = predicted
        elif label is None:
            raise InputError(f"targets='label' but image {key!r} has no label; use "
                             "targets='auto' (label when known, else the top class)")
        else:
            target = label
        if not 0 <= target < n_classes:
            raise InputError(
                f"target class {target} of image {key!r} is outside the model's {n_classes} "
                "outputs; check the labels (ImageFolder labels are sub-folder indices) or use "
                "targets='predicted'"
            )
        return target

    def forward(self, x: Tensor) -> Tensor:
        """The model's (B, classes) scores on ``x``, float, checked for shape."""
        with torch.no_grad():
            output = logits(self.model(x), self.cfg.output_fn)
        if output.dim() != 2 or output.shape[0] != x.shape[0]:
            raise CompareError(f"the model must return (B, classes) scores; it returned "
                               f"{tuple(output.shape)} (pass output= to pick them from its output)")
        return output.detach().float()

    def prepare(self, items: list[dict[str, Any]]) -> tuple[list[Image], list[dict[str, Any]]]:
        """The readable images of a decoded batch after one forward pass, and every image's record.

        An image that could not be read, whose output is not finite or whose target is invalid
        gets an error record and no :class:`Image`.
        """
        good = [it for it in items if "error" not in it]
        records = {it["index"]: error_record(it["index"], it["key"], it["error"])
                   for it in items if "error" in it}
        images: list[Image] = []
        if good:
            pixels = torch.stack([it["pixels"] for it in good]).to(self.cfg.device)
            x = self.cfg.preprocess(pixels)
            try:
                output = self.forward(x)
            except FAILURES as err:
                for it in good:
                    records[it["index"]] = error_record(it["index"], it["key"], describe_error(err))
                good = []
            finite = torch.isfinite(output).all(dim=1).tolist() if good else []
            for j, it in enumerate(good):
                try:
                    img, rec = self.image(it, x[j:j + 1], pixels[j], output[j:j + 1], bool(finite[j]))
                except FAILURES as err:
                    records[it["index"]] = error_record(it["index"], it["key"], describe_error(err))
                    continue
                images.append(img)
                records[it["index"]] = rec
        return images, [records[it["index"]] for it in items]

    def image(self, item: dict[str, Any], x: Tensor, pixels: Tensor, output: Tensor,
              finite: bool) -> tuple[Image, dict[str, Any]]:
        """One image of the batch and its record (target, probability, baselines, thumbnail)."""
        key, index = item["key"], item["index"]
        if not finite:
            raise CompareError(f"the model's output on image {key!r} holds NaN or infinite values "
                               "(check the weights and the preprocessing)")
        probs = output.softmax(dim=1)[0]
        predicted = int(probs.argmax())
        target = self.target(key, item["label"], predicted, int(output.shape[1]))
        boxes = item["boxes"]
        record: dict[str, Any] = {
            "kind": "image", "image": key, "index": index, "status": "ok", "label": item["label"],
            "target": target, "predicted": predicted, "probability": float(probs[target]),
            "n_boxes": len(boxes), "gt_fraction": item["gt_fraction"],
            "original_size": item["original_size"], "baselines": self.baselines(boxes),
            "boxes": [[round(float(v), 2) for v in box] for box in boxes],
        }
        for name in ("exif_orientation", "dropped_boxes"):
            if name in item["info"]:
                record[name] = item["info"][name]
        if index < self.cfg.grid_images and self.cfg.out is not None:
            record["thumbnail"] = save_thumbnail(self.cfg.out, f"thumbnails/{index:06d}.png", pixels,
                                                 self.cfg.thumbnail)
        return Image(index, key, x, pixels, output, target, boxes), record

    def baselines(self, boxes: list[list[float]]) -> dict[str, float]:
        """Each metric's baseline score (the pointing game's center point) on an image's boxes."""
        out: dict[str, float] = {}
        if not boxes:
            return out
        data = MetricInputs(ground_truth=[boxes], image_size=self.cfg.size)
        for name in self.cfg.metrics:
            metric = metric_of(name)
            if metric.has_baseline:
                out[name] = float(metric.baseline_scores(data, **self.cfg.metric_kwargs.get(name, {}))[0])
        return out

    # ---- one method on a batch -----------------------------------------------------------------

    def explain(self, images: list[Image], label: str) -> list[dict[str, Any]]:
        """Method ``label`` on ``images`` (one call per batch, or per image when stochastic), scored.

        Returns one item record per image, in order; a failure is recorded on the images it
        concerns (the batch is retried image by image to find them).
        """
        try:
            maps, seconds, passes, layer = self.maps(images, label)
        except FAILURES as err:
            if len(images) == 1:
                return [item_error(images[0], label, err)]
            return [rec for img in images for rec in self.explain([img], label)]
        return self.finish(images, label, maps, seconds / len(images), passes / len(images), layer)

    def explain_shared(self, images: list[Image], labels: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Methods ``labels`` on ``images``, sharing passes between them, scored.

        The explainers that can share a pass (:func:`shares_pass`: the CAM family and the
        deterministic controls) run through :func:`xcam.explain`: one forward pass per batch, and one
        backward pass to their layers. The perturbation metrics that can share their forward passes
        (deletion, insertion, average drop, increase in confidence: ``Metric.perturbed``) score
        every method's maps together through :func:`xcam.metrics.batched.evaluate_maps`. Shared
        seconds and forward passes are split evenly between the methods that share them. A method
        that fails on the batch is retried image by image (:meth:`explain`).
        """
        group = [m for m in labels if shares_pass(self.explainers[m])]
        found: dict[str, tuple[Tensor, float, float, Any]] = {}
        out: dict[str, list[dict[str, Any]]] = {}
        if len(group) > 1:
            try:
                shared, seconds, passes = self.shared_maps(images, group)
            except FAILURES:
                shared, seconds, passes = {}, 0.0, 0
            n = len(images) * len(group)
            found.update({m: (maps, seconds / n, passes / n, layer) for m, (maps, layer) in shared.items()})
        for m in labels:
            if m in found:
                continue
            try:
                own = self.maps(images, m)
                found[m] = (own[0], own[1] / len(images), own[2] / len(images), own[3])
            except FAILURES as err:  # retried image by image to find the images it fails on
                out[m] = ([item_error(images[0], m, err)] if len(images) == 1
                          else [rec for img in images for rec in self.explain([img], m)])
        finite = {m: v[0] for m, v in found.items() if bool(torch.isfinite(v[0]).all())}
        scores, cost = self.shared_metrics(images, finite)
        for m, (maps, sec, npass, layer) in found.items():
            pre = {name: by_method[m] for name, by_method in scores.items()} if m in finite else {}
            out[m] = self.finish(images, m, maps, sec, npass, layer, pre, cost if pre else (0.0, 0.0))
        return {m: out[m] for m in labels}

    def shared_metrics(self, images: list[Image], maps: dict[str, Tensor]
                       ) -> tuple[dict[str, dict[str, PerImage]], tuple[float, float]]:
        """The perturbation metrics that share forward passes, on every method's maps at once.

        Returns ``{metric: {method: PerImage}}`` and the seconds and forward passes per (image,
        method); empty when none applies or the shared call fails (each method then runs them).
        """
        from ..metrics.batched import evaluate_maps

        names = [n for n in self.cfg.per_image_metrics if metric_of(n).perturbed is not None
                 and not metric_of(n).stochastic and "seed" not in self.cfg.metric_kwargs.get(n, {})
                 and "ground_truth" not in metric_of(n).needs]
        if not names or not maps:
            return {}, (0.0, 0.0)
        settings = {n: {k: v for k, v in self.cfg.metric_kwargs.get(n, {}).items() if k != "batch_size"}
                    for n in names}
        batch = max(int(self.cfg.metric_kwargs.get(n, {}).get("batch_size", 64)) for n in names)
        x, targets = batch_of(images, self.cfg.device)
        self.counter.n = 0
        sync(self.cfg.device)
        start = time.perf_counter()
        try:
            result = evaluate_maps(self.model, x, maps, targets, settings, batch_size=batch,
                                   clean_output=torch.cat([img.output for img in images]),
                                   output=self.cfg.output_fn)
        except FAILURES:
            return {}, (0.0, 0.0)
        sync(self.cfg.device)
        k = len(images) * len(maps)
        cost = ((time.perf_counter() - start) / k, self.counter.n / k)
        return {n: {m: metric_of(n).per_image(result[n][m]) for m in maps} for n in names}, cost

    def shared_maps(self, images: list[Image],
                    group: list[str]) -> tuple[dict[str, tuple[Tensor, Any]], float, int]:
        """Checked (B, H, W) maps and layer per method of ``group`` from one shared pass; seconds; passes."""
        from ..methods.onepass import explain

        x, targets = batch_of(images, self.cfg.device)
        self.counter.n = 0
        sync(self.cfg.device)
        start = time.perf_counter()
        results = explain(self.model, x, {m: self.explainers[m] for m in group}, targets)
        sync(self.cfg.device)
        seconds = time.perf_counter() - start
        out = {}
        for m, result in results.items():
            out[m] = (check_maps(result.maps, m, (len(images), *self.cfg.size)), result.layer)
        return out, seconds, self.counter.n

    def finish(self, images: list[Image], label: str, maps: Tensor, seconds: float, passes: float,
               layer: Any, pre: Mapping[str, PerImage] | None = None,
               cost: tuple[float, float] = (0.0, 0.0)) -> list[dict[str, Any]]:
        """The item records of method ``label``'s ``maps`` on ``images``: scores, overlays, costs.

        ``pre``: scores of metrics computed already (shared with other methods), and ``cost`` their
        seconds and forward passes per image.
        """
        n = len(images)
        records = [{"kind": "item", "image": img.key, "index": img.index, "method": label,
                    "status": "ok", "layer": layer, "seconds": seconds, "forward_passes": passes,
                    "scores": {}, "curves": {}, "parts": {}} for img in images]
        bad = (~torch.isfinite(maps).flatten(1).all(dim=1)).tolist()
        ok = [j for j in range(n) if not bad[j]]
        for j in range(n):
            if bad[j]:
                records[j] = item_error(images[j], label, CompareError(
                    f"{label}: the map holds NaN or infinite values"))
        if pre and len(ok) < n:  # computed on every row: a map with NaN runs its metrics alone
            pre, cost = None, (0.0, 0.0)
        self.score([images[j] for j in ok], maps[ok], label, [records[j] for j in ok], pre, cost)
        for j in ok:
            if images[j].index < self.cfg.grid_images and self.cfg.out is not None:
                records[j]["overlay"] = save_thumbnail(
                    self.cfg.out, f"overlays/{images[j].index:06d}.{picture_name(label)}.png",
                    images[j].pixels, self.cfg.thumbnail, maps[j])
        return records

    def maps(self, images: list[Image], label: str) -> tuple[Tensor, float, int, Any]:
        """The checked (B, H, W) maps of method ``label``, seconds, forward passes and layer."""
        explainer = self.explainers[label]
        x, targets = batch_of(images, self.cfg.device)
        self.counter.n = 0
        sync(self.cfg.device)
        start = time.perf_counter()
        maps = explain_batch(explainer, x, targets, [img.key for img in images], self.cfg.seed)
        sync(self.cfg.device)
        seconds = time.perf_counter() - start
        maps = check_maps(maps, label, (len(images), *self.cfg.size))
        params = explainer.params() if hasattr(explainer, "params") else {}
        layer = params.get("layer") if isinstance(params, dict) else None
        return maps, seconds, self.counter.n, layer

    # ---- the metrics ----------------------------------------------------------------------------

    def score(self, images: list[Image], maps: Tensor, label: str, records: list[dict[str, Any]],
              pre: Mapping[str, PerImage] | None = None, cost: tuple[float, float] = (0.0, 0.0)) -> None:
        """Score ``maps`` of ``images`` with every per-image metric into ``records``.

        A metric that needs ground truth scores NaN on an image without any. A metric that fails
        on the batch is retried image by image; the images it still fails on get an error record.
        Metrics in ``pre`` are stored as they are (scored with other methods' maps, at ``cost``).
        """
        if not images:
            return
        pre = pre or {}
        self.counter.n = 0
        sync(self.cfg.device)
        start = time.perf_counter()
        failed: dict[int, BaseException] = {}
        for name in self.cfg.per_image_metrics:
            if name in pre:
                store(pre[name], name, records)
            else:
                self.score_metric(name, images, maps, label, records, failed)
        sync(self.cfg.device)
        seconds, passes = time.perf_counter() - start, self.counter.n
        for j, rec in enumerate(records):
            rec["metric_seconds"] = seconds / len(images) + cost[0]
            rec["metric_forward_passes"] = passes / len(images) + cost[1]
            if j in failed:
                rec.clear()
                rec.update(item_error(images[j], label, failed[j]))

    def score_metric(self, name: str, images: list[Image], maps: Tensor, label: str,
                     records: list[dict[str, Any]], failed: dict[int, BaseException]) -> None:
        """Metric ``name`` on the images (batched, or one by one when stochastic or after a failure)."""
        metric = metric_of(name)
        settings = self.cfg.metric_kwargs.get(name, {})
        needs_gt = "ground_truth" in metric.needs
        todo = [j for j in range(len(images)) if j not in failed]
        for j in todo:
            if needs_gt and not images[j].boxes:
                records[j]["scores"][name] = float("nan")
                if metric.scope == "dataset":
                    records[j]["parts"][name] = [float("nan")]
        todo = [j for j in todo if images[j].boxes or not needs_gt]
        groups = [[j] for j in todo] if metric.stochastic or "seed" in settings else [todo]
        for group in groups:
            if not group:
                continue
            try:
                self.run_metric(name, [images[j] for j in group], maps[group], label,
                                [records[j] for j in group])
            except FAILURES as err:
                if len(group) == 1:
                    failed[group[0]] = err
                    continue
                for j in group:
                    try:
                        self.run_metric(name, [images[j]], maps[[j]], label, [records[j]])
                    except FAILURES as one:
                        failed[j] = one

    def run_metric(self, name: str, images: list[Image], maps: Tensor, label: str,
                   records: list[dict[str, Any]]) -> None:
        """Metric ``name`` on one group of images; per-image seeds for a group of one."""
        metric = metric_of(name)
        settings = dict(self.cfg.metric_kwargs.get(name, {}))
        if "seed" in settings and len(images) == 1:
            settings["seed"] = image_seed(int(settings["seed"]), images[0].key)
        x, targets = batch_of(images, self.cfg.device)
        data = MetricInputs(
            maps=maps, ground_truth=[img.boxes for img in images] if images[0].boxes else None,
            model=self.model, inputs=x, targets=targets, explainer=self.explainers[label],
            clean_output=torch.cat([img.output for img in images]), output=self.cfg.output_fn,
            image_size=self.cfg.size)
        store(metric.per_image(metric.run(data, **settings)), name, records)


def shares_pass(explainer: Any) -> bool:
    """Whether ``explainer`` can share one forward + backward pass with others (:func:`xcam.explain`).

    An xcam explainer that declares ``shares_pass`` and is deterministic (a stochastic one runs
    image by image with its per-image seed).
    """
    from ..methods.base import Explainer

    return isinstance(explainer, Explainer) and explainer.shares_pass and not is_stochastic(explainer)


def check_maps(maps: Any, label: str, size: tuple[int, ...]) -> Tensor:
    """``maps`` as float (B, H, W), detached; raises CompareError on another shape or type."""
    if not isinstance(maps, Tensor) or tuple(maps.shape) != size:
        got = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise CompareError(f"{label}: expected maps of shape {size}, got {got}")
    return maps.detach().float()


def store(per_image: PerImage, name: str, records: list[dict[str, Any]]) -> None:
    """Per-image scores, curves and parts of metric ``name`` into ``records``."""
    scores = per_image.scores.tolist()
    curves = per_image.curves.tolist() if per_image.curves is not None else None
    parts = per_image.parts.tolist() if per_image.parts is not None else None
    for j, rec in enumerate(records):
        rec["scores"][name] = float(scores[j])
        if curves is not None:
            rec["curves"][name] = [round(v, 6) for v in curves[j]]
        if parts is not None:
            rec["parts"][name] = [round(v, 6) for v in parts[j]]


def batch_of(images: list[Image], device: torch.device) -> tuple[Tensor, Tensor]:
    """The inputs (B, C, H, W) and target classes (B,) of ``images``."""
    x = images[0].x if len(images) == 1 else torch.cat([img.x for img in images])
    return x, torch.tensor([img.target for img in images], device=device)


def describe_error(err: BaseException) -> str:
    """``"TypeName: message"``, as records keep errors."""
    return f"{type(err).__name__}: {err}"


def error_record(index: int, key: str, error: str) -> dict[str, Any]:
    """The record of an image that could not be read or run."""
    return {"kind": "image", "image": key, "index": index, "status": "error", "error": error}


def item_error(img: Image, label: str, err: BaseException) -> dict[str, Any]:
    """The record of method ``label`` failing on ``img``."""
    return {"kind": "item", "image": img.key, "index": img.index, "method": label, "status": "error",
            "error": f"{type(err).__name__}: {err}"}


def _can_fork() -> bool:
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods()

