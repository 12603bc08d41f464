"""Backbones from other libraries: ``torchvision:NAME`` (any torchvision classification model) and
``timm:NAME`` (any timm model), each without its classifier.

Named layers, read by forward hooks in one pass: a torchvision model's top-level children (``conv1``,
``layer1`` ... for a ResNet; ``features`` for VGG or EfficientNet; ``conv_proj`` and ``encoder`` for a ViT);
a timm model's feature modules (``feature_info``: ``act1``, ``layer1`` ... for a ResNet; ``blocks.0`` ...
for a ViT) and its final ``norm``. Then ``pool``, the model's own output without its classifier (the pooled
features; a ViT's class token). A feature map ``B x C x H x W`` is averaged over space; a token sequence
``B x T x D`` gives its class token under the layer's name and the mean of its patch tokens as
``NAME.mean`` (models without a class token: the mean only).

``weights``: a torchvision weights enum member (``IMAGENET1K_V1``) or a timm pretrained tag
(``augreg_in21k``), downloaded into the library's cache unless already there; ``weights_path``: a local file
of the model's own weights (classifier included, as the library saves them). Other options go to the
model's constructor and are checked by it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from selfsup.errors import ConfigError, SelfsupError, did_you_mean, unknown_name
from selfsup.models.backbones import Backbone

PREFIX = "torchvision:"
_HEADS = ("fc", "classifier", "heads", "head")  # torchvision's names for the classification layer(s)


def torchvision_names() -> list[str]:
    from torchvision import models

    return models.list_models(module=models)


def check_torchvision(name: str, options: dict) -> None:
    """The model exists, its weights name is one of its enum's, ``weights_path`` is a file, and the other
    options are accepted by its constructor (built on the meta device: no memory, no time)."""
    from torchvision import models

    names = torchvision_names()
    if name not in names:
        raise unknown_name("torchvision model", name, names)
    options = dict(options)
    weights, path = options.pop("weights", None), options.pop("weights_path", None)
    if weights is not None:
        members = [w.name for w in models.get_model_weights(name)]
        if weights not in members:
            raise ConfigError(
                f"torchvision:{name} has no weights '{weights}'.{did_you_mean(str(weights), members)} "
                f"Weights: {', '.join(members)}."
            )
    if path is not None and not Path(path).expanduser().is_file():
        raise ConfigError(f"torchvision:{name}: weights_path '{path}' is not a file")
    try:
        with torch.device("meta"):
            models.get_model(name, weights=None, **options)
    except TypeError as err:
        raise ConfigError(f"backbone 'torchvision:{name}': {err}") from None


def _remove_head(net: nn.Module, name: str) -> str:
    """Replace the classifier by ``nn.Identity``; return its attribute's name."""
    for attr in _HEADS:
        if isinstance(getattr(net, attr, None), nn.Module):
            setattr(net, attr, nn.Identity())
            return attr
    raise SelfsupError(
        f"torchvision:{name} has no classifier named {', '.join(_HEADS)}; it is not a classifier"
    )


def _reduce(x: torch.Tensor, prefix: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A layer's output as ``B x D``: feature maps averaged over space; token sequences as their class
    token with the mean of the ``prefix``-free tokens beside it (no class token: that mean alone)."""
    if x.dim() == 3:
        return (x[:, 0], x[:, prefix:].mean(dim=1)) if prefix else (x.mean(dim=1), None)
    return (x.mean(dim=tuple(range(2, x.dim()))) if x.dim() > 2 else x), None


class LibraryBackbone(Backbone):
    """A library's model ``net`` without its classifier; ``layers``: the submodules read by hooks, in the
    order they run; ``prefix``: its number of class/register tokens.

    ``library``, ``build`` and ``head`` say how the library alone rebuilds ``net`` (the export's card):
    ``torchvision.models.get_model(**build)`` then its ``head`` attribute set to ``nn.Identity()``, or
    ``timm.create_model(**build)``; ``net``'s state dict then loads strictly."""

    library: str
    build: dict
    head: str | None = None

    def __init__(self, net: nn.Module, sample_shape: tuple[int, ...], layers: list[str], prefix: int) -> None:
        nn.Module.__init__(self)
        self.net, self.sample_shape, self._exact_shape = net, tuple(sample_shape), False
        self._hooked, self._prefix = layers, prefix
        was_training = net.training
        net.eval()
        with torch.no_grad():  # one pass over a dummy batch finds the layers and their widths
            feats = self.forward_layers(torch.zeros(2, *sample_shape))
        net.train(was_training)
        self.layer_names = list(feats)
        self.layer_dims = {k: v.shape[1] for k, v in feats.items()}
        self.out_dim = self.layer_dims["pool"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.net(x)

    def resolve_layers(self, layers) -> list[str]:
        if layers is None:
            return list(self.layer_names)
        layers = [layers] if isinstance(layers, str) else list(layers)
        for layer in layers:
            if layer not in self.layer_names:
                raise unknown_name("layer", str(layer), self.layer_names)
        return list(dict.fromkeys(layers))

    def forward_layers(self, x: torch.Tensor, layers=None) -> dict[str, torch.Tensor]:
        """``{name: B x D}`` of the requested layers (``None``: all), read by hooks in one forward pass."""
        probing = not hasattr(self, "layer_names")
        wanted = None if probing else self.resolve_layers(layers)
        feats: dict[str, torch.Tensor] = {}

        def keep(name: str, out) -> None:  # reduced at once: a later in-place op may change ``out``
            if isinstance(out, torch.Tensor) and out.dim() >= 2:
                feats[name], mean = _reduce(out, self._prefix)
                if mean is not None:
                    feats[f"{name}.mean"] = mean

        hooks = [
            self.net.get_submodule(n).register_forward_hook(lambda _m, _i, out, n=n: keep(n, out))
            for n in self._hooked
            if probing or n in wanted or f"{n}.mean" in wanted
        ]
        try:
            feats["pool"] = self.forward(x)
        finally:
            for h in hooks:
                h.remove()
        return feats if probing else {k: feats[k] for k in wanted}


class TorchvisionBackbone(LibraryBackbone):
    """``torchvision:NAME``: a torchvision classification model without its classifier (module docstring)."""

    def __init__(
        self,
        sample_shape: tuple[int, ...],
        name: str,
        weights: str | None = None,
        weights_path: str | None = None,
        **model_options,
    ) -> None:
        from torchvision import models

        check_torchvision(name, {"weights": weights, "weights_path": weights_path, **model_options})
        if len(sample_shape) != 3 or sample_shape[0] != 3:
            raise ConfigError(
                f"torchvision:{name} takes RGB images, samples shaped (3, height, width); "
                f"got {tuple(sample_shape)}"
            )
        net = models.get_model(name, weights=weights, **model_options)
        if weights_path is not None:
            _load_file(net, Path(weights_path).expanduser(), f"torchvision:{name}")
        head = _remove_head(net, name)
        children = [n for n, m in net.named_children() if not isinstance(m, nn.Identity)]
        super().__init__(net, sample_shape, children, prefix=1 if hasattr(net, "class_token") else 0)
        self.library, self.build, self.head = "torchvision", {"name": name, **model_options}, head


def _load_file(net: nn.Module, path: Path, name: str) -> None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # weights_only refuses pickled code; anything else is not a state dict
        raise ConfigError(f"{name}: weights_path '{path}' is not a state dict: {err}") from None
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise ConfigError(f"{name}: weights_path '{path}' is for another architecture ({first})") from None


TIMM_PREFIX = "timm:"


def _timm():
    try:
        import timm
    except ImportError:
        raise ConfigError(
            "model.backbone=timm:... needs the timm package: pip install 'selfsup[timm]'"
        ) from None
    return timm


def check_timm(name: str, options: dict) -> None:
    """The model exists (did-you-mean from timm's list), ``weights_path`` is a file, and timm's constructor
    accepts the other options (built on the meta device)."""
    timm = _timm()
    base = name.split(".")[0]  # "vit_tiny_patch16_224.augreg_in21k": a model and a pretrained tag
    if not timm.is_model(base):
        raise unknown_name("timm model", base, timm.list_models())
    options = dict(options)
    options.pop("weights", None)
    path = options.pop("weights_path", None)
    if path is not None and not Path(path).expanduser().is_file():
        raise ConfigError(f"timm:{name}: weights_path '{path}' is not a file")
    try:
        with torch.device("meta"):
            timm.create_model(base, pretrained=False, num_classes=0, **options)
    except TypeError as err:
        raise ConfigError(f"backbone 'timm:{name}': {err}") from None


class TimmBackbone(LibraryBackbone):
    """``timm:NAME``: any timm model with ``num_classes=0`` (its pooled features), ``in_chans`` set to the
    samples' channels unless given (module docstring)."""

    def __init__(
        self,
        sample_shape: tuple[int, ...],
        name: str,
        weights: str | None = None,
        weights_path: str | None = None,
        **model_options,
    ) -> None:
        timm = _timm()
        check_timm(name, {"weights_path": weights_path, **model_options})
        if len(sample_shape) != 3:
            raise ConfigError(f"timm:{name} takes images, samples shaped (channels, height, width)")
        model_options.setdefault("in_chans", sample_shape[0])
        full = f"{name}.{weights}" if weights and "." not in name else name
        pretrained = bool(weights or weights_path or "." in name)
        overlay = {"file": str(Path(weights_path).expanduser())} if weights_path else None
        try:
            net = timm.create_model(
                full, pretrained=pretrained, pretrained_cfg_overlay=overlay, num_classes=0, **model_options
            )
        except RuntimeError as err:  # weights of another architecture, or not found
            first = str(err).splitlines()[0]
            raise ConfigError(f"timm:{full}: its weights do not load ({first})") from None
        layers = [info["module"] for info in getattr(net, "feature_info", [])]
        if isinstance(getattr(net, "norm", None), nn.Module) and not isinstance(net.norm, nn.Identity):
            layers.append("norm")
        super().__init__(net, sample_shape, layers, prefix=int(getattr(net, "num_prefix_tokens", 0)))
        self.library = "timm"
        self.build = {"model_name": name.split(".")[0], "num_classes": 0, **model_options}
