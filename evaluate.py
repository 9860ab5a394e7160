"""PSNR/SSIM of a super-resolution method on the benchmark test sets.

Protocol of the EDSR/RCAN/SwinIR tables (RCAN ``Evaluate_PSNR_SSIM.m``; see ``utils.psnr`` and
``utils.ssim``): the SR output is rounded to uint8 and compared with the modcropped HR image on
the Y channel (float, 16..235; a single-channel image on its raw values), with ``scale`` pixels
shaved from every border; the set score is the mean over its images.

Usage::

    python evaluate.py --model bicubic --data-root ../shared/data/benchmark --sets Set5 Set14
    python evaluate.py --model runs/paper/srgan.pth --sets Set5 Set14 B100 Urban100 --json r.json

``--model`` is ``bicubic`` (MATLAB-exact bicubic upscaling of the LR file) or a checkpoint
written by ``train.py``. ``--data-root`` holds the sets in the EDSR layout
``<Set>/HR/<name>.png`` + ``<Set>/LR_bicubic/X4/<name>x4.png`` (default:
``config.data.benchmark_root``); without an LR folder the LR images are made with
``imresize(modcrop(HR, scale), 1/scale)``.
"""
import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import datasets
import models
import utils
from config import get_config
from imresize import imresize
from solver import resolve_device
from super_resolve import upscale_image

BICUBIC = "bicubic"  # the --model name of the bicubic baseline


class SRMethod:
    """A super-resolution method as a callable: ``method(lr) -> sr``.

    ``lr`` uint8 ``(h,w)`` or ``(h,w,3)`` -> ``sr`` uint8 ``(scale*h, scale*w[,3])``.
    Attributes: ``name`` (str, for tables), ``scale`` (int), ``model`` (the nn.Module, or None
    for bicubic), ``checkpoint`` (the checkpoint dict when loaded from a file, else None).
    """

    def __init__(self, name, scale, model=None, device="cpu", checkpoint=None):
        self.name = name
        self.scale = scale
        self.model = model
        self.device = device
        self.checkpoint = checkpoint

    def __call__(self, lr):
        if self.model is None:
            return imresize(lr, self.scale)
        return upscale_image(self.model, lr, device=self.device)

    def __repr__(self):
        return f"SRMethod({self.name!r}, x{self.scale})"


def load_method(spec, device="cpu", scale=4):
    """Turn ``spec`` into an :class:`SRMethod`.

    Args:
        spec: ``'bicubic'`` (MATLAB-exact ``imresize(lr, scale)``, uint8 in and out); a checkpoint
            path (str or Path, loaded with ``models.load_generator``); or an ``nn.Module``
            generator mapping ``(N,3,h,w)`` in [0,1] to ``(N,3,scale*h,scale*w)`` (moved to
            ``device``; each call runs it in eval mode and restores its mode).
        device: torch device (str or torch.device) for a model.
        scale: the upscaling factor; a checkpoint or model of another scale is an error.

    Raises:
        FileNotFoundError: ``spec`` is a path that does not exist.
        ValueError: the checkpoint is not usable (see ``models.load_generator``) or the scale
            of the model differs from ``scale``.
        TypeError: ``spec`` is none of the above.
    """
    if isinstance(spec, str) and spec == BICUBIC:
        return SRMethod(BICUBIC, scale)
    if isinstance(spec, torch.nn.Module):
        model_scale = getattr(spec, "scale", scale)
        if model_scale != scale:
            raise ValueError(f"{type(spec).__name__} upscales x{model_scale}, "
                             f"but x{scale} was requested")
        return SRMethod(type(spec).__name__, scale, spec.to(device), device)
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(f"model {str(spec)!r} is neither {BICUBIC!r} nor an existing "
                                    f"checkpoint file ({path.resolve()})")
        model, ckpt = models.load_generator(path, device=device, expect_scale=scale)
        return SRMethod(path.stem, scale, model, device, ckpt)
    raise TypeError(f"model must be {BICUBIC!r}, a checkpoint path or an nn.Module, "
                    f"got {type(spec).__name__}")


def evaluate(model, data_root, sets, scale=4, device="cpu", progress=True, per_image=False):
    """Mean PSNR/SSIM of ``model`` on each test set.

    Args:
        model: ``'bicubic'``, a checkpoint path, an nn.Module or an :class:`SRMethod`
            (see :func:`load_method`).
        data_root: folder holding the sets (see ``datasets.find_test_set``).
        sets: set name or list of names, e.g. ``['Set5', 'Set14', 'B100', 'Urban100']``.
        scale: upscaling factor; also the number of border pixels shaved.
        device: torch device for a model.
        progress: show a tqdm bar per set (on stderr).
        per_image: also return the per-image scores.

    Returns:
        ``{set: {"psnr": float dB, "ssim": float, "images": int}}`` in the order of ``sets``;
        with ``per_image=True`` each set also has ``"per_image": [{"name", "psnr", "ssim"}, ...]``
        (in file-name order).

    Raises:
        FileNotFoundError: a set folder is missing (the message names the paths tried).
        ValueError: an empty set folder, an unreadable image, an LR/HR size mismatch or an SR
            output of the wrong size (the messages name the file).
    """
    method = model if isinstance(model, SRMethod) else load_method(model, device, scale)
    if method.scale != scale:
        raise ValueError(f"{method!r} does not match the requested scale x{scale}")
    if isinstance(sets, str):
        sets = [sets]
    results = {}
    for name in sets:
        hr_dir, lr_dir = datasets.find_test_set(data_root, name, scale)
        data = datasets.TestDataset(hr_dir, lr_dir, scale)
        if len(data) == 0:
            raise ValueError(f"test set {name}: no images in {hr_dir}")
        scores = []
        for i in tqdm(range(len(data)), desc=f"{method.name} {name}", unit="img",
                      disable=not progress, leave=False):
            lr, hr, image_name = data[i]
            sr = method(lr)
            if sr.shape != hr.shape:
                raise ValueError(f"{name}/{image_name}: SR output {sr.shape} from LR {lr.shape} "
                                 f"does not match HR {hr.shape} (in {hr_dir})")
            try:
                scores.append({"name": image_name, "psnr": utils.psnr(sr, hr, shave=scale),
                               "ssim": utils.ssim(sr, hr, shave=scale)})
            except ValueError as e:  # e.g. an image too small for the shave + SSIM window
                raise ValueError(f"{data.pairs[i][0]}: cannot score this image: {e}") from e
        results[name] = {"psnr": float(np.mean([s["psnr"] for s in scores])),
                         "ssim": float(np.mean([s["ssim"] for s in scores])),
                         "images": len(scores)}
        if per_image:
            results[name]["per_image"] = scores
    return results


def format_table(results, title="Method"):
    """Markdown table of :func:`evaluate` results: one row per set, PSNR (dB, 2 decimals) and
    SSIM (4 decimals). ``title`` heads the metric column (e.g. the method name)."""
    lines = [f"| Set | Images | {title} PSNR (dB) | {title} SSIM |", "|---|---:|---:|---:|"]
    for name, r in results.items():
        p = "inf" if math.isinf(r["psnr"]) else f"{r['psnr']:.2f}"
        lines.append(f"| {name} | {r['images']} | {p} | {r['ssim']:.4f} |")
    return "\n".join(lines)


def write_json(path, payload):
    """Write ``payload`` as indented JSON to ``path`` atomically (parent folders created)."""
    with utils.atomic_write(path, "w") as f:
        json.dump(payload, f, indent=2)
        f.write("\n")


def parse_args(argv=None):
    cfg = get_config()
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=BICUBIC,
                   help=f"'{BICUBIC}' or a checkpoint path (default: {BICUBIC})")
    p.add_argument("--data-root", default=cfg.data.benchmark_root,
                   help="folder holding <Set>/HR and <Set>/LR_bicubic/X<scale> "
                        "(default: config data.benchmark_root = %(default)s)")
    p.add_argument("--sets", nargs="+", default=list(cfg.data.test_sets),
                   help="test set names (default: %(default)s)")
    p.add_argument("--scale", type=int, default=cfg.scale, help="upscaling factor (default: 4)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto (default: cpu)")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    p.add_argument("--per-image", action="store_true", help="per-image scores in the JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        device = resolve_device(args.device)
    except RuntimeError as e:  # CUDA asked for but not available
        print(f"evaluate.py: error: {e}", file=sys.stderr)
        return 1
    try:
        method = load_method(args.model, device, args.scale)
        results = evaluate(method, args.data_root, args.sets, args.scale, device,
                           progress=not args.quiet, per_image=args.per_image)
    except (OSError, ValueError) as e:  # missing/unreadable files, bad sets or checkpoints
        print(f"evaluate.py: error: {e}", file=sys.stderr)
        return 1
    print(f"x{args.scale}, Y channel, {args.scale} px shaved, model {args.model}\n")
    print(format_table(results, title=method.name))
    if args.json is not None:
        write_json(args.json, {"model": str(args.model), "scale": args.scale,
                               "data_root": str(args.data_root), "results": results})
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
