"""Super-resolve image files and folders with a trained generator from the command line, whole or
tiled (bounded memory for any image size): reading the inputs, planning and writing the outputs,
loading a ``.pth`` or ``.onnx`` generator; the inference itself is ``tiling.upscale_image``.

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
* An image under ``tiling.MIN_INPUT_SIDE`` px a side is edge-padded by the receptive field and
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
(``tiling.receptive_margin``, the default) every kept output pixel sees exactly the input it would
see in a whole-image pass, so the tiled result equals the untiled one up to float rounding
(tests: at most 1 gray level). The command line refuses an ``--overlap`` below that radius (seams)
and a ``--tile`` below the overlap (more context than image per tile). Only one tile is on the
device at a time; the output is a uint8 canvas on the CPU, so a 2K input becomes an 8K output in
bounded memory.
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

import checkpoint
import cli
import datasets
import onnx_model
from config import REFERENCE_WEIGHTS
from imresize import imresize
from utils import (UINT16_TO_UINT8, ImageReadError, atomic_write, load_image, low_byte_tiles,
                   oriented)
from runtime import resolve_device
from tiling import NonFiniteOutputError, receptive_margin, upscale_image

DEFAULT_TILE = 256
"""Tile side of the command line, LR pixels (~1 GB of activations for a full SRResNet in fp32)."""

MAX_OUTPUT_PIXELS = 2 ** 26
"""Largest output (pixels, 67 MP: 8192 x 8192) written without ``--force``: a small file can
hold a huge image (a 270 KB PNG of 92 MP became 2 GB of memory and 4.4 GB of output). The
2K -> 8K case (2040x1344 x4 = 44 MP) is below it."""

BYTES_PER_OUTPUT_PIXEL = 3
"""uint8 RGB: what one output pixel costs in memory (the canvas), for the refusal's message."""

ALPHA_MODES = {"RGBA", "LA", "PA", "La", "RGBa"}
"""PIL modes with an alpha channel (palette/gray/RGB images may also carry a 'transparency')."""


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
    p = cli.tool_parser(__doc__)
    cli.add_path_option(p, "--checkpoint",
                        help="generator checkpoint written by train.py or export.py, or an .onnx "
                             "file from export.py (run by onnxruntime) (default: the shipped "
                             "reference SRGAN, weights/srgan.pth)")
    cli.add_path_option(p, "--input", required=True, help="an image file or a folder of images")
    cli.add_path_option(p, "--output", required=True,
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
