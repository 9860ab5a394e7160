"""Super-resolve images with a trained generator: one image in memory, or files and folders
from the command line, whole or tiled (bounded memory for any image size).

Usage (from the project root)::

    python super_resolve.py --checkpoint runs/paper/srgan.pth --input photo.jpg --output out/
    python super_resolve.py --checkpoint runs/paper/srresnet.pth --input photos/ --output out/ \\
        --tile 256 --device cuda

Every input becomes ``OUTPUT/<input stem>.png`` (lossless), ``scale`` times larger:

* RGB stays RGB; single-channel (gray) stays single-channel (the model sees it replicated to RGB
  and its output is turned back into one channel with the ITU-R 601 luma).
* An alpha channel (RGBA, LA, palette or gray with transparency) is upscaled separately with the
  MATLAB-exact bicubic ``imresize`` and re-attached (RGBA / LA output).
* 16-bit images are reduced to 8 bits first (``round(v / 257)``, see ``utils.load_image``): the
  model works on 8-bit images, so the output is 8-bit.
* Palette images become RGB (RGBA when the palette has transparency).
* A photo's EXIF orientation is applied (a warning says so); a multi-frame file (animated GIF,
  multi-page TIFF) gives its first frame (a warning says so). See ``utils.load_image``.
* An image under :data:`MIN_INPUT_SIDE` px a side is edge-padded by the receptive field and
  cropped back.
* NaN/inf weights are refused when the checkpoint is loaded (``checkpoint.load_generator`` names the
  tensor); a non-finite model output is an error (:class:`NonFiniteOutputError`), never an image.

In a folder, the image files (by extension, see ``datasets.IMAGE_EXTENSIONS``) are processed in
name order; other files are skipped with a warning, and a file that cannot be read is skipped
with a warning naming it (the exit status is then 1). Existing outputs are kept (skipped) unless
``--overwrite``; an output that would replace an input file is refused. ``--output`` is a
folder: an existing file, a name ending like an image file (``result.png``) or a place that
cannot be written is refused before any work. Any other failure (disk full, a non-finite output)
stops with one line naming the file; outputs already written are kept (each is written
atomically). ``--debug`` shows the traceback (``cli.py``).

Tiling (``--tile N``, default 256 LR pixels; 0 = whole image): the LR image is cut into N x N
tiles, each tile is run with a margin of ``overlap`` LR pixels of real neighbouring context on
every side, and only its centre is kept. With ``overlap`` >= the model's receptive-field radius
(:func:`receptive_margin`, the default) every kept output pixel sees exactly the input it would
see in a whole-image pass, so the tiled result equals the untiled one up to float rounding
(tests: at most 1 gray level). The command line refuses an ``--overlap`` below that radius (seams)
and a ``--tile`` below the overlap (more context than image per tile). Only one tile is on the device at a time; the output is a uint8
canvas on the CPU, so a 2K input becomes an 8K output in bounded memory.
"""
import argparse
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

import checkpoint
import cli
import datasets
import onnx_model
from config import REFERENCE_WEIGHTS
from imresize import imresize
from utils import (UINT16_TO_UINT8, ImageReadError, atomic_write, image_to_tensor, load_image,
                   low_byte_tiles, oriented, rgb_to_luma, tensor_to_image)
from runtime import resolve_device

DEFAULT_TILE = 256
"""Tile side of the command line, LR pixels (~1 GB of activations for a full SRResNet in fp32)."""

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

MAX_OUTPUT_PIXELS = 2 ** 26
"""Largest output (pixels, 67 MP: 8192 x 8192) written without ``--force``: a small file can
hold a huge image (a 270 KB PNG of 92 MP became 2 GB of memory and 4.4 GB of output). The
2K -> 8K case (2040x1344 x4 = 44 MP) is below it."""

BYTES_PER_OUTPUT_PIXEL = 3
"""uint8 RGB: what one output pixel costs in memory (the canvas), for the refusal's message."""

ALPHA_MODES = {"RGBA", "LA", "PA", "La", "RGBa"}
"""PIL modes with an alpha channel (palette/gray/RGB images may also carry a 'transparency')."""


# ----------------------------------------------------------------------------------------------
# Tiled inference
# ----------------------------------------------------------------------------------------------

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

    h, w = img.shape[:2]
    if 0 in (h, w):
        raise ValueError(f"upscale_image: empty image of shape {img.shape}")
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


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------

def read_image(path):
    """Read an image for super-resolution -> ``(img, alpha)``.

    ``img``: uint8 ``(H,W)`` or ``(H,W,3)`` as ``utils.load_image`` gives it (16-bit reduced to
    8-bit, palette -> RGB, alpha dropped, EXIF orientation applied, first frame); ``alpha``:
    uint8 ``(H,W)`` or None when the file has no alpha channel / transparency, turned and
    reduced like the image (16-bit alpha: ``round(v / 257)``). Raises
    ``utils.ImageReadError`` naming the file.
    """
    img = load_image(path)
    try:
        with Image.open(path) as pil:
            if pil.mode not in ALPHA_MODES and "transparency" not in pil.info:
                return img, None
            low_tiles = low_byte_tiles(pil)         # 16-bit alpha (64-bit RGBA PNG ...)
            pil = oriented(pil, path, warn=False)   # turned like the image (load_image said so)
            alpha = np.asarray(pil.convert("RGBA").getchannel("A"), dtype=np.uint8).copy()
        if low_tiles:
            with Image.open(path) as pil:
                pil.tile = low_tiles
                low = oriented(pil, path, warn=False).convert("RGBA").getchannel("A")
                value = alpha.astype(np.float64) * 256 + np.asarray(low, dtype=np.uint8)
                alpha = np.round(value / UINT16_TO_UINT8).astype(np.uint8)
    except Exception as e:  # noqa: BLE001 -- PIL raises many types for odd files
        raise ImageReadError(f"{path}: cannot read its alpha channel ({type(e).__name__}: {e})") from e
    return img, alpha


def write_png(path, img, alpha=None):
    """Write uint8 ``img`` ``(H,W)`` / ``(H,W,3)`` with an optional uint8 ``alpha`` ``(H,W)`` as
    an L / RGB / LA / RGBA PNG, atomically (parent folders created)."""
    if alpha is not None:
        if alpha.shape != img.shape[:2]:
            raise ValueError(f"{path}: alpha {alpha.shape} does not match image {img.shape}")
        planes = [img] if img.ndim == 2 else [img[:, :, c] for c in range(img.shape[2])]
        img = np.stack(planes + [alpha], axis=2)
    if img.ndim == 3 and img.shape[2] not in (2, 3, 4):
        raise ValueError(f"{path}: cannot write an image of shape {img.shape}")
    pil = Image.fromarray(np.ascontiguousarray(img))  # (H,W) L, 2 LA, 3 RGB, 4 RGBA
    with atomic_write(path, "wb") as f:
        pil.save(f, format="PNG")


def upscale_file(model, src, dst, device="cpu", tile=DEFAULT_TILE, overlap=None, progress=False):
    """Super-resolve the image file ``src`` into the PNG ``dst`` (alpha upscaled with bicubic
    ``imresize`` and re-attached; see the module docstring). Returns the output shape."""
    img, alpha = read_image(src)
    sr = upscale_image(model, img, device=device, tile=tile or None, overlap=overlap,
                       progress=progress)
    if alpha is not None:
        alpha = imresize(alpha, scale=model.scale)
    write_png(dst, sr, alpha)
    return sr.shape


def plan_outputs(inputs, output_dir):
    """Output path ``output_dir/<stem>.png`` of every input path. Raises ValueError when two
    inputs map to the same output, an output would overwrite an input file, or an output path
    is a folder."""
    output_dir = Path(output_dir)
    plan, seen = [], {}
    resolved_inputs = {Path(p).resolve() for p in inputs}
    for src in map(Path, inputs):
        dst = output_dir / f"{src.stem}.png"
        key = dst.resolve()
        if key in seen:
            raise ValueError(f"{src} and {seen[key]} would both be written to {dst}")
        if key in resolved_inputs:
            raise ValueError(f"{dst} would overwrite the input file {src}: choose another --output")
        if dst.is_dir():
            raise ValueError(f"{dst} is a folder where the output image of {src} goes: rename or "
                             f"remove it, or choose another --output")
        seen[key] = src
        plan.append((src, dst))
    return plan


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------

def load_model(path, device="cpu"):
    """The generator in ``path`` for inference: an ``.onnx`` file as an
    ``onnx_model.OnnxGenerator`` (onnxruntime), any other as ``checkpoint.load_generator`` reads
    it (train.py's and export.py's ``.pth``)."""
    if Path(path).suffix.lower() == onnx_model.SUFFIX:
        return onnx_model.OnnxGenerator(path, device)
    return checkpoint.load_generator(path, device=device)[0]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="generator checkpoint written by train.py or export.py, or an .onnx "
                        "file from export.py (run by onnxruntime) (default: the shipped "
                        "reference SRGAN, weights/srgan.pth)")
    p.add_argument("--input", required=True, type=Path, help="an image file or a folder of images")
    p.add_argument("--output", required=True, type=Path,
                   help="output FOLDER (created); each input becomes OUTPUT/<stem>.png")
    p.add_argument("--tile", type=int, default=DEFAULT_TILE,
                   help="tile side in LR pixels; 0 = whole image (default %(default)s; at least "
                        "the overlap)")
    p.add_argument("--overlap", type=int, default=None,
                   help="LR pixels of context around each tile (default: the model's "
                        "receptive-field radius, exact; less is refused: it gives seams)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--force", action="store_true",
                   help=f"write outputs larger than {MAX_OUTPUT_PIXELS / 2 ** 20:.0f} MP "
                        f"(MAX_OUTPUT_PIXELS)")
    args = cli.add_common_options(p, device="auto").parse_args(argv)
    if args.tile < 0:
        p.error(f"--tile must be >= 0 (0 = whole image), got {args.tile}")
    if args.overlap is not None and args.overlap < 0:
        p.error(f"--overlap must be >= 0, got {args.overlap}")
    return args


def check_tiling(tile, overlap, margin):
    """The command line's tiling settings against the model's receptive-field radius
    ``margin`` (LR px). Returns the overlap to use; raises ValueError naming the setting for an
    overlap below ``margin`` (seams: up to ~150 gray levels at overlap 0) or a tile smaller than
    the overlap (each tile would recompute more context than it keeps)."""
    if not tile:
        return overlap
    overlap = margin if overlap is None else overlap
    if overlap < margin:
        raise ValueError(f"--overlap {overlap} is below the model's receptive-field radius "
                         f"{margin} LR px: the tiles would show seams; use --overlap >= {margin} "
                         f"(or leave it out)")
    if tile < overlap:
        raise ValueError(f"--tile {tile} is smaller than the overlap {overlap}: each tile would "
                         f"compute more context than image; use --tile >= {overlap}, or --tile 0 "
                         f"for the whole image at once")
    return overlap


def check_output_sizes(inputs, scale, force=False):
    """Before any work: ValueError naming the first input whose output would exceed
    :data:`MAX_OUTPUT_PIXELS` (sizes from the file headers), unless ``force``. Unreadable
    headers are left to the reading step (skipped with a warning there)."""
    if force:
        return
    for src in inputs:
        try:
            h, w = datasets.image_size(src)
        except ImageReadError:
            continue
        pixels = scale * scale * h * w
        if pixels > MAX_OUTPUT_PIXELS:
            raise ValueError(
                f"{src}: its output would be {scale * w}x{scale * h} ({pixels / 1e6:.0f} "
                f"megapixels, {pixels * BYTES_PER_OUTPUT_PIXEL / 2 ** 30:.1f} GiB in memory), "
                f"above the limit of {MAX_OUTPUT_PIXELS / 1e6:.0f} MP; pass --force to make it")


def check_output_dir(output):
    """Make sure ``output`` is (or can be created as) a writable folder before any work:
    ValueError / OSError naming ``--output`` and what to do otherwise."""
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {output} is an existing file; --output is the folder that "
                         f"receives <stem>.png: give a folder")
    if not output.exists() and output.suffix.lower() in Image.registered_extensions():
        raise ValueError(f"--output {output} looks like a file name; --output is the folder "
                         f"that receives <stem>.png: give a folder (e.g. {output.parent / 'out'})")
    try:
        cli.probe_writable(output)
    except OSError as e:
        raise OSError(f"--output {output}: cannot write there ({e.strerror or e}); choose a "
                      f"writable folder") from e


def main(argv=None):
    """The command line (see the module docstring). Returns the exit status: 0 when every image
    was written or kept, 1 when some could not be read or a setting/file is wrong (one line on
    stderr names it; outputs already written are kept)."""
    args = parse_args(argv)
    try:
        device = cli.device_setting(resolve_device, args.device)
        if args.checkpoint is None:
            args.checkpoint = REFERENCE_WEIGHTS["SRGAN"]
            print(f"no --checkpoint: using the reference SRGAN {args.checkpoint} "
                  f"(weights/README.md)", file=sys.stderr)
        model = load_model(args.checkpoint, device)
        overlap = check_tiling(args.tile, args.overlap, receptive_margin(model, device))
        if args.input.is_dir():
            inputs = datasets.list_images(args.input)
        elif args.input.is_file():
            inputs = [args.input]
        else:
            raise FileNotFoundError(f"--input {args.input}: no such file or folder")
        plan = plan_outputs(inputs, args.output)
        check_output_sizes(inputs, model.scale, args.force)
        check_output_dir(args.output)
    except (OSError, ValueError, RuntimeError, ImportError) as e:   # ImportError: no onnxruntime
        return cli.fail("super_resolve.py", e)

    failed = written = kept = 0
    single = len(plan) == 1
    error = None
    for src, dst in tqdm(plan, desc="images", unit="img", disable=args.quiet or single):
        if dst.exists() and not args.overwrite:
            tqdm.write(f"{dst} exists, kept (use --overwrite to replace it)")
            kept += 1
            continue
        try:
            shape = upscale_file(model, src, dst, device, args.tile, overlap,
                                 progress=not args.quiet)
        except ImageReadError as e:
            tqdm.write(f"super_resolve.py: warning: skipped: {e}", file=sys.stderr)  # e names it
            failed += 1
            continue
        except (OSError, ValueError, RuntimeError) as e:   # disk full, NaN output, ...: stop
            if cli.debugging():
                raise
            error = f"{src}: {cli.one_line(e)}" if isinstance(e, NonFiniteOutputError) else \
                cli.one_line(e)
            break
        written += 1
        if single:
            print(f"{src} -> {dst} ({shape[1]}x{shape[0]})")
    print(f"{written} written, {kept} kept, {failed} skipped, in {args.output}")
    if error:
        print(f"super_resolve.py: error: {error} (outputs written before are kept)",
              file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(cli.run("super_resolve.py", main))
