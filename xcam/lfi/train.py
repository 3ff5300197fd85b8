"""Training of :class:`~xcam.lfi.LFICAMNet`: from scratch, fine-tuning, or post-hoc (FIN only).

- ``"scratch"``: every parameter trains (authors' recipe: SGD lr 0.1, momentum 0.9, weight decay
  1e-4, lr x0.1 at 50 % and 75 % of the epochs). The backbone is trained as given: build it
  without pretrained weights.
- ``"finetune"``: every parameter trains, the backbone and head at ``backbone_lr_scale`` (default
  0.1) times the FIN's learning rate; start from a pretrained backbone.
- ``"posthoc"``: the backbone and its head are frozen (``requires_grad`` off, eval mode, so their
  BatchNorm running statistics do not move) and only the FIN learns. This explains an
  already-trained model with LFI-CAM, although its logits are those of ``head((1 + A) * F)``.

The loss is the cross-entropy on the logits only; the FIN learns through ``(1 + A)``.

Reproducibility: given ``seed``, training on the CPU is bit-for-bit reproducible, also across an
interruption and ``resume=True``: each epoch reseeds the data order (a ``torch.Generator``) and
the global RNG (dropout, augmentation) from ``(seed, epoch)`` inside :func:`torch.random.fork_rng`,
so the caller's RNG state is left as it was. Checkpoints are written atomically after every epoch
and read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from .._checks import did_you_mean, eval_mode
from ..errors import InputError, InputTypeError, XcamError
from .network import LFICAMNet, split_for

__all__ = [
    "fit",
    "evaluate",
    "History",
    "TrainingError",
    "MODES",
    "build_backbone",
    "load_checkpoint",
    "train_imagefolder",
]

Mode = Literal["scratch", "finetune", "posthoc"]
MODES = ("scratch", "finetune", "posthoc")
_DEFAULT_LR = {"scratch": 0.1, "finetune": 0.01, "posthoc": 0.05}
_SCHEDULES = ("step", "cosine", "constant")
_FORMAT = "xcam.lfi.fit/1"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TrainingError(XcamError, RuntimeError):
    """Training cannot go on (the loss became NaN or infinite)."""


@dataclass
class History:
    """Per-epoch record of a :func:`fit` run (plain lists, stored in checkpoints).

    ``val_loss`` and ``val_accuracy`` are empty when no validation data was given. Losses are
    mean cross-entropies; accuracies are fractions in [0, 1]; training values are measured on the
    fly, in train mode.
    """

    epoch: list[int] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[Any]]:
        """The history as a dict of lists (for JSON and checkpoints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, list[Any]]) -> History:
        """The history from :meth:`as_dict`."""
        return cls(**{k: list(v) for k, v in data.items()})

    def __len__(self) -> int:
        return len(self.epoch)


# -- helpers -----------------------------------------------------------------------------------
def _epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed for ``epoch`` of a run seeded with ``seed`` (splitmix64)."""
    z = (seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019 * (epoch + 1)) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) & 0x7FFFFFFFFFFFFFFF


def lr_factor(schedule: str, epoch: int, epochs: int, milestones: Sequence[float], gamma: float) -> float:
    """Multiplier of the base learning rate at ``epoch`` (0-based).

    ``"step"``: ``gamma ** #{m : epoch >= max(1, round(m * epochs))}`` (milestones are
    fractions of the run, rounded half up; (0.5, 0.75) of 300 epochs gives the authors' 150 and
    225; the first epoch always runs at the base rate). ``"cosine"``:
    ``(1 + cos(pi * epoch / epochs)) / 2``. ``"constant"``: 1.
    """
    if schedule == "step":
        return float(gamma ** sum(epoch >= max(1, math.floor(m * epochs + 0.5)) for m in milestones))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
    return 1.0


def _resolve_device(net: nn.Module, device: str | torch.device | None) -> torch.device:
    if device is None:
        param = next(net.parameters(), None)
        return param.device if param is not None else torch.device("cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise InputError(f"device must be a torch device such as 'cpu' or 'cuda:0', got {device!r}") from err


def _loader(
    data: object, name: str, batch_size: int, shuffle: bool, generator: torch.Generator | None,
    num_workers: int, device: torch.device,
) -> DataLoader[Any]:
    """A DataLoader over ``data``.

    A DataLoader as it is, else any map-style dataset (a torch ``Dataset``, or any object with
    ``__getitem__`` and ``__len__``, a list of ``(image, label)`` pairs included), as
    ``DataLoader`` itself takes them.
    """
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, Tensor):
        raise InputTypeError(
            f"{name} is a tensor of shape {tuple(data.shape)}, which holds no labels; pass "
            "torch.utils.data.TensorDataset(images, labels) or a list of (image, label) pairs"
        )
    if isinstance(data, (str, bytes, dict)) or not (
            isinstance(data, Dataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__"))):
        raise InputTypeError(
            f"{name} must be a map-style dataset yielding (image, label) or (image, label, mask) "
            f"(a torch Dataset, a list of (image, label) pairs, ...) or a DataLoader; got "
            f"{type(data).__name__}"
        )
    if not isinstance(data, Dataset):
        _check_first_item(data, name)
    return DataLoader(
        cast("Dataset[Any]", data), batch_size=batch_size, shuffle=shuffle, generator=generator,
        num_workers=num_workers, pin_memory=device.type == "cuda",
    )


def _check_first_item(data: Any, name: str) -> None:
    """A plain sequence's first item is an ``(image, label)`` pair with a (C, H, W) image."""
    if len(data) == 0:
        raise InputError(f"{name} is empty; pass at least one (image, label) pair")
    item = data[0]
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        raise InputError(
            f"{name}[0] must be an (image, label) pair (or (image, label, mask)), got "
            f"{type(item).__name__}; build the list as [(image, label), ...]"
        )
    image = item[0]
    if not isinstance(image, Tensor) or image.dim() != 3:
        got = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise InputError(
            f"{name}[0]: the image must be a (C, H, W) tensor (the loader stacks them into "
            f"batches), got {got}; convert with torchvision.transforms.functional.to_tensor"
        )


def _batch(batch: object, device: torch.device) -> tuple[Tensor, Tensor]:
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        got = f"a {type(batch).__name__}"
        if isinstance(batch, (tuple, list)):
            got += f" of length {len(batch)}"
        raise InputError(f"each batch must be (images, labels) or (images, labels, masks); got {got}")
    images, labels = batch[0], batch[1]
    if not isinstance(images, Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise InputError(f"batch images must be a (B, C, H, W) tensor, got {shape}")
    labels = torch.as_tensor(labels)
    if labels.dtype.is_floating_point or labels.dim() != 1:
        raise InputError(
            f"batch labels must be a 1-D integer tensor of class indices, got dtype {labels.dtype} "
            f"and shape {tuple(labels.shape)}"
        )
    nb = device.type == "cuda"
    return images.to(device, non_blocking=nb), labels.to(device, dtype=torch.long, non_blocking=nb)


def _check_positive(name: str, value: object, kind: type = float, allow_zero: bool = False) -> None:
    ok_type = isinstance(value, (int, float)) if kind is float else isinstance(value, int)
    if not ok_type or isinstance(value, bool):
        raise InputTypeError(f"{name} must be a {'number' if kind is float else 'int'}, got {value!r}")
    value = cast(float, value)
    if value < 0 or (value == 0 and not allow_zero) or (kind is float and not math.isfinite(value)):
        raise InputError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def _save_atomic(payload: dict[str, Any], path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def evaluate(
    net: LFICAMNet, data: Dataset[Any] | Sequence[Any] | DataLoader[Any], batch_size: int = 128,
    device: str | torch.device | None = None, num_workers: int = 0,
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``net`` on ``data``, in eval mode without gradients.

    The ``training`` flags of ``net`` are restored afterwards.
    """
    if not isinstance(net, LFICAMNet):
        raise InputTypeError(f"net must be an LFICAMNet, got {type(net).__name__}")
    dev = _resolve_device(net, device)
    loader = _loader(data, "data", batch_size, False, None, num_workers, dev)
    total, loss_sum, correct = 0, 0.0, 0
    with eval_mode(net), torch.no_grad():
        for batch in loader:
            images, labels = _batch(batch, dev)
            logits = cast(Tensor, net(images))
            loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
            correct += int((logits.argmax(1) == labels).sum())
            total += labels.shape[0]
    if total == 0:
        raise InputError("evaluate: the data is empty")
    return loss_sum / total, correct / total


# -- training ----------------------------------------------------------------------------------
def fit(
    net: LFICAMNet,
    train_data: Dataset[Any] | Sequence[Any] | DataLoader[Any],
    mode: Mode = "scratch",
    *,
    epochs: int = 10,
    lr: float | None = None,
    batch_size: int = 64,
    seed: int = 0,
    val_data: Dataset[Any] | Sequence[Any] | DataLoader[Any] | None = None,
    schedule: Literal["step", "cosine", "constant"] = "step",
    milestones: Sequence[float] = (0.5, 0.75),
    gamma: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    backbone_lr_scale: float | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    progress: bool = True,
    callback: Callable[[int, History], None] | None = None,
) -> History:
    """Train an :class:`LFICAMNet` with SGD on the cross-entropy of its logits.

    Args:
        net: the network; moved to ``device`` and trained in place.
        train_data: any map-style dataset yielding ``(image, label)`` or
            ``(image, label, mask)`` (masks are ignored): a torch ``Dataset``, a list of
            ``(image, label)`` pairs, anything with ``__getitem__`` and ``__len__``, as
            ``DataLoader`` takes them; or a ready DataLoader (then ``batch_size`` and the seeded
            data order do not apply; a shuffling DataLoader without its own generator still
            follows ``seed``).
        mode: ``"scratch"``, ``"finetune"`` or ``"posthoc"`` (see the module docstring).
        epochs: number of epochs of the whole run (a resumed run continues up to it).
        lr: base learning rate of the FIN; ``None``: 0.1 (scratch, the authors'), 0.01
            (finetune), 0.05 (posthoc).
        batch_size: images per step.
        seed: seeds the data order and the global RNG, per epoch (see the module docstring).
        val_data: optional validation data, evaluated after each epoch in eval mode.
        schedule: ``"step"`` (x ``gamma`` at each of ``milestones``, fractions of ``epochs``),
            ``"cosine"`` or ``"constant"``; the learning rate changes once per epoch.
        milestones: fractions of ``epochs`` where the step schedule multiplies by ``gamma``.
        gamma: the step schedule's factor.
        momentum: SGD momentum (authors: 0.9).
        weight_decay: SGD weight decay (authors: 1e-4).
        backbone_lr_scale: learning rate of the backbone and head relative to ``lr``; ``None``:
            1 for scratch, 0.1 for finetune (ignored in posthoc mode, where they are frozen).
        checkpoint: file written after every epoch (model, optimizer, history, settings).
        resume: continue from ``checkpoint`` when it exists (the settings must match); when it
            does not exist, start from the beginning. Without ``resume`` an existing checkpoint
            is an error, never silently overwritten.
        device: where to train; ``None``: where ``net`` is.
        num_workers: DataLoader worker processes.
        progress: show tqdm progress bars.
        callback: ``callback(epoch, history)`` after every epoch (1-based epoch), after the
            checkpoint is written; an exception it raises stops training.

    Returns:
        The :class:`History` of every epoch, including the epochs of a resumed run.

    Raises:
        TrainingError: the loss became NaN or infinite.
    """
    from tqdm.auto import tqdm

    lr, scale, milestones, path = _check_fit_args(
        net, mode, schedule, epochs, batch_size, num_workers, seed, lr, gamma, momentum,
        weight_decay, backbone_lr_scale, milestones, checkpoint, resume)
    dev = _resolve_device(net, device)
    net.to(dev)
    gen = torch.Generator()
    train_loader = _loader(train_data, "train_data", batch_size, True, gen, num_workers, dev)
    val_loader = None if val_data is None else _loader(
        val_data, "val_data", batch_size, False, None, num_workers, dev)
    posthoc = mode == "posthoc"
    optimizer = _optimizer(net, posthoc, lr, scale, momentum, weight_decay)
    config: dict[str, Any] = {
        "mode": mode, "epochs": epochs, "lr": float(lr), "batch_size": batch_size, "seed": seed,
        "schedule": schedule, "milestones": milestones, "gamma": float(gamma),
        "momentum": float(momentum), "weight_decay": float(weight_decay),
        "backbone_lr_scale": float(scale),
    }
    history, start = History(), 0
    if path is not None and resume and os.path.exists(path):
        history, start = _resume(path, dev, config, net, optimizer)

    cuda = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    bar = tqdm(range(start, epochs), desc="LFI-CAM " + mode, disable=not progress, unit="epoch",
               initial=start, total=epochs)
    try:
        with _training_flags(net, posthoc), torch.random.fork_rng(devices=cuda):
            for epoch in bar:
                t0 = time.perf_counter()
                factor = lr_factor(schedule, epoch, epochs, milestones, gamma)
                for g in optimizer.param_groups:
                    g["lr"] = g["base_lr"] * factor
                epoch_seed = _epoch_seed(seed, epoch)
                torch.manual_seed(epoch_seed)
                gen.manual_seed(epoch_seed)
                net.train()
                if posthoc:
                    net.backbone.eval()  # frozen: BN running statistics and dropout stay as they are
                loss, accuracy = _train_epoch(net, train_loader, optimizer, dev,
                                              f"epoch {epoch + 1}/{epochs}", progress, epoch)
                _record_epoch(history, epoch, optimizer, loss, accuracy, net, val_loader, dev, t0)
                bar.set_postfix(_postfix(history, val_loader is not None), refresh=False)
                if path is not None:
                    _save_atomic({
                        "format": _FORMAT, "epoch": epoch + 1, "config": config, "net": net.config(),
                        "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                        "history": history.as_dict(),
                    }, path)
                if callback is not None:
                    callback(epoch + 1, history)
    finally:
        bar.close()
    return history


def _check_fit_args(
    net: object, mode: object, schedule: object, epochs: object, batch_size: object,
    num_workers: object, seed: object, lr: float | None, gamma: float, momentum: float,
    weight_decay: float, backbone_lr_scale: float | None, milestones: Sequence[float],
    checkpoint: str | os.PathLike[str] | None, resume: bool,
) -> tuple[float, float, list[float], str | None]:
    """Check :func:`fit`'s arguments; ``(lr, backbone_lr_scale, milestones, checkpoint path)``."""
    if not isinstance(net, LFICAMNet):
        raise InputTypeError(
            f"net must be an xcam.lfi.LFICAMNet, got {type(net).__name__}; wrap the classifier first: "
            "net = LFICAMNet(backbone)"
        )
    if mode not in MODES:
        hint = did_you_mean(mode, MODES)
        raise InputError(f"mode must be one of {MODES}, got {mode!r}{hint}")
    if schedule not in _SCHEDULES:
        raise InputError(f"schedule must be one of {_SCHEDULES}, got {schedule!r}")
    _check_positive("epochs", epochs, int)
    _check_positive("batch_size", batch_size, int)
    _check_positive("num_workers", num_workers, int, allow_zero=True)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise InputTypeError(f"seed must be an int, got {seed!r}")
    lr = _DEFAULT_LR[cast(Mode, mode)] if lr is None else lr
    _check_positive("lr", lr)
    _check_positive("gamma", gamma)
    _check_positive("momentum", momentum, allow_zero=True)
    _check_positive("weight_decay", weight_decay, allow_zero=True)
    scale = (0.1 if mode == "finetune" else 1.0) if backbone_lr_scale is None else backbone_lr_scale
    _check_positive("backbone_lr_scale", scale, allow_zero=True)
    fractions = [float(m) for m in milestones]
    if any(not 0 < m < 1 for m in fractions):
        raise InputError(
            f"milestones are fractions of the run in (0, 1), e.g. (0.5, 0.75); got {fractions}"
        )
    path = None if checkpoint is None else os.fspath(checkpoint)
    if resume and path is None:
        raise InputError("resume=True needs checkpoint= (the file to resume from)")
    if path is not None and os.path.exists(path) and not resume:
        raise InputError(
            f"checkpoint {path!r} already exists; pass resume=True to continue it, or choose "
            "another path (xcam never overwrites a checkpoint it did not start)"
        )
    return lr, scale, fractions, path


def _optimizer(net: LFICAMNet, posthoc: bool, lr: float, scale: float, momentum: float,
               weight_decay: float) -> torch.optim.SGD:
    """SGD over the FIN (``base_lr`` = ``lr``) and, unless post hoc, the backbone (``lr * scale``)."""
    groups: list[dict[str, Any]] = [{"params": list(net.fin.parameters()), "base_lr": lr, "name": "fin"}]
    if not posthoc:
        groups.append({"params": net.backbone_parameters(), "base_lr": lr * scale, "name": "backbone"})
    for g in groups:
        g["lr"] = g["base_lr"]
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)


def _resume(path: str, dev: torch.device, config: dict[str, Any], net: LFICAMNet,
            optimizer: torch.optim.Optimizer) -> tuple[History, int]:
    """Load a :func:`fit` checkpoint written with the same settings; ``(history, next epoch)``."""
    state = torch.load(path, map_location=dev, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise InputError(f"checkpoint {path!r} was not written by xcam.lfi.fit; choose another path")
    diff = {k: (state["config"].get(k), v) for k, v in config.items() if state["config"].get(k) != v}
    if diff:
        listed = ", ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in diff.items())
        raise InputError(
            f"checkpoint {path!r} was written with other settings ({listed}); pass the same "
            "settings to resume, or a new checkpoint path to start over"
        )
    net_diff = {k: v for k, v in net.config().items()
                if k in ("family", "channels", "depth", "width", "relu") and state["net"].get(k) != v}
    if net_diff:
        raise InputError(
            f"checkpoint {path!r} holds another network (this one has {net_diff}, the checkpoint "
            f"{ {k: state['net'].get(k) for k in net_diff} }); build the same LFICAMNet to resume"
        )
    net.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return History.from_dict(state["history"]), int(state["epoch"])


@contextmanager
def _training_flags(net: LFICAMNet, posthoc: bool) -> Iterator[None]:
    """Freeze the backbone (post hoc) and unfreeze the FIN inside the block.

    Every parameter's ``requires_grad`` and every module's ``training`` flag are restored on exit.
    """
    requires = {p: p.requires_grad for p in net.parameters()}
    flags = {m: m.training for m in net.modules()}
    try:
        for p in net.backbone_parameters() if posthoc else []:
            p.requires_grad_(False)
        for p in net.fin.parameters():
            p.requires_grad_(True)
        yield
    finally:
        for p, flag in requires.items():
            p.requires_grad_(flag)
        for m, flag in flags.items():
            m.training = flag


def _train_epoch(net: LFICAMNet, loader: DataLoader[Any], optimizer: torch.optim.Optimizer,
                 dev: torch.device, desc: str, progress: bool, epoch: int) -> tuple[float, float]:
    """One pass over ``loader``: SGD steps on the cross-entropy; ``(mean loss, accuracy)``."""
    from tqdm.auto import tqdm

    total, loss_sum, correct = 0, 0.0, 0
    steps = tqdm(loader, desc=desc, leave=False, disable=not progress, unit="batch")
    for step, batch in enumerate(steps):
        images, labels = _batch(batch, dev)
        logits = cast(Tensor, net(images))
        loss = F.cross_entropy(logits, labels)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"the loss became {float(loss)} at epoch {epoch + 1}, step {step + 1} "
                f"(lr {optimizer.param_groups[0]['lr']:g}); lower lr= and start again"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        n = labels.shape[0]
        total += n
        loss_sum += float(loss.detach()) * n
        correct += int((logits.detach().argmax(1) == labels).sum())
        steps.set_postfix(loss=f"{loss_sum / total:.4f}", refresh=False)
    if total == 0:
        raise InputError("train_data is empty")
    return loss_sum / total, correct / total


def _record_epoch(history: History, epoch: int, optimizer: torch.optim.Optimizer, loss: float,
                  accuracy: float, net: LFICAMNet, val_loader: DataLoader[Any] | None,
                  dev: torch.device, t0: float) -> None:
    """Append the epoch's numbers (and the validation ones) to ``history``."""
    history.epoch.append(epoch + 1)
    history.lr.append(float(optimizer.param_groups[0]["lr"]))
    history.train_loss.append(loss)
    history.train_accuracy.append(accuracy)
    if val_loader is not None:
        val_loss, val_acc = evaluate(net, val_loader, device=dev)
        history.val_loss.append(val_loss)
        history.val_accuracy.append(val_acc)
    history.seconds.append(time.perf_counter() - t0)


def _postfix(history: History, validated: bool) -> dict[str, str]:
    """The progress bar's summary of the last epoch."""
    post = {"loss": f"{history.train_loss[-1]:.4f}", "acc": f"{history.train_accuracy[-1]:.3f}"}
    if validated:
        post["val_acc"] = f"{history.val_accuracy[-1]:.3f}"
    return post


# -- building, loading, and training on an ImageFolder -----------------------------------------
def _replace_last_linear(model: nn.Module, num_classes: int) -> bool:
    """Give the model's final Linear ``num_classes`` outputs; True when it had to be replaced."""
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise InputError(f"{type(model).__name__} has no nn.Linear classifier to resize")
    name, linear = linears[-1]
    if linear.out_features == num_classes:
        return False
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    new = nn.Linear(linear.in_features, num_classes, bias=linear.bias is not None)
    setattr(parent, name.rpartition(".")[2], new.to(linear.weight.device))
    return True


def build_backbone(arch: str, num_classes: int, weights: str | os.PathLike[str] | None = None) -> nn.Module:
    """A torchvision classifier of a family :class:`LFICAMNet` supports.

    Args:
        arch: a torchvision model name (``"resnet50"``, ``"efficientnet_b0"``, ...).
        num_classes: outputs of the head.
        weights: ``None`` (random initialization), a torchvision weights name (``"DEFAULT"``,
            ``"IMAGENET1K_V1"``; downloaded by torchvision; the final Linear is replaced by a new
            one when ``num_classes`` differs), or the path of a state dict saved from the same
            architecture with ``num_classes`` outputs, or of a :func:`fit` checkpoint (its
            backbone is used), read with ``weights_only=True``.
    """
    return _build_backbone(arch, num_classes, weights)[0]


def _build_backbone(
    arch: str, num_classes: int, weights: str | os.PathLike[str] | None
) -> tuple[nn.Module, bool]:
    """:func:`build_backbone`, and whether the pretrained head had to be replaced."""
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    if arch not in names:
        hint = did_you_mean(arch, names)
        raise InputError(
            f"arch {arch!r} is not a torchvision classification model{hint} "
            "(see torchvision.models.list_models(module=torchvision.models))"
        )
    _check_positive("num_classes", num_classes, int)
    replaced = False
    if weights is None:
        model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    elif os.path.exists(os.fspath(weights)):
        model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
        state = torch.load(os.fspath(weights), map_location="cpu", weights_only=True)
        if isinstance(state, dict) and state.get("format") == _FORMAT:
            state = {k[len("backbone."):]: v for k, v in state["model"].items() if k.startswith("backbone.")}
        model.load_state_dict(state)
    else:
        enum = torchvision.models.get_model_weights(arch)
        try:
            chosen = enum.verify(str(weights))
        except (KeyError, ValueError) as err:
            names = ["DEFAULT", *(w.name for w in enum)]
            raise InputError(
                f"weights {str(weights)!r} is neither an existing file nor torchvision weights of "
                f"{arch}; use one of {names} or the path of a state dict"
            ) from err
        model = torchvision.models.get_model(arch, weights=chosen)  # downloads once, then cached
        replaced = _replace_last_linear(model, num_classes)
    split_for(model)  # fail early on a family LFICAMNet does not know
    return cast(nn.Module, model), replaced


def load_checkpoint(
    path: str | os.PathLike[str], backbone: nn.Module | None = None,
    map_location: str | torch.device = "cpu",
) -> LFICAMNet:
    """Rebuild the :class:`LFICAMNet` saved by :func:`fit` in ``path`` (``weights_only=True``).

    Args:
        path: a checkpoint written by :func:`fit`.
        backbone: an untrained backbone of the same architecture; ``None`` rebuilds it from the
            torchvision name stored in the checkpoint (networks made by :func:`train_imagefolder`).
        map_location: device for the weights.
    """
    state = torch.load(os.fspath(path), map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise InputError(f"{os.fspath(path)!r} is not a checkpoint written by xcam.lfi.fit")
    meta = state["net"]
    if backbone is None:
        if not meta.get("arch") or not meta.get("num_classes"):
            raise InputError(
                f"checkpoint {os.fspath(path)!r} does not record the torchvision architecture; pass "
                "backbone= (an untrained instance of the architecture that was trained)"
            )
        backbone = build_backbone(meta["arch"], int(meta["num_classes"]))
    net = LFICAMNet(backbone, depth=meta["depth"], width=meta["width"], relu=meta["relu"])
    net.load_state_dict(state["model"])
    net.arch, net.classes = meta.get("arch"), meta.get("classes")
    return net.to(map_location).eval()


def train_imagefolder(
    root: str | os.PathLike[str],
    *,
    arch: str = "resnet18",
    mode: Mode = "scratch",
    weights: str | os.PathLike[str] | None = None,
    val_root: str | os.PathLike[str] | None = None,
    image_size: int = 224,
    augment: bool = True,
    depth: int = 4,
    width: int | None = None,
    epochs: int = 30,
    lr: float | None = None,
    batch_size: int = 64,
    seed: int = 0,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    progress: bool = True,
    **fit_kwargs: Any,
) -> tuple[LFICAMNet, History]:
    """Build an LFI-CAM network on a torchvision architecture and train it on an ``ImageFolder``.

    The function behind ``xcam lfi train``. Images are resized to ``image_size`` (with random
    resized crops and horizontal flips when ``augment``) and normalized with the ImageNet mean and
    standard deviation.

    Args:
        root: ``ImageFolder`` root (one sub-folder per class).
        arch: torchvision model name.
        mode: ``"scratch"`` (random backbone), ``"finetune"`` (needs ``weights``) or
            ``"posthoc"`` (needs ``weights`` of a model already trained on these classes).
        weights: see :func:`build_backbone`.
        val_root: optional validation ``ImageFolder`` with the same classes.
        image_size: side of the square images the network sees.
        augment: random resized crops and horizontal flips for training.
        depth: FIN depth (see :class:`LFICAMNet`).
        width: FIN hidden width (see :class:`LFICAMNet`).
        epochs: passes over the training data.
        lr: see :func:`fit`.
        batch_size: images per step.
        seed: seeds the backbone and FIN initialization and the training (see :func:`fit`).
        checkpoint: see :func:`fit`.
        resume: see :func:`fit`.
        device: see :func:`fit`.
        num_workers: see :func:`fit`.
        progress: see :func:`fit`.
        fit_kwargs: passed on to :func:`fit` (``schedule``, ``milestones``, ``weight_decay``, ...).

    Returns:
        The trained network (``net.arch`` and ``net.classes`` set, so :func:`load_checkpoint`
        can rebuild it) and the history.
    """
    from torchvision import datasets
    from torchvision import transforms as T

    if mode not in MODES:
        raise InputError(f"mode must be one of {MODES}, got {mode!r}")
    if mode != "scratch" and weights is None:
        raise InputError(
            f"mode={mode!r} starts from trained weights: pass weights='DEFAULT' (torchvision's "
            "pretrained weights) or the path of a state dict; or use mode='scratch'"
        )
    _check_positive("image_size", image_size, int)
    normalize = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    if augment:
        train_tf = T.Compose([T.RandomResizedCrop(image_size, scale=(0.5, 1.0)), T.RandomHorizontalFlip(),
                              T.ToTensor(), normalize])
    else:
        train_tf = T.Compose([T.Resize((image_size, image_size)), T.ToTensor(), normalize])
    eval_tf = T.Compose([T.Resize((image_size, image_size)), T.ToTensor(), normalize])
    train_set = datasets.ImageFolder(os.fspath(root), transform=train_tf)
    val_set = None
    if val_root is not None:
        val_set = datasets.ImageFolder(os.fspath(val_root), transform=eval_tf)
        if val_set.classes != train_set.classes:
            raise InputError(
                f"val_root has classes {val_set.classes}, train root has {train_set.classes}; "
                "they must be the same folders"
            )
    num_classes = len(train_set.classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone, replaced = _build_backbone(arch, num_classes, weights)
        if mode == "posthoc" and replaced:
            raise InputError(
                f"mode='posthoc' explains a model already trained on these {num_classes} classes, "
                f"but weights={weights!r} has another number of classes (its head would be new and "
                "frozen); pass the path of the trained model's state dict"
            )
        net = LFICAMNet(backbone, depth=depth, width=width, seed=seed)
    net.arch, net.classes = arch, list(train_set.classes)
    history = fit(
        net, train_set, mode, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, val_data=val_set,
        checkpoint=checkpoint, resume=resume, device=device, num_workers=num_workers,
        progress=progress, **fit_kwargs,
    )
    return net, history
