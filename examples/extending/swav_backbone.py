"""A backbone of your own, worked example: ResNet-50 pooled features, as FD_SwAV uses them
(Morozov et al. 2021: Frechet distance on self-supervised SwAV features ranks models closer to
people than Inception's ImageNet-class features). README, "Extending evalrun".

One module plus one yaml (``conf/experiment/fd_swav.yaml``): the metric config names this class
as ``feature_extractor: swav_backbone:ResNet50Features``. The weights are a torchvision
``resnet50`` state dict in a ``.safetensors`` file (or a ``.pth`` read with ``weights_only=True``);
for SwAV, convert the released ``swav_800ep_pretrain.pth.tar`` once where you trust it. Every number
computed on these features records the file's sha256 and the preprocessing below, and reference
features are cached under that identity.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evalrun.errors import ConfigError
from evalrun.metrics.features.base import FeatureExtractor

SIZE = 224
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class ResNet50Features(FeatureExtractor):
    name = "swav_resnet50"
    default_layer = "embedding"  # what fd, prdc, kid, ... use unless metrics.<m>.layer says otherwise

    # evalrun passes the metric's feature_extractor_path as ``path`` and the config key it came from as
    # ``key`` (for error messages); feature_extractor_options add any other keyword.
    def __init__(self, device: Any = "cpu", path: str | None = None, batch_size: int = 50,
                 key: str = "metrics.fd.feature_extractor_path") -> None:
        super().__init__(device, batch_size)
        import torch
        import torchvision

        from evalrun.hashing import file_sha256

        if path is None or not Path(str(path)).expanduser().is_file():
            raise ConfigError(f"{key}={path!r}: give a ResNet-50 state dict (.safetensors, or .pth with tensors only)")
        self.path = Path(str(path)).expanduser()
        if self.path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(self.path))
        else:  # never unpickle code from a weights file
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        model = torchvision.models.resnet50(weights=None)
        model.fc = torch.nn.Identity()  # the 2048-d average-pooled features
        missing, unexpected = model.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")},
                                                    strict=False)
        if missing or unexpected:
            raise ConfigError(f"{key}={path!r} is not a torchvision resnet50 state dict "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        self.model = model.to(self.device).eval()
        self.sha256 = file_sha256(self.path)

    @property
    def layers(self) -> dict[str, int]:
        return {"embedding": 2048}

    def preprocessing(self) -> dict[str, Any]:
        return {"input": "uint8", "resize": f"torch bicubic antialias=True to {SIZE}x{SIZE} on [0, 1], clamped",
                "normalise": f"ImageNet mean {MEAN} std {STD}"}

    def weights_identity(self) -> dict[str, Any]:
        return {"file": self.path.name, "sha256": self.sha256}

    def versions(self) -> dict[str, str]:
        import torchvision

        return {**super().versions(), "torchvision": torchvision.__version__}

    def _extract(self, images) -> dict[str, Any]:
        import torch
        import torch.nn.functional as F

        x = F.interpolate(images.float() / 255, size=(SIZE, SIZE), mode="bicubic", antialias=True).clamp(0, 1)
        mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
        return {"embedding": self.model((x - mean) / std)}
