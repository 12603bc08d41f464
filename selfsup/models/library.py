"""Backbones from another library: ``torchvision:NAME`` is any torchvision classification model with its
classifier removed.

Its named layers are the model's top-level children (``conv1``, ``layer1`` ... for a ResNet; ``features``
for VGG or EfficientNet; ``conv_proj`` and ``encoder`` for a ViT), read by forward hooks in one pass, then
``pool``, the model's own output without its classifier (the pooled features; a ViT's class token). A feature
map ``B x C x H x W`` is averaged over space; a token sequence ``B x T x D`` (a ViT's encoder) gives its
class token (the layer's name) and the mean of its other tokens (``NAME.mean``).

``weights`` names a torchvision weights enum member (``IMAGENET1K_V1``; downloaded into
``$TORCH_HOME/hub/checkpoints`` unless already there); ``weights_path`` loads a local file of the model's
own state dict (classifier included, as torchvision saves it). Other options go to the model's constructor.
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

    if name not in torchvision_names():
        raise unknown_name("torchvision model", name, torchvision_names())
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


def _remove_head(net: nn.Module, name: str) -> None:
    for attr in _HEADS:
        if isinstance(getattr(net, attr, None), nn.Module):
            setattr(net, attr, nn.Identity())
            return
    raise SelfsupError(
        f"torchvision:{name} has no classifier named {', '.join(_HEADS)}; it is not a classifier"
    )


def _reduce(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A layer's output as ``B x D``: feature maps averaged over space; token sequences as their first
    (class) token, with the mean of the other tokens beside it."""
    if x.dim() == 3:
        return x[:, 0], x[:, 1:].mean(dim=1)
    return (x.mean(dim=tuple(range(2, x.dim()))) if x.dim() > 2 else x), None


class TorchvisionBackbone(Backbone):
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
            _load_file(net, Path(weights_path).expanduser(), name)
        _remove_head(net, name)
        nn.Module.__init__(self)
        self.net, self.sample_shape, self._exact_shape = net, tuple(sample_shape), False
        self._children = [n for n, _ in net.named_children() if not isinstance(getattr(net, n), nn.Identity)]
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
                feats[name], mean = _reduce(out)
                if mean is not None:
                    feats[f"{name}.mean"] = mean

        hooks = [
            getattr(self.net, n).register_forward_hook(lambda _m, _i, out, n=n: keep(n, out))
            for n in self._children
            if probing or n in wanted or f"{n}.mean" in wanted
        ]
        try:
            feats["pool"] = self.forward(x)
        finally:
            for h in hooks:
                h.remove()
        return feats if probing else {k: feats[k] for k in wanted}


def _load_file(net: nn.Module, path: Path, name: str) -> None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # weights_only refuses pickled code; anything else is not a state dict
        raise ConfigError(f"torchvision:{name}: weights_path '{path}' is not a state dict: {err}") from None
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise ConfigError(
            f"torchvision:{name}: weights_path '{path}' is for another architecture ({first})"
        ) from None
