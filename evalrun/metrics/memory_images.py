"""Images given in memory to a metric object (``Metric.add``): PIL images, uint8 arrays and tensors in either
channel layout, made RGB the way evalrun reads image files (``evalrun.images.to_rgb``)."""

from __future__ import annotations

from typing import Any


def rgb_array(image: Any) -> Any:
    """A PIL image, or a uint8 grayscale (H, W), (H, W, 1) or RGBA (H, W, 4) array, as an (H, W, 3) array, made
    RGB as image files are (``evalrun.images.to_rgb``); anything else as it is."""
    import numpy as np

    from evalrun.images import to_rgb

    if not hasattr(image, "convert"):
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and (image.ndim == 2 or (
                image.ndim == 3 and image.shape[-1] in (1, 4)))):
            return image
        from PIL import Image

        image = Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image)
    return np.asarray(to_rgb(image))


def chw_uint8(image: Any) -> Any:
    """One in-memory image as a uint8 (3, H, W) tensor, the way ``Metric.add`` reads a batch: a PIL image
    through ``to_rgb``, an array as (H, W, 3), a tensor as (3, H, W) where both axes could be channels.
    Anything else is passed on for the metric to refuse."""
    import numpy as np
    import torch

    image = rgb_array(image)
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3:
        image = torch.from_numpy(np.ascontiguousarray(image))
        return image.permute(2, 0, 1).contiguous() if image.shape[-1] == 3 else image
    if isinstance(image, torch.Tensor) and image.ndim == 3 and image.shape[0] != 3 and image.shape[-1] == 3:
        return image.permute(2, 0, 1).contiguous()
    return image
