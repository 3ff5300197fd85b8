"""The engine: start or resume the run folder, run this process's batches, gather, write.

:func:`run_comparison` is what :func:`xcam.evaluation.compare.compare` runs once the settings are
checked (:class:`~xcam.evaluation.spec.RunConfig`); :func:`plan` is the dry run (forward passes
per method and metric, and a time estimated from one timed batch).
"""

from __future__ import annotations

import dataclasses
import platform
import sys
import time
from typing import Any

import torch
from torch import Tensor, nn

from .. import __version__
from ..errors import XcamError, warn
from ..metrics.base import MetricInputs
from .data import ImageData
from .distributed import Dist, owner, shard
from .records import FORMAT, Done, Store, check_run_folder, jsonable, model_fingerprint
from .results import Comparison
from .runner import BatchRunner
from .spec import (
    CompareError,
    ResumeError,
    RunConfig,
    RunFolderError,
    build_explainer,
    describe,
    explainer_settings,
    metric_of,
    sanity_layers,
)

__all__ = ["run_comparison", "estimate", "Plan", "Progress"]


def run_comparison(model: nn.Module, dataset: ImageData, cfg: RunConfig, ctx: Dist) -> Comparison:
    """Start or resume the run folder, do the work of this process, gather and write the result."""
    model = model.to(cfg.device)
    _start_folder(model, cfg, ctx)
    store = Store(cfg.out, ctx.rank, ctx.world)
    done = Done.read(store, dataset, cfg.spec)
    explainers, used_kwargs = build_explainers(model, cfg)
    runner = BatchRunner(model, dataset, cfg, explainers)
    stopped: BaseException | None = None
    try:
        _Work(runner, store, done, ctx, used_kwargs).run()
    except Exception as err:  # noqa: BLE001 - re-raised in _gather, after the other ranks know
        if ctx.world == 1:
            raise
        stopped = err
    finally:
        runner.close()
    images, items, sanity, layers = _gather(ctx, cfg, done, explainers, stopped)
    provenance = _provenance(model, dataset, cfg, ctx, explainers, used_kwargs, layers, items)
    result = Comparison(cfg.labels, cfg.metrics, images, items, sanity, provenance, cfg.out, cfg.classes)
    if cfg.classes is not None:
        beyond = sorted({t for img in images
                         if (t := img.get("target")) is not None and t >= len(cfg.classes)})
        if beyond and ctx.rank == 0:
            warn(f"xcam.compare: classes names {len(cfg.classes)} classes, but target {beyond[0]} is "
                 "beyond them (shown as 'class N'); pass the names of every output of the model")
    if ctx.rank == 0 and cfg.out is not None:
        result.write(cfg.out, report=cfg.report, overwrite=cfg.overwrite)
    n_bad = len(result.errors())
    if n_bad and ctx.rank == 0:
        warn(f"xcam.compare: {n_bad} image(s) or (image, method) pairs failed and were skipped; see "
             "Comparison.errors()" + (f" or {cfg.out / 'summary.json'}" if cfg.out else ""))
    return result


def build_explainers(model: nn.Module, cfg: RunConfig) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Every method's explainer, and the constructor arguments each was built with."""
    explainers: dict[str, Any] = {}
    used_kwargs: dict[str, dict[str, Any]] = {}
    for label, s in cfg.spec.items():
        explainers[label], used_kwargs[label] = build_explainer(
            label, s, model, cfg.method_kwargs.get(label, {}), cfg.seed, cfg.output_fn)
    return explainers, used_kwargs


def _start_folder(model: nn.Module, cfg: RunConfig, ctx: Dist) -> None:
    """Rank 0 checks (or starts) the run folder; every rank gets the verdict and raises it."""
    fingerprint = {
        "format": FORMAT,
        "model": cfg.model_name or type(model).__name__,
        "weights": model_fingerprint(model),
        "image_size": list(cfg.size),
        "preprocess": describe(cfg.preprocess),
        "targets": cfg.targets,
        "seed": cfg.seed,
        "metrics": jsonable(cfg.metric_kwargs),
        # a definition change (issue 12: MaxBoxAcc above t, fractional ties) never mixes on resume
        "metric_versions": {name: metric_of(name).version for name in cfg.metrics},
        "methods": {label: {"name": describe(s) if not isinstance(s, str) else s,
                            "kwargs": jsonable(cfg.method_kwargs.get(label, {}))}
                    for label, s in cfg.spec.items()},
    }
    verdict = None
    if ctx.rank == 0 and cfg.out is not None:
        verdict = check_run_folder(cfg.out, fingerprint, cfg.overwrite, cfg.report)
    verdict = ctx.broadcast(verdict)
    if verdict:
        kind, message = verdict
        raise (ResumeError if kind == "resume" else RunFolderError)(message)
    ctx.barrier()


class Progress:
    """Progress with an ETA: tqdm on a terminal, else a log line on stderr every ``interval`` seconds.

    ``show`` True forces tqdm, False shows nothing, None picks by ``sys.stderr.isatty()``.
    """

    def __init__(self, total: int, show: bool | None, interval: float = 5.0) -> None:
        self.total = total
        self.n = 0
        self.interval = interval
        self.start = self.last = time.monotonic()
        tty = sys.stderr.isatty()
        self.bar: Any = None
        self.log = show is None and not tty and total > 0
        if show or (show is None and tty):
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="xcam compare", unit="map", dynamic_ncols=True)

    def update(self, n: int) -> None:
        """``n`` more (image, method) maps done."""
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        due = now - self.last >= self.interval or (self.n >= self.total and self.last > self.start)
        if self.log and due:
            self.last = now
            sys.stderr.write(self.line(now - self.start) + "\n")
            sys.stderr.flush()

    def line(self, elapsed: float) -> str:
        """``xcam compare: 120/400 maps (30 %), 2.1 maps/s, ETA 2m13s``."""
        rate = self.n / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.n) / rate if rate > 0 else float("inf")
        pct = 100 * self.n // max(self.total, 1)
        return (f"xcam compare: {self.n}/{self.total} maps ({pct} %), {rate:.2f} maps/s, "
                f"ETA {format_seconds(eta)}")

    def close(self) -> None:
        """Close the bar."""
        if self.bar is not None:
            self.bar.close()


def format_seconds(seconds: float) -> str:
    """``93.5`` -> ``"1m34s"``; ``inf`` -> ``"?"``."""
    if seconds != seconds or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class _Work:
    """This process's share of the run: its batches of (image, method) left to do, then the samples."""

    def __init__(self, runner: BatchRunner, store: Store, done: Done, ctx: Dist,
                 used_kwargs: dict[str, dict[str, Any]]) -> None:
        self.runner = runner
        self.cfg = cfg = runner.cfg
        self.store = store
        self.done = done
        self.used_kwargs = used_kwargs
        labels = cfg.labels
        self.batches = []
        for batch in shard(len(runner.data), cfg.batch_size, ctx.rank, ctx.world):
            keep = [i for i in batch if done.images.get(i, {}).get("status") != "error"
                    and any((i, m) not in done.items for m in labels)]
            if keep:
                self.batches.append(keep)
        self.samples = [(m, name) for name in cfg.sample_metrics for j, m in enumerate(labels)
                        if j % ctx.world == ctx.rank and (m, name) not in done.sanity
                        and cfg.sanity_images > 0]
        self.failures = {m: 0 for m in labels}
        self.successes = {m: 0 for m in labels}
        self.bad_images = self.good_images = 0
        self.rank = ctx.rank

    def run(self) -> None:
        """Explain and score what is left, batch by batch, then run the sample-only metrics."""
        n = sum(1 for b in self.batches for i in b for m in self.cfg.labels
                if (i, m) not in self.done.items) + len(self.samples)
        progress = Progress(n, self.cfg.progress if self.rank == 0 else False)
        self.store.open()
        try:
            for items in self.runner.loader(self.batches):
                self._batch(items, progress)
            for label, name in self.samples:
                rec = _sanity(self.runner, label, name, self.used_kwargs[label])
                self.store.append(rec)
                self.done.sanity[(label, name)] = rec
                progress.update(1)
        finally:
            progress.close()
            self.store.close()

    def _batch(self, items: list[dict[str, Any]], progress: Progress) -> None:
        """One decoded batch: the image records, then every method on the readable images."""
        images, records = self.runner.prepare(items)
        for rec in records:
            self._image_record(rec, progress)
        whole = [m for m in self.cfg.labels if all((img.index, m) not in self.done.items for img in images)]
        if images and whole:  # the methods left to do on every image: one shared pass between them
            for records in self.runner.explain_shared(images, whole).values():
                for rec in records:
                    self._item_record(rec)
                progress.update(len(records))
        for m in self.cfg.labels:
            todo = [img for img in images if (img.index, m) not in self.done.items]
            if todo:  # a resumed batch: the images this method has not done yet
                for rec in self.runner.explain(todo, m):
                    self._item_record(rec)
                progress.update(len(todo))

    def _image_record(self, rec: dict[str, Any], progress: Progress) -> None:
        """Keep an image's record; stop when the first ``max_failures`` images all failed."""
        i = rec["index"]
        if rec["status"] == "ok":
            self.good_images += 1
            if self.done.images.get(i, {}).get("status") != "ok":
                self.store.append(rec)
                self.done.images[i] = rec
            return
        self.store.append(rec)
        self.done.images[i] = rec
        progress.update(sum(1 for m in self.cfg.labels if (i, m) not in self.done.items))
        self.bad_images += 1
        if self.good_images == 0 and self.bad_images >= self.cfg.max_failures:
            raise CompareError(f"the first {self.bad_images} images all failed; last error: {rec['error']} "
                               "(check the data, the model's output and targets=)")

    def _item_record(self, rec: dict[str, Any]) -> None:
        """Keep an (image, method) record; stop when the method fails on its first images."""
        m = rec["method"]
        self.store.append(rec)
        self.done.items[(rec["index"], m)] = rec
        if rec["status"] == "ok":
            self.successes[m] += 1
            return
        self.failures[m] += 1
        if self.successes[m] == 0 and self.failures[m] >= self.cfg.max_failures:
            raise CompareError(
                f"method {m!r} failed on its first {self.failures[m]} images; last error: "
                f"{rec['error']} (fix the method's settings with method_kwargs, or leave it out)")


def _gather(ctx: Dist, cfg: RunConfig, done: Done, explainers: dict[str, Any],
            stopped: BaseException | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                    list[dict[str, Any]], dict[str, Any]]:
    """Every rank's records, sorted, and the layer each explainer used; raises a rank's failure."""
    labels = cfg.labels
    layers = {}
    for m, e in explainers.items():
        params = e.params() if hasattr(e, "params") else {}
        layers[m] = params.get("layer") if isinstance(params, dict) else None
    payload = (
        [r for i, r in done.images.items() if owner(i, cfg.batch_size, ctx.world) == ctx.rank],
        [r for (i, _), r in done.items.items() if owner(i, cfg.batch_size, ctx.world) == ctx.rank],
        [r for (m, _), r in done.sanity.items() if labels.index(m) % ctx.world == ctx.rank],
        layers,
        None if stopped is None else f"rank {ctx.rank}: {type(stopped).__name__}: {stopped}",
    )
    # every rank reaches this collective, also one that failed, so that none waits forever
    gathered = ctx.gather(payload)
    if stopped is not None:
        raise stopped
    failed = [g[4] for g in gathered if g[4]]
    if failed:
        raise CompareError(f"another process stopped the run: {failed[0]}; what was written is kept "
                           "(re-run to resume)")
    order = {m: j for j, m in enumerate(labels)}
    metric_order = {n: j for j, n in enumerate(cfg.metrics)}
    images = sorted((r for g in gathered for r in g[0]), key=lambda r: r["index"])
    items = sorted((r for g in gathered for r in g[1]), key=lambda r: (r["index"], order[r["method"]]))
    sanity = sorted((r for g in gathered for r in g[2]),
                    key=lambda r: (metric_order.get(r.get("metric"), -1), order[r["method"]]))
    for g in gathered:
        for m, layer in g[3].items():
            if layer is not None:
                layers[m] = layer
    return images, items, sanity, layers


def _sample_images(runner: BatchRunner) -> tuple[list[int], list[Tensor], list[int]]:
    """The first ``sanity_images`` readable images: (indices, inputs, targets)."""
    idx: list[int] = []
    xs: list[Tensor] = []
    tg: list[int] = []
    want = runner.cfg.sanity_images
    for start in range(0, len(runner.data), want):
        batch = list(range(start, min(start + want, len(runner.data))))
        for items in runner.loader([batch]):
            images, _ = runner.prepare(items)
            for img in images[:want - len(xs)]:
                idx.append(img.index)
                xs.append(img.x)
                tg.append(img.target)
        if len(xs) == want:
            break
    return idx, xs, tg


def _sanity(runner: BatchRunner, label: str, name: str, used_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Run the ``sample_only`` metric ``name`` on method ``label`` over the first images.

    The metric gets the explainer by registered name (or factory) and re-creates it for each
    model it changes; a ``layers`` setting defaults to ``sanity_layer_names`` or
    :func:`sanity_layers`, an ``explainer_kwargs`` setting to the explainer's own arguments.
    """
    cfg = runner.cfg
    metric = metric_of(name)
    spec = cfg.spec[label]
    idx, xs, tg = _sample_images(runner)
    record: dict[str, Any] = {"kind": "sanity", "method": label, "metric": name, "images": idx}
    try:
        if not xs:
            raise CompareError(f"no readable image for {name}")
        x = torch.cat(xs)
        settings = dict(cfg.metric_kwargs.get(name, {}))
        if "layers" in metric.settings and not settings.get("layers"):
            settings["layers"] = list(cfg.sanity_layer_names or sanity_layers(runner.model))
        if "explainer_kwargs" in metric.settings and isinstance(spec, str):
            settings["explainer_kwargs"] = explainer_settings(spec, used_kwargs, runner.explainers[label])
        result = metric.run(MetricInputs(model=runner.model, explainer=spec, inputs=x,
                                         targets=torch.tensor(tg, device=x.device)), **settings)
        per_image = metric.per_image(result)
        record.update({"status": "ok", **jsonable(dict(per_image.details or {})),
                       "per_image": [float(v) for v in per_image.scores.tolist()]})
    except (XcamError, ValueError, RuntimeError, TypeError) as err:
        record.update({"status": "error", "error": f"{type(err).__name__}: {err}"})
    return record


def _provenance(model: nn.Module, dataset: ImageData, cfg: RunConfig, ctx: Dist,
                explainers: dict[str, Any], used_kwargs: dict[str, dict[str, Any]],
                layers: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    """Versions, settings, model, data and methods of the run, as JSON-ready data."""
    import torchvision

    seen_layers = {it["method"]: it.get("layer") for it in items if it.get("layer")}
    methods = {}
    for label, e in explainers.items():
        params = e.params() if hasattr(e, "params") else {}
        methods[label] = {
            "class": type(e).__name__,
            "params": jsonable({**used_kwargs.get(label, {}), **(params or {})}),
            "layer": seen_layers.get(label) or layers.get(label),
        }
    provenance: dict[str, Any] = jsonable({
        "xcam": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(cfg.device),
        "world_size": ctx.world,
        "seed": cfg.seed,
        "model": {"name": cfg.model_name or type(model).__name__, "class": type(model).__name__,
                  "parameters": sum(p.numel() for p in model.parameters()),
                  "fingerprint": model_fingerprint(model)},
        "preprocess": describe(cfg.preprocess),
        "image_size": list(cfg.size),
        "targets": cfg.targets,
        "data": dataset.describe(),
        "methods": methods,
        "metrics": cfg.metric_kwargs,
        "command": " ".join(sys.argv) if sys.argv and sys.argv[0] else None,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    })
    return provenance



@dataclasses.dataclass
class Plan:
    """The dry run of a comparison: what it costs, before it runs.

    Attributes:
        n_images: images in the data.
        rows: per method and metric: ``{"kind": "method" | "metric", "name", "forward_passes"}``,
            forward passes (images through the model) per image (a method's own; a metric's per
            image and method; a sample-only metric's per method, over ``sanity_images`` images).
        timed_images: images of the timed batch.
        seconds_per_image: seconds per image of the whole run's work (every method and metric):
            the timed batch's, or, where timing it would be long (``timed=False``), the forward
            passes per image times the timed clean forward pass of one image.
        estimated_seconds: ``seconds_per_image * n_images``.
        timed: the batch ran every method and metric (else the estimate counts forward passes:
            backward passes and the methods' and metrics' own arithmetic are left out, so the run
            takes longer).
        forward_seconds: the clean forward pass's seconds per image.
    """

    n_images: int
    rows: list[dict[str, Any]]
    timed_images: int
    seconds_per_image: float
    estimated_seconds: float
    timed: bool = True
    forward_seconds: float = float("nan")

    def __str__(self) -> str:
        """The plan as a plain-text table."""
        width = max([len(r["name"]) for r in self.rows] + [6])
        lines = [f"{'kind':<7} {'name':<{width}} forward passes per image"]
        for r in self.rows:
            passes = "?" if r["forward_passes"] is None else f"{r['forward_passes']:g}"
            lines.append(f"{r['kind']:<7} {r['name']:<{width}} {passes}{r.get('note', '')}")
        if self.timed:
            how = (f"one batch of {self.timed_images} took {self.seconds_per_image:.3f} s per "
                   "image")
        else:
            how = (f"{passes_per_image(self.rows, self.n_images):,.0f} forward passes per image x "
                   f"{self.forward_seconds:.4f} s per pass (timed on {self.timed_images} images; "
                   "backward passes and the methods' own work not counted, so a lower bound)")
        lines.append(f"{self.n_images} images; {how}: estimated "
                     f"{format_seconds(self.estimated_seconds)} for the run (one process)")
        return "\n".join(lines)


def passes_per_image(rows: list[dict[str, Any]], n_images: int) -> float:
    """Forward passes per image of the whole run, from :func:`cost_rows` (unknown counts as 1).

    A metric row counts once per method; a sample-only metric's passes are spread over the images.
    """
    methods = [r for r in rows if r["kind"] == "method"]
    total = float(sum(1 if r["forward_passes"] is None else r["forward_passes"] for r in methods))
    for r in rows:
        if r["kind"] != "metric" or r["forward_passes"] is None:
            continue
        share = r["forward_passes"] / max(n_images, 1) if "images" in r.get("note", "") \
            else r["forward_passes"]
        total += share * len(methods)
    return total


def cost_rows(explainers: dict[str, Any], cfg: RunConfig,
              model: nn.Module | None = None) -> list[dict[str, Any]]:
    """Forward passes per image of every method and metric (from ``forward_passes`` / metadata).

    ``model`` goes to the metrics that count its layers (the sanity checks, MPRT).
    """
    rows: list[dict[str, Any]] = []
    for label, e in explainers.items():
        passes = e.forward_passes(1) if hasattr(e, "forward_passes") else None
        rows.append({"kind": "method", "name": label, "forward_passes": passes})
    for name in cfg.metrics:
        metric = metric_of(name)
        settings = {k: v for k, v in cfg.metric_kwargs.get(name, {}).items() if k in metric.parameters}
        if model is not None and "model" in metric.parameters:
            settings["model"] = model
        if metric.sample_only:
            note = f" x {cfg.sanity_images} images, once per method"
            rows.append({"kind": "metric", "name": name, "note": note,
                         "forward_passes": metric.forward_passes(cfg.sanity_images, **settings)})
        else:
            rows.append({"kind": "metric", "name": name, "note": " per method",
                         "forward_passes": metric.forward_passes(1, **settings)})
    return rows


TIMED_BATCH_SECONDS = 60.0
"""A dry run times a whole batch of every method and metric only when it should take less."""


def estimate(model: nn.Module, dataset: ImageData, cfg: RunConfig) -> Plan:
    """Cost rows and an estimated time from the first batch (nothing written).

    The batch's clean forward pass is timed first. If every method and metric on the batch should
    take under :data:`TIMED_BATCH_SECONDS` (forward passes times that pass), they run and are
    timed; otherwise the estimate is the forward passes times the timed pass.
    """
    model = model.to(cfg.device)
    cfg = dataclasses.replace(cfg, out=None, grid_images=0)
    explainers, _ = build_explainers(model, cfg)
    rows = cost_rows(explainers, cfg, model)
    passes = passes_per_image(rows, len(dataset))
    runner = BatchRunner(model, dataset, cfg, explainers)
    n_timed, timed, forward, per_image = 0, False, float("nan"), float("nan")
    try:
        first = list(range(min(cfg.batch_size, len(dataset))))
        for items in runner.loader([first] if first else []):
            start = time.perf_counter()
            images, _ = runner.prepare(items)
            n_timed = len(images)
            if not images:
                break
            forward = (time.perf_counter() - start) / n_timed
            timed = forward * passes * n_timed <= TIMED_BATCH_SECONDS
            if timed:
                start = time.perf_counter()
                runner.explain_shared(images, cfg.labels)
                per_image = forward + (time.perf_counter() - start) / n_timed
            else:
                per_image = forward * passes
    finally:
        runner.close()
    return Plan(len(dataset), rows, n_timed, per_image, per_image * len(dataset), timed, forward)
