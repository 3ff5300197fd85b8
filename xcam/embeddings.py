"""Embedding models: where the embedding is in a model output, and the image tower of two-tower models.

Used by :class:`xcam.targets.similarity`, which scores the cosine similarity of a model's image
embedding to a reference vector (a caption's text embedding, another image's embedding).

**The embedding in a model output** (:func:`embedding`), in this order:

1. ``output=`` of the explainer, when given (a callable ``f(model_output) -> (B, D) Tensor``);
2. a ``torch.Tensor``: as it is (a timm model built with ``num_classes=0``, open_clip's
   ``model.visual``);
3. the first tensor among the fields ``image_embeds`` (Hugging Face ``CLIPVisionModelWithProjection``,
   ``CLIPOutput``, and :class:`ImageTower`), ``image_features`` (open_clip with
   ``output_dict=True``) and ``pooler_output`` (Hugging Face ``BaseModelOutputWithPooling``:
   ``Dinov2Model``, ``CLIPVisionModel`` before its projection, ``get_image_features`` of
   transformers 5), read as attributes or mapping entries;
4. a tuple or list whose first element is a tensor: that element (open_clip's ``CLIP.forward``
   returns ``(image_features, text_features, logit_scale)``).

**Two-tower models** (:func:`image_model`): a model with a callable ``get_image_features``
(Hugging Face ``CLIPModel``, ``SiglipModel``, ``AlignModel``: their ``forward`` needs text as well)
or ``encode_image`` (open_clip's ``CLIP``, OpenAI's ``clip``) is explained through that method:
every explainer replaces such a model by an :class:`ImageTower`, whose ``forward(x)`` is
``{"image_embeds": model.get_image_features(x)}`` (or ``model.encode_image(x)``). Its submodules are
the model's own, under the same names, so layers are named as in the model
(``"vision_model.encoder.layers.1"``, ``"visual.transformer.resblocks.1"``) and the model itself is
never changed. Class targets on such a model raise :class:`~xcam.errors.OutputError` (an embedding
has no classes); use :class:`xcam.targets.similarity`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from .errors import OutputError
from .outputs import OutputFn

__all__ = ["EMBEDDING_FIELDS", "IMAGE_METHODS", "embedding", "image_model", "source_model", "ImageTower"]

#: fields that hold an image embedding in a model output, in the order they are tried
EMBEDDING_FIELDS = ("image_embeds", "image_features", "pooler_output")
#: methods of two-tower models that embed images alone, in the order they are tried
IMAGE_METHODS = ("get_image_features", "encode_image")


def _field(output: object, name: str) -> object:
    value = getattr(output, name, None)
    if value is None and isinstance(output, Mapping):
        value = output.get(name)
    return value


def embedding(output: object, output_fn: OutputFn | None = None) -> Tensor:
    """The image embedding in a model's ``output`` (see the module docstring for the rules).

    Args:
        output: whatever ``model(x)`` returned.
        output_fn: a user callable that replaces the rules; its result must be a tensor.

    Returns:
        The embedding tensor as found (its shape is checked by the caller), still connected to
        autograd.

    Raises:
        OutputError: no embedding tensor can be found, or ``output_fn`` did not return a tensor.
    """
    if output_fn is not None:
        result = output_fn(output)
        if not isinstance(result, Tensor):
            raise OutputError(
                f"output: the callable returned {type(result).__name__}, not a tensor; for a "
                "similarity target it must map the model's output to its (B, D) embedding"
            )
        return result
    if isinstance(output, Tensor):
        return output
    for name in EMBEDDING_FIELDS:
        value = _field(output, name)
        if isinstance(value, Tensor):
            return value
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    keys = f" with keys {list(output.keys())[:8]}" if isinstance(output, Mapping) else ""
    raise OutputError(
        f"similarity: the model returned {type(output).__name__}{keys}, and xcam finds no image "
        f"embedding in it (a tensor, a field {', '.join(EMBEDDING_FIELDS)}, or the first element "
        "of a tuple); pass output=lambda out: ... returning the (B, D) embedding"
    )


class ImageTower(nn.Module):
    """The image path of a two-tower model: ``forward(x) = {"image_embeds": model.<method>(x)}``.

    Holds the model's children under their own names (so layer names are the model's) and calls
    the model's ``method`` (``get_image_features`` or ``encode_image``); the output's embedding
    is read with :func:`embedding` (transformers 5 returns a ``BaseModelOutputWithPooling`` whose
    ``pooler_output`` is the projected embedding; transformers 4 and open_clip a tensor).

    Args:
        model: the two-tower model (left unchanged).
        method: the name of its image-embedding method.
    """

    def __init__(self, model: nn.Module, method: str) -> None:
        super().__init__()
        for name, child in model.named_children():
            self.add_module(name, child)
        object.__setattr__(self, "source", model)  # not a child: its own parameters stay its own
        self.method = method

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """``{"image_embeds": (B, D)}`` for images ``x`` (B, C, H, W)."""
        out: Any = getattr(self.source, self.method)(x)
        return {"image_embeds": embedding(out)}

    def extra_repr(self) -> str:
        """The wrapped model's class and method, for ``repr``."""
        return f"{type(self.source).__name__}.{self.method}"


def image_model(model: nn.Module) -> nn.Module:
    """``model``, or its :class:`ImageTower` when it is a two-tower model (see the module doc)."""
    if isinstance(model, ImageTower):
        return model
    for method in IMAGE_METHODS:
        if callable(getattr(model, method, None)):
            return ImageTower(model, method)
    return model


def source_model(model: nn.Module) -> nn.Module:
    """The model an :class:`ImageTower` wraps, or ``model`` itself (the inverse of :func:`image_model`)."""
    source = model.source if isinstance(model, ImageTower) else model
    assert isinstance(source, nn.Module)
    return source
