"""Super-resolve images with a trained generator."""
import numpy as np
import torch

from utils import image_to_tensor, rgb_to_luma, tensor_to_image


def upscale_image(model, img, device="cpu", tile=None):
    """Super-resolve one image with ``model``.

    Args:
        model: a generator mapping ``(1,3,h,w)`` float RGB in [0,1] to ``(1,3,s*h,s*w)``
            (see models.py). It is moved to ``device`` and run in eval mode under
            ``torch.inference_mode()``; its train/eval mode is restored afterwards.
        img: uint8 ``(h,w)`` (gray) or ``(h,w,3)`` (RGB). A gray image is replicated to RGB for
            the model and the RGB output is converted back to one channel with the ITU-R 601 luma
            (exactly as PIL's ``convert('L')``).
        device: torch device for the computation.
        tile: must be None: the whole image is processed in one forward pass.

    Returns:
        uint8 ``(s*h, s*w, 3)``, or ``(s*h, s*w)`` for a gray input; the output is clamped to
        [0,1] and rounded.
    """
    if tile is not None:
        raise ValueError(f"upscale_image: tile={tile!r} is not supported here; "
                         "use tile=None (whole-image inference)")
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
        raise TypeError(f"upscale_image: needs a uint8 numpy image, got "
                        f"{type(img).__name__} {getattr(img, 'dtype', '')}")
    gray = img.ndim == 2
    if gray:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"upscale_image: needs an (h,w) or (h,w,3) image, got shape {img.shape}")

    was_training = model.training
    model.to(device).eval()
    try:
        with torch.inference_mode():
            sr = model(image_to_tensor(img).to(device))
    finally:
        model.train(was_training)
    h, w = img.shape[:2]
    scale = getattr(model, "scale", None)
    if sr.dim() != 4 or sr.shape[:2] != (1, 3) or (
            scale is not None and tuple(sr.shape[2:]) != (scale * h, scale * w)):
        raise ValueError(f"upscale_image: model output has shape {tuple(sr.shape)} for a "
                         f"{h}x{w} input (model scale {scale})")
    out = tensor_to_image(sr)
    return rgb_to_luma(out) if gray else out
