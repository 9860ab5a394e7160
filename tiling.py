"""Running a generator on an image of any size: whole, padded to the receptive field, or in
overlapping tiles, exactly.

Concerns held here:

* The receptive field of a generator (:func:`receptive_field`, :func:`receptive_margin`,
  :func:`tile_alignment`): one run of a small zero image with hooks on every conv and transposed
  conv gives the radius (LR pixels) an output pixel reads, and the LR step a tile must start on;
  an ONNX generator (``onnx_model.OnnxGenerator``) gives the values stored at export.
* The tile grid (:func:`tile_grid`): ``(y0, y1, x0, x1)`` LR tiles covering an image.
* Inference (:func:`upscale_image`): a uint8 ``(h,w)`` / ``(h,w,3)`` image -> uint8
  ``(s*h,s*w)`` / ``(s*h,s*w,3)``, whole, edge-padded when a side is below
  :data:`MIN_INPUT_SIDE`, or tile by tile into a uint8 canvas on the CPU; the model input is fed
  in channels_last memory format.
* The check of every model output (shape ``(1,3,s*h,s*w)``, finite values): a NaN/inf output is
  :class:`NonFiniteOutputError`, never an image.

Exactness of the tiles: each LR tile is run with a margin of ``overlap`` LR pixels of real
neighbouring context on every side (its start rounded down to the model's
:func:`tile_alignment`), and only its centre is kept. With ``overlap`` >= the model's
receptive-field radius (:func:`receptive_margin`, the default) every kept output pixel sees
exactly the input it would see in a whole-image pass, so the tiled result equals the untiled one
up to float rounding (tests: at most 1 gray level). A smaller overlap gives seams (a warning
here; ``super_resolve.py`` refuses it). Only one tile is on the device at a time, so memory is
bounded for any image size.

Used by ``super_resolve.py`` (the command line) and ``evaluate.py`` (evaluation and training's
validation).
"""
import math
import warnings

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from utils import image_to_tensor, rgb_to_luma, tensor_to_image

RESAMPLE_MARGIN = 2
"""LR pixels added to the convolutional receptive field for the bicubic upsampling inside
SRCNN/VDSR (the x4 bicubic kernel reads 2 LR pixels on each side) and as a safety margin."""

PROBE_SIZE = 16
"""Side of the zero image run once through the model to find the resolution of every conv."""

MIN_INPUT_SIDE = 8
"""Smallest LR side (pixels) that the model sees. In a smaller image every pixel lies within a
few 3x3 convolutions of the zero-padded border, so the output is mostly border effect: a 1x1
orange (200,120,40) came out near-black (8,8,11) from a trained SRResNet without the bicubic
skip, 2x2 as (93,68,61); from 8x8 up the mean colour is within ~1-10 levels of the input's.
A smaller image is therefore edge-padded (its border pixels repeated) by the model's whole
receptive-field radius (:func:`receptive_margin`) on every side, so that no output pixel sees
the zero padding, run, and the output's centre (its own ``scale*h x scale*w`` pixels) is
kept."""


class NonFiniteOutputError(ValueError):
    """The model produced NaN or inf pixels: there is no image (nor a score) to give."""


def _layer_reach(module):
    """How far one output pixel of a conv or transposed conv reaches into its input, in that
    input's pixels: a conv of kernel ``k``, dilation ``d``, padding ``p`` reads ``p`` pixels
    before and ``d*(k-1) - p`` after the position it samples (``(k-1)/2`` each side for the
    usual 'same' convs; 2 for a 4x4 stride-2 conv with padding 1); a transposed conv of stride
    ``s`` spreads each input pixel over that many of its outputs, ``1/s`` as far in its input."""
    reach = 0.0
    for i, (k, d) in enumerate(zip(module.kernel_size, module.dilation)):
        span = d * (k - 1)
        pad = module.padding                  # a tuple, or the strings 'same' / 'valid'
        before = {"same": span / 2, "valid": 0}[pad] if isinstance(pad, str) else pad[i]
        side = max(before, span - before)
        if isinstance(module, nn.ConvTranspose2d):
            side /= module.stride[i]
        reach = max(reach, side)
    return reach


def _probe(model, device):
    """Run a ``PROBE_SIZE`` zero image through ``model`` with hooks on every conv and
    transposed conv -> ``(radius, alignment)``: the sum of every layer's reach
    (:func:`_layer_reach`) converted to LR pixels (a layer running at ``f`` times the LR
    resolution reaches 1/f as far in LR pixels), and the smallest downsampling inside the model
    as an LR step (2 when a stride-2 conv halves the LR image first, as TransposedConvSR's
    encoder does; 1 for SRResNet)."""
    reads, ratios = [], [1.0]

    def hook(module, inputs, output):
        width_in = inputs[0].shape[-1]
        reads.append(_layer_reach(module) * PROBE_SIZE / width_in)
        ratios.append(output.shape[-1] / PROBE_SIZE)

    layers = (nn.Conv2d, nn.ConvTranspose2d)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, layers)]
    was_training = model.training
    model.eval()                       # BatchNorm in train mode would learn from the probe
    try:
        with torch.inference_mode():
            model(torch.zeros(1, 3, PROBE_SIZE, PROBE_SIZE, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return sum(reads), max(1, round(1 / min(ratios)))


def receptive_field(model, device="cpu"):
    """``(receptive_margin, tile_alignment)`` of ``model`` from one probe (:func:`_probe`), or
    the values an ONNX generator (``onnx_model.OnnxGenerator``) stores, since a graph cannot be
    hooked. See the two functions below."""
    stored = (getattr(model, "receptive_margin", None), getattr(model, "tile_alignment", None))
    if all(isinstance(v, int) for v in stored):
        return stored
    radius, align = _probe(model, device)
    return math.ceil(radius - 1e-9) + RESAMPLE_MARGIN, align


def receptive_margin(model, device="cpu"):
    """Radius of ``model``'s receptive field in LR pixels, rounded up, plus ``RESAMPLE_MARGIN``.

    Every ``nn.Conv2d`` and ``nn.ConvTranspose2d`` reaches :func:`_layer_reach` pixels at the
    resolution it runs at (found by running a ``PROBE_SIZE`` zero image with forward hooks); at
    ``f`` times the LR resolution that is 1/f LR pixels. The sum over all layers bounds the
    radius of any network made of convolutions, pointwise layers (BatchNorm in eval mode,
    activations, residual sums) and up/downsampling (pixel shuffle, bicubic, strided and
    transposed convs): 40 + 2 = 42 for the paper's SRResNet (a 9x9 conv, 33 3x3 convs and one
    sub-pixel conv at 1x, one 3x3 conv at 2x, the 9x9 output conv at 4x). Other layer types
    (pooling, attention) are not covered: pass ``overlap`` explicitly for such models. An ONNX
    generator returns the radius measured at export, stored in the file.
    """
    return receptive_field(model, device)[0]


def tile_alignment(model, device="cpu"):
    """The LR step a tile's context must start on for the model to compute what it computes on
    the whole image: 1 for networks that never go below the LR resolution (SRResNet, the
    Y-channel baselines); 2 for TransposedConvSR, whose stride-2 encoder samples every other
    pixel (a tile starting on an odd row would sample the other ones). See :func:`_probe`; an
    ONNX generator returns the value stored at export."""
    return receptive_field(model, device)[1]


def tile_grid(h, w, tile):
    """Tiles ``(y0, y1, x0, x1)`` of side ``tile`` (smaller at the bottom/right) covering h x w."""
    return [(y, min(y + tile, h), x, min(x + tile, w))
            for y in range(0, h, tile) for x in range(0, w, tile)]


def _model_input(x, device):
    """``(1,3,h,w)`` CPU tensor -> on ``device`` in channels_last (NHWC) memory format: the
    convolutions then run 2-3x faster on the CPU (see benchmarks/bench_inference.py); values
    are the same up to float rounding."""
    return x.to(device).contiguous(memory_format=torch.channels_last)


def _check_output(sr, h, w, scale):
    """Every model output passes here (whole image or tile): its shape must be
    ``(1,3,scale*h,scale*w)`` and every value finite (NaN/inf -> NonFiniteOutputError: clamping
    would turn them into a black image and a meaningless score)."""
    if sr.dim() != 4 or sr.shape[:2] != (1, 3) or (
            scale is not None and tuple(sr.shape[2:]) != (scale * h, scale * w)):
        raise ValueError(f"upscale_image: model output has shape {tuple(sr.shape)} for a "
                         f"{h}x{w} input (model scale {scale})")
    bad = int((~torch.isfinite(sr)).sum())
    if bad:
        raise NonFiniteOutputError(
            f"the model output {bad} non-finite value(s) (NaN/inf) for a {h}x{w} input: the "
            f"weights are broken (diverged training?); no image or score is produced")


def upscale_image(model, img, device="cpu", tile=None, overlap=None, progress=False):
    """Super-resolve one image with ``model``.

    Args:
        model: a generator mapping ``(1,3,h,w)`` float RGB in [0,1] to ``(1,3,s*h,s*w)``
            (see models.py). It is moved to ``device`` and run in eval mode under
            ``torch.inference_mode()``; its train/eval mode is restored afterwards.
        img: uint8 ``(h,w)`` (gray) or ``(h,w,3)`` (RGB). A gray image is replicated to RGB for
            the model and the RGB output is converted back to one channel with the ITU-R 601 luma
            (exactly as PIL's ``convert('L')``).
        device: torch device for the computation.
        tile: None: one forward pass over the whole image. An int > 0: tiles of ``tile`` x
            ``tile`` LR pixels, one at a time on ``device`` (an image no larger than one tile is
            processed whole). Needs ``model.scale``.
        overlap: LR pixels of context around each tile (default: :func:`receptive_margin`, which
            makes the tiled output equal the untiled one up to float rounding).
            A smaller overlap gives seams between tiles: it is allowed here (with a warning)
            for experiments; the command line refuses it.
        progress: show a tqdm bar over the tiles.

    Returns:
        uint8 ``(s*h, s*w, 3)``, or ``(s*h, s*w)`` for a gray input; the output is clamped to
        [0,1] and rounded.

    An image with a side below :data:`MIN_INPUT_SIDE` is edge-padded by the receptive field first and the
    output cropped back (see there): exactly ``upscale_image(pad(img))[crop]``.

    Raises:
        ValueError: a bad argument or an output of the wrong shape.
        NonFiniteOutputError: the model output NaN/inf anywhere.
    """
    img, gray = _rgb_input(img, tile, overlap)
    h, w = img.shape[:2]
    if min(h, w) < MIN_INPUT_SIDE:
        out = _upscale_padded(model, img, device)
        return rgb_to_luma(out) if gray else out
    scale = getattr(model, "scale", None)
    was_training = model.training
    model.to(device).eval()
    try:
        with torch.inference_mode():
            if tile is None or (h <= tile and w <= tile):
                sr = model(_model_input(image_to_tensor(img), device))
                _check_output(sr, h, w, scale)
                out = tensor_to_image(sr)
            else:
                if scale is None:
                    raise ValueError("upscale_image: tiled inference needs model.scale")
                out = _upscale_tiled(model, img, device, int(tile), overlap, scale, progress)
    finally:
        model.train(was_training)
    return rgb_to_luma(out) if gray else out


def _rgb_input(img, tile, overlap):
    """The arguments of :func:`upscale_image` checked -> ``(rgb, gray)``: ``rgb`` uint8
    ``(h,w,3)`` with h, w >= 1 (a gray ``(h,w)`` image replicated to three channels), ``gray``
    True when it was. TypeError for an image that is not a uint8 numpy array; ValueError for
    another shape, an empty image, or a ``tile`` / ``overlap`` that is not None or an int
    (``tile`` >= 1, ``overlap`` >= 0)."""
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
        raise TypeError(f"upscale_image: needs a uint8 numpy image, got "
                        f"{type(img).__name__} {getattr(img, 'dtype', '')}")
    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, (int, np.integer))
                             or tile < 1):
        raise ValueError(f"upscale_image: tile must be None or an int >= 1, got {tile!r}")
    if overlap is not None and (not isinstance(overlap, (int, np.integer)) or overlap < 0):
        raise ValueError(f"upscale_image: overlap must be None or an int >= 0, got {overlap!r}")
    gray = img.ndim == 2
    if gray:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"upscale_image: needs an (h,w) or (h,w,3) image, got shape {img.shape}")
    if 0 in img.shape[:2]:
        raise ValueError(f"upscale_image: empty image of shape {img.shape}")
    return img, gray


def _upscale_padded(model, img, device):
    """:func:`upscale_image` of a uint8 ``(h,w,3)`` image with a side below
    :data:`MIN_INPUT_SIDE`: edge-padded by :func:`receptive_margin` on every side, run, the
    centre kept."""
    h, w = img.shape[:2]
    pad = receptive_margin(model, device)
    padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    out = upscale_image(model, padded, device=device)
    s = out.shape[0] // padded.shape[0]
    return np.ascontiguousarray(out[s * pad:s * (pad + h), s * pad:s * (pad + w)])


def _upscale_tiled(model, img, device, tile, overlap, scale, progress):
    """Tiled inference of :func:`upscale_image` -> uint8 ``(s*h, s*w, 3)`` canvas on the CPU."""
    h, w = img.shape[:2]
    exact, align = receptive_field(model, device)                  # one probe for both
    margin = exact if overlap is None else int(overlap)
    if margin < exact:
        warnings.warn(f"overlap {margin} is below the model's receptive-field radius {exact} LR "
                      f"px: the tiles will show seams", stacklevel=3)
    lr = image_to_tensor(img)                         # (1,3,h,w) float32 on the CPU
    out = np.empty((scale * h, scale * w, 3), np.uint8)
    for y0, y1, x0, x1 in tqdm(tile_grid(h, w, tile), desc="tiles", disable=not progress,
                               leave=False):
        a0, a1 = max(0, y0 - margin) // align * align, min(h, y1 + margin)   # context, aligned
        b0, b1 = max(0, x0 - margin) // align * align, min(w, x1 + margin)
        sr = model(_model_input(lr[:, :, a0:a1, b0:b1], device))
        _check_output(sr, a1 - a0, b1 - b0, scale)
        core = sr[:, :, scale * (y0 - a0):scale * (y1 - a0), scale * (x0 - b0):scale * (x1 - b0)]
        out[scale * y0:scale * y1, scale * x0:scale * x1] = tensor_to_image(core)
        del sr, core
    return out

