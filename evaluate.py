"""Scores of a super-resolution method on the benchmark test sets: fidelity (PSNR/SSIM),
consistency with the LR input (LR-PSNR) and perceptual quality (NIQE, LPIPS).

Metrics (``metrics.METRICS`` names them, with the direction that is better):

* ``psnr``, ``ssim``: protocol of the EDSR/RCAN/SwinIR tables (RCAN ``Evaluate_PSNR_SSIM.m``;
  see ``metrics.psnr`` and ``metrics.ssim``): the SR output is rounded to uint8 and compared with the
  modcropped HR image on the Y channel (float, 16..235; a single-channel image on its raw
  values), with ``scale`` pixels shaved from every border. Higher is better.
* ``psnr_rgb``: the same PSNR over all three RGB channels (``metrics.psnr_rgb``), ``scale`` px shaved.
* ``lr_psnr``: PSNR between ``imresize(SR, 1/scale)`` and the LR input, whole image, all RGB
  values (``metrics.lr_psnr``): does the SR image explain its input? NTIRE 2021 "Learning the
  super-resolution space" required >= 45 dB. Higher is better.
* ``niqe``: no-reference NIQE of the SR image (``metrics.niqe``), :data:`NIQE_CROP_BORDER_PER_SCALE`
  x ``scale`` px cropped first. Lower is better. It needs images of at least 96x96 px (after the
  crop): a smaller image gets None and is listed under ``"skipped"``.
* ``lpips``: LPIPS v0.1 distance to the HR image (``metrics.LPIPS``, AlexNet by default),
  ``scale`` px shaved; gray images replicated to RGB. Lower is better. Its weights (torchvision's
  backbone + the release's linear layers) come through the torch.hub cache or from files
  (``--lpips-backbone`` / ``--lpips-weights``); offline without them it is reported unavailable.

The set score is the mean over its images (over the scored images for NIQE and LPIPS).

The same loop serves training: :func:`validate` scores a generator on the validation set each
epoch, :func:`bicubic_validation` the bicubic level drawn beside its curves; a method is bicubic
or a checkpoint wrapped as ``lr -> sr`` (:class:`SRMethod`, :func:`load_method`).

Usage::

    python evaluate.py --model bicubic --data-root ../shared/data/benchmark --sets Set5 Set14
    python evaluate.py --model runs/paper/srgan.pth --sets Set5 Set14 B100 Urban100 --json r.json
    python evaluate.py --model runs/paper/srgan.pth --metrics psnr ssim lr_psnr niqe lpips \\
        --lpips-net alex --lpips-backbone alexnet-owt-7be5be79.pth --lpips-weights alex.pth

``--model`` is ``bicubic`` (MATLAB-exact bicubic upscaling of the LR file) or a checkpoint
written by ``train.py``. ``--data-root`` holds the sets in the EDSR layout
``<Set>/HR/<name>.png`` + ``<Set>/LR_bicubic/X4/<name>x4.png`` (default:
``config.data.benchmark_root``); without an LR folder the LR images are made with
``imresize(modcrop(HR, scale), 1/scale)``. Every set is looked up before any work starts; a
set that fails while being scored does not lose the others (the table and JSON hold what was
computed, the failure is reported, the exit status is 1; with no set scored at all, an existing
``--json`` file is left as it was). ``--json`` is checked writable (a file name, its folder
writable) before any work too. A checkpoint with NaN/inf weights is refused naming the tensor,
and a non-finite model output fails the set (never a score). Failures end with one line on
stderr and a non-zero exit; ``--debug`` shows the traceback (``cli.py``).
"""
import json
import sys
import traceback
from pathlib import Path

import numpy as np
import torch

import checkpoint
import cli
import create_data_lists
import datasets
import pretrained
import tables
import utils
from metrics import LPIPS, METRICS, lpips_score, lr_psnr, niqe, psnr, psnr_rgb, ssim
from config import get_config
from imresize import imresize
from progress import progress_bar
from runtime import resolve_device, unwrap
from tiling import upscale_image

BICUBIC = "bicubic"  # the --model name of the bicubic baseline

NIQE_CROP_BORDER_PER_SCALE = 1
"""NIQE is computed after cropping ``NIQE_CROP_BORDER_PER_SCALE * scale`` px from every side
(4 px at x4), as in the SR literature: the PIRM 2018 challenge's ``calc_scores.m`` shaves the
scale before NIQE / Ma, and BasicSR's ``calculate_niqe`` is run with ``crop_border = scale``;
it also matches the ``scale`` px shaved for PSNR/SSIM/LPIPS."""

NIQE_PROBE_SIDE = 192
"""Side of the noise image :func:`prepare_metrics` scores once to see whether NIQE can run here
(two 96x96 blocks per side)."""

LPIPS_DEFAULT_NET = "alex"
"""LPIPS backbone when none is named (the release's recommended 'forward metric')."""

_LPIPS_LOADED = {}   # (net, backbone path, linear path, device) -> loaded metrics.LPIPS


class SRMethod:
    """A super-resolution method as a callable: ``method(lr) -> sr``.

    ``lr`` uint8 ``(h,w)`` or ``(h,w,3)`` -> ``sr`` uint8 ``(scale*h, scale*w[,3])``.
    Attributes: ``name`` (str, for tables), ``scale`` (int), ``model`` (the nn.Module, or None
    for bicubic), ``checkpoint`` (the checkpoint dict when loaded from a file, else None),
    ``path`` (str: the file it was loaded from, else None), ``tag`` (str: a short name for file
    names, default ``name``).
    """

    def __init__(self, name, scale, model=None, device="cpu", checkpoint=None, path=None,
                 tag=None):
        self.name = name
        self.scale = scale
        self.model = model
        self.device = device
        self.checkpoint = checkpoint
        self.path = None if path is None else str(path)
        self.tag = tag or name

    def __call__(self, lr):
        if self.model is None:
            return imresize(lr, self.scale)
        # tiled on CUDA (a 2K image whole needs GB of activations; same result within one gray
        # level), whole on the CPU: the same rule as validation during training
        return upscale_image(self.model, lr, device=self.device, tile=validation_tile(self.device))

    def __repr__(self):
        return f"SRMethod({self.name!r}, x{self.scale})"


def load_method(spec, device="cpu", scale=4):
    """Turn ``spec`` into an :class:`SRMethod`.

    Args:
        spec: ``'bicubic'`` (MATLAB-exact ``imresize(lr, scale)``, uint8 in and out); a checkpoint
            path (str or Path, loaded with ``checkpoint.load_generator``); or an ``nn.Module``
            generator mapping ``(N,3,h,w)`` in [0,1] to ``(N,3,scale*h,scale*w)`` (moved to
            ``device``; each call runs it in eval mode and restores its mode).
        device: torch device (str or torch.device) for a model.
        scale: the upscaling factor; a checkpoint or model of another scale is an error.

    Raises:
        FileNotFoundError: ``spec`` is a path that does not exist.
        ValueError: the checkpoint is not usable (see ``checkpoint.load_generator``) or the scale
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
        model, ckpt = checkpoint.load_generator(path, device=device, expect_scale=scale)
        return SRMethod(path.stem, scale, model, device, ckpt, path=spec)
    raise TypeError(f"model must be {BICUBIC!r}, a checkpoint path or an nn.Module, "
                    f"got {type(spec).__name__}")


# --------------------------------------------------------------------------------------------
# Metrics of one image
# --------------------------------------------------------------------------------------------

def check_metrics(metrics):
    """``metrics`` (names of :data:`METRICS`, any order) -> a tuple in :data:`METRICS` order;
    ValueError naming the unknown ones. ``None`` -> all of :data:`METRICS`."""
    if metrics is None:
        return tuple(METRICS)
    if isinstance(metrics, str):
        metrics = [metrics]
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(METRICS)}")
    return tuple(m for m in METRICS if m in metrics)


def niqe_crop_border(scale):
    """Pixels cropped from every side before NIQE at ``scale`` (see
    :data:`NIQE_CROP_BORDER_PER_SCALE`)."""
    return NIQE_CROP_BORDER_PER_SCALE * int(scale)


def score_image(sr, hr, lr, scale, metrics=METRICS, lpips_model=None):
    """Every metric of ``metrics`` for one SR image (see the module docstring).

    Args:
        sr: uint8 ``(s*h, s*w[,3])`` SR output; hr: uint8 HR image of the same shape (modcropped);
        lr: uint8 ``(h,w[,3])`` the LR input of ``sr``; scale: the factor ``s`` (also the shave).
        metrics: names from :data:`METRICS`.
        lpips_model: a ``metrics.LPIPS``, needed when ``'lpips'`` is in ``metrics``.

    Returns:
        ``(scores, skipped)``: ``scores`` = ``{metric: float}`` in ``metrics`` order, None for
        NIQE / LPIPS when this image is too small for them; ``skipped`` = ``{metric: reason}``
        for those None.

    Raises:
        ValueError: the images cannot be compared (shapes, too small for the shave / SSIM window).
    """
    scores, skipped = {}, {}
    for m in check_metrics(metrics):
        if m == "psnr":
            scores[m] = psnr(sr, hr, shave=scale)
        elif m == "ssim":
            scores[m] = ssim(sr, hr, shave=scale)
        elif m == "psnr_rgb":
            scores[m] = psnr_rgb(sr, hr, shave=scale)
        elif m == "lr_psnr":
            scores[m] = lr_psnr(sr, lr, scale)
        else:
            if m == "lpips" and lpips_model is None:
                raise ValueError("score_image: 'lpips' needs an lpips_model (metrics.LPIPS)")
            try:
                if m == "niqe":
                    scores[m] = float(niqe(sr, crop_border=niqe_crop_border(scale)))
                else:
                    scores[m] = lpips_score(lpips_model, sr, hr, shave=scale)
            except ValueError as e:   # the image is smaller than the metric needs
                scores[m], skipped[m] = None, str(e)
    return scores, skipped


# --------------------------------------------------------------------------------------------
# What can run here
# --------------------------------------------------------------------------------------------

def niqe_unavailable_reason():
    """None when ``metrics.niqe`` runs here, else why not (missing model file or dependency).
    Scores one noise image of :data:`NIQE_PROBE_SIDE` px."""
    probe = np.random.default_rng(0).integers(0, utils.UINT8_MAX + 1,
                                              (NIQE_PROBE_SIDE, NIQE_PROBE_SIDE), dtype=np.uint8)
    try:
        niqe(probe)
    except (OSError, ImportError, RuntimeError) as e:
        return f"NIQE cannot run here: {type(e).__name__}: {e}"
    return None


def load_lpips(net=LPIPS_DEFAULT_NET, backbone_weights=None, linear_weights=None, device="cpu"):
    """A ``metrics.LPIPS`` on ``device``, loaded once per process for the same arguments.

    ``None`` weights come through the torch.hub cache (downloaded when missing); paths are
    read as given. Raises what ``metrics.LPIPS`` raises: RuntimeError (naming the URLs, the cache
    folder and how to provide the files) when the weights cannot be had; FileNotFoundError /
    ValueError for bad files. Failures are not remembered: a later call tries again.
    """
    key = (net, None if backbone_weights is None else str(backbone_weights),
           None if linear_weights is None else str(linear_weights), str(device))
    if key not in _LPIPS_LOADED:
        _LPIPS_LOADED[key] = LPIPS(net, backbone_weights, linear_weights).to(device)
    return _LPIPS_LOADED[key]


def prepare_metrics(metrics=None, device="cpu", lpips_model=None, lpips_net=LPIPS_DEFAULT_NET,
                    lpips_backbone=None, lpips_weights=None):
    """Decide which metrics run: ``(metrics, lpips_model, unavailable)``.

    Args:
        metrics: names from :data:`METRICS`, or None = all that can run here.
        device: where a loaded LPIPS model goes.
        lpips_model: a ``metrics.LPIPS`` to use; None -> :func:`load_lpips` (``lpips_net``,
            ``lpips_backbone``, ``lpips_weights``) when ``'lpips'`` is wanted.

    Returns:
        ``metrics``: the tuple to compute (:data:`METRICS` order); ``lpips_model``: the model
        (None without ``'lpips'``); ``unavailable``: ``{metric: reason}`` of the metrics left
        out (only when ``metrics`` is None).

    Raises:
        ValueError: an unknown metric name.
        RuntimeError: a metric asked for by name cannot run here (LPIPS weights that cannot be
            had, NIQE without its model); FileNotFoundError / ValueError: bad LPIPS files given
            by path (even when ``metrics`` is None: a file named by the user must work).
    """
    auto = metrics is None
    wanted = check_metrics(metrics)
    unavailable = {}
    if "niqe" in wanted:
        reason = niqe_unavailable_reason()
        if reason and not auto:
            raise RuntimeError(reason)
        if reason:
            unavailable["niqe"] = reason
    if "lpips" in wanted and lpips_model is None:
        try:
            lpips_model = load_lpips(lpips_net, lpips_backbone, lpips_weights, device)
        except RuntimeError as e:   # weights cannot be downloaded (files given by path raise)
            if not auto:
                raise
            unavailable["lpips"] = str(e)
    metrics = tuple(m for m in wanted if m not in unavailable)
    return metrics, (lpips_model if "lpips" in metrics else None), unavailable


def check_sets(data_root, sets, scale=4):
    """Look every set up before any work: ``{name: (hr_dir, lr_dir)}`` in the order of ``sets``.
    Raises FileNotFoundError with one line naming every missing set and where it was looked for."""
    found, missing = {}, []
    for name in sets:
        try:
            found[name] = datasets.find_test_set(data_root, name, scale)
        except FileNotFoundError as e:
            missing.append(str(e))
    if missing:
        head = f"{len(missing)} of {len(sets)} test sets not found: " if len(missing) > 1 else ""
        raise FileNotFoundError(head + " | ".join(missing))
    return found


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------

SET_PROGRESS_LINES = 1
"""Off a terminal (a log, a notebook) the bar over a test set's images writes this many plain
lines: one, when the set is done (a notebook evaluates many short sets)."""


def score_dataset(method, data, scale, metrics, lpips_model=None, progress=False, label=""):
    """Per-image scores of ``method`` (a callable ``lr -> sr`` on uint8 images, e.g. an
    :class:`SRMethod`) over ``data`` (``(lr, hr, name)`` uint8 triples, a
    ``datasets.TestDataset``): the one loop behind :func:`evaluate_set` and :func:`validate`.

    Returns ``(scores, skipped)``: ``scores`` a list of ``{"name": image, metric: float or
    None}`` in dataset order, ``skipped`` ``{metric: {image: reason}}`` for the images a metric
    could not score (too small for NIQE / LPIPS). Raises ValueError naming the image when the SR
    output does not match the HR size or the image cannot be scored at all.
    """
    scores, skipped = [], {}
    for i in progress_bar(range(len(data)), lines=SET_PROGRESS_LINES, desc=label, unit="img",
                          disable=not progress, leave=False):
        lr, hr, image_name = data[i]
        where = data.pairs[i][0] if hasattr(data, "pairs") else image_name   # the HR file
        sr = method(lr)                                          # uint8, the HR size
        if sr.shape != hr.shape:
            raise ValueError(f"{where}: SR output {sr.shape} from LR {lr.shape} does not match "
                             f"HR {hr.shape}")
        try:
            values, why = score_image(sr, hr, lr, scale, metrics, lpips_model)
        except ValueError as e:  # e.g. an image too small for the shave + SSIM window
            raise ValueError(f"{where}: cannot score this image: {e}") from e
        for m, reason in why.items():
            skipped.setdefault(m, {})[image_name] = reason
        scores.append({"name": image_name, **values})
    return scores, skipped


def mean_scores(scores, metrics):
    """``{metric: mean over the images of scores that scored it, or None when none did}`` for
    the per-image ``scores`` of :func:`score_dataset`."""
    values = {m: [s[m] for s in scores if s[m] is not None] for m in metrics}
    return {m: (float(np.mean(v)) if v else None) for m, v in values.items()}


def evaluate_set(method, data_root, name, scale=4, metrics=("psnr", "ssim"), lpips_model=None,
                 unavailable=None, progress=True, per_image=False):
    """Scores of the :class:`SRMethod` ``method`` on one test set (the body of :func:`evaluate`).

    ``metrics``, ``lpips_model`` and ``unavailable`` as returned by :func:`prepare_metrics`.
    Returns the set's result dict (see :func:`evaluate`). Raises like :func:`evaluate`.
    """
    hr_dir, lr_dir = datasets.find_test_set(data_root, name, scale)
    data = datasets.TestDataset(hr_dir, lr_dir, scale)
    if len(data) == 0:
        raise ValueError(f"test set {name}: no images in {hr_dir}")
    scores, skipped = score_dataset(method, data, scale, metrics, lpips_model, progress,
                                    f"{method.name} {name}")
    result, set_unavailable = {}, dict(unavailable or {})
    for m, mean in mean_scores(scores, metrics).items():
        if mean is not None:
            result[m] = mean
        else:
            first = next(iter(skipped[m].values()))
            set_unavailable[m] = f"no image of {name} could be scored ({first})"
    result["images"] = len(scores)
    if set_unavailable:
        result["unavailable"] = set_unavailable
    if skipped:
        result["skipped"] = skipped
    if per_image:
        result["per_image"] = scores
    return result


# --------------------------------------------------------------------------------------------
# Validation during training
# --------------------------------------------------------------------------------------------

VALIDATION_METRICS = ("psnr", "ssim", "lr_psnr", "niqe")
"""What :func:`validate` measures per epoch: PSNR-Y / SSIM-Y (dB / [0,1], ``scale`` px shaved),
LR-PSNR (dB, RGB, ``imresize(SR, 1/scale)`` vs the LR input: faithfulness) and NIQE (no
reference, lower = more natural)."""

VALIDATION_TILE = 128
"""LR tile side of validation and evaluation on CUDA (:func:`validation_tile`): a 2K
DIV2K_valid image whole through SRResNet needs several GB of activations; tiles with the
receptive-field overlap of ``tiling.upscale_image`` give the same image (within one gray
level)."""


def validation_tile(device):
    """The ``tile`` of ``tiling.upscale_image`` for a model on ``device``:
    :data:`VALIDATION_TILE` on CUDA, None (whole images) on the CPU."""
    return VALIDATION_TILE if torch.device(device).type == "cuda" else None


def validate(generator, dataset, scale, device="cpu", metrics=("psnr", "ssim")):
    """Mean ``metrics`` (names from :data:`VALIDATION_METRICS`) of ``generator`` over ``dataset``
    (``(lr, hr, name)`` uint8 triples): the per-epoch validation of ``train.py``, through
    :func:`score_dataset` like :func:`evaluate`. Models run as in :class:`SRMethod` (tiled on
    CUDA, whole on the CPU); the generator is put in eval mode and returned to its previous
    mode. NIQE skips images smaller than one 96x96 block (its mean is None when no image is
    large enough). Returns ``{metric: float or None, "images": int}``.
    """
    unknown = set(metrics) - set(VALIDATION_METRICS)
    if unknown:
        raise ValueError(f"unknown validation metric(s) {sorted(unknown)}: "
                         f"use {VALIDATION_METRICS}")
    if len(dataset) == 0:
        raise ValueError("validation set is empty")
    model = unwrap(generator)
    was_training = model.training
    model.eval()
    try:
        scores, _ = score_dataset(SRMethod("validation", scale, model, device), dataset, scale,
                                  metrics)
    finally:
        model.train(was_training)
    return {**mean_scores(scores, metrics), "images": len(dataset)}


def bicubic_validation(cfg, metrics=VALIDATION_METRICS):
    """The bicubic baseline's mean scores on the validation set of ``cfg``
    (``datasets.build_val_set``; its data is built first when missing,
    ``create_data_lists.ensure_data``), keyed as the training log's columns: ``{"val_psnr": dB, "val_ssim": [0, 1], "val_lr_psnr": dB, "val_niqe": float}``
    (None where no image could be scored; ``metrics`` names of :data:`VALIDATION_METRICS`).
    The level a generator must beat, drawn on the training curves (``figures.plot_history``
    ``reference``); computed once (bicubic does not train). ``{}`` without a validation set."""
    create_data_lists.ensure_data(cfg)
    val_set = datasets.build_val_set(cfg)
    if val_set is None:
        return {}
    bicubic = load_method(BICUBIC, scale=cfg.scale)
    scores, _ = score_dataset(bicubic, val_set, cfg.scale, metrics)
    return {f"val_{m}": v for m, v in mean_scores(scores, metrics).items()}


def evaluate(model, data_root, sets, scale=4, device="cpu", progress=True, per_image=False,
             metrics=None, lpips_model=None):
    """Scores of ``model`` on each test set: PSNR/SSIM (Y), PSNR-RGB, LR-PSNR, NIQE, LPIPS.

    Args:
        model: ``'bicubic'``, a checkpoint path, an nn.Module or an :class:`SRMethod`
            (see :func:`load_method`).
        data_root: folder holding the sets (see ``datasets.find_test_set``).
        sets: set name or list of names, e.g. ``['Set5', 'Set14', 'B100', 'Urban100']``.
        scale: upscaling factor; also the number of border pixels shaved.
        device: torch device for a model (and an LPIPS model loaded here).
        progress: show a bar per set (on stderr; plain lines off a terminal, ``progress.py``).
        per_image: also return the per-image scores.
        metrics: names from :data:`METRICS`; None = all that can run here (LPIPS only when its
            weights can be had, NIQE only when ``metrics.niqe`` runs; the others are listed
            under ``"unavailable"`` with the reason). A metric named here that cannot run is an
            error.
        lpips_model: a ``metrics.LPIPS`` to use; None -> AlexNet LPIPS through
            :func:`load_lpips` when LPIPS is wanted.

    Returns:
        ``{set: {"psnr": dB, "ssim": float, "psnr_rgb": dB, "lr_psnr": dB, "niqe": float,
        "lpips": float, "images": int}}`` in the order of ``sets``, with only the metrics
        computed (set means; NIQE/LPIPS over the images large enough). Optional keys per set:
        ``"unavailable": {metric: reason}`` (a metric of ``METRICS`` not computed on this set),
        ``"skipped": {metric: {image name: reason}}`` (images too small for NIQE / LPIPS),
        ``"per_image": [{"name", <metrics>...}, ...]`` with ``per_image=True`` (file-name
        order; None for a skipped image).

    Raises:
        FileNotFoundError: some sets are missing: all are checked before any work starts, and
            one message names every missing set and the paths tried.
        ValueError: an unknown metric, an empty set folder, an unreadable image, an LR/HR size
            mismatch or an SR output of the wrong size (the messages name the file).
        RuntimeError: a metric named in ``metrics`` cannot run here.
        Any error while scoring a set carries ``partial_results`` (the sets completed before)
        and ``failed_set`` (its name) as attributes, so finished work is not lost.
    """
    if isinstance(sets, str):
        sets = [sets]
    check_sets(data_root, sets, scale)
    method = model if isinstance(model, SRMethod) else load_method(model, device, scale)
    if method.scale != scale:
        raise ValueError(f"{method!r} does not match the requested scale x{scale}")
    metrics, lpips_model, unavailable = prepare_metrics(metrics, device, lpips_model)
    results = {}
    for name in sets:
        try:
            results[name] = evaluate_set(method, data_root, name, scale, metrics, lpips_model,
                                         unavailable, progress, per_image)
        except Exception as e:
            e.partial_results, e.failed_set = dict(results), name
            if hasattr(e, "add_note"):   # Python >= 3.11: shown with the traceback
                e.add_note(f"evaluate: failed on test set {name!r}; the sets completed before "
                           f"it ({list(results) or 'none'}) are in its partial_results")
            raise
    return results


# --------------------------------------------------------------------------------------------
# Tables and files
# --------------------------------------------------------------------------------------------

def result_metrics(results):
    """The metrics present in any set of :func:`evaluate` ``results``, in :data:`METRICS` order."""
    return [m for m in METRICS if any(m in r for r in results.values())]


def format_table(results, title="Method"):
    """Markdown table of :func:`evaluate` results: one row per set, a column per metric
    computed (header with the better direction: ``PSNR (dB) ↑``, ``NIQE ↓`` ...).
    ``title`` prefixes the metric headers (e.g. the method name)."""
    metrics = result_metrics(results)
    prefix = f"{title} " if title else ""
    header = ["Set", "Images"] + [prefix + tables.metric_header(m) for m in metrics]
    rows = [[name, r["images"]] + [tables.format_value(m, r.get(m)) for m in metrics]
            for name, r in results.items()]
    return tables.markdown_table(header, rows, right=range(1, len(header))).rstrip("\n")


def result_notes(results, prefix=""):
    """Lines naming what :func:`evaluate` ``results`` lack: metrics unavailable (with the
    reason, once per distinct reason) and images skipped by NIQE / LPIPS (with the reason, e.g.
    too small for NIQE's two 96x96 blocks); ``prefix`` goes before the latter (e.g. a method)."""
    notes, seen = [], set()
    for name, r in results.items():
        for m, reason in r.get("unavailable", {}).items():
            if (m, reason) not in seen:
                seen.add((m, reason))
                notes.append(f"{METRICS[m].label} not computed: {reason}")
        for m, images in r.get("skipped", {}).items():
            if m in r:   # otherwise "unavailable" already says it
                left_out = "; ".join(f"{image} ({reason})" for image, reason in images.items())
                notes.append(f"{prefix}{METRICS[m].label} on {name}: {len(images)} image(s) "
                             f"left out of the mean: {left_out}")
    return notes


def write_json(path, payload):
    """Write ``payload`` as indented JSON to ``path`` atomically (parent folders created)."""
    with utils.atomic_write(path, "w") as f:
        json.dump(payload, f, indent=2)
        f.write("\n")



# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def parse_args(argv=None):
    cfg = get_config()
    p = cli.tool_parser(__doc__)
    p.add_argument("--model", default=BICUBIC,
                   help=f"'{BICUBIC}' or a checkpoint path (default: {BICUBIC})")
    p.add_argument("--data-root", default=cfg.data.benchmark_root,
                   help="folder holding <Set>/HR and <Set>/LR_bicubic/X<scale> "
                        "(default: config data.benchmark_root = %(default)s)")
    p.add_argument("--sets", nargs="+", default=list(cfg.data.test_sets),
                   help="test set names (default: %(default)s)")
    p.add_argument("--scale", type=int, default=cfg.scale, help="upscaling factor (default: 4)")
    p.add_argument("--metrics", nargs="+", choices=METRICS, default=None, metavar="METRIC",
                   help=f"metrics to compute, from {' '.join(METRICS)} (default: all that can "
                        "run here; a metric named here that cannot run is an error)")
    p.add_argument("--lpips-net", choices=pretrained.LPIPS_NETS, default=LPIPS_DEFAULT_NET,
                   help="LPIPS backbone (default: %(default)s)")
    cli.add_path_option(p, "--lpips-weights",
                        help="LPIPS v0.1 linear-layer file (alex.pth / vgg.pth of the release); "
                             "default: through the torch.hub cache")
    cli.add_path_option(p, "--lpips-backbone",
                        help="torchvision backbone file (alexnet-owt-7be5be79.pth / "
                             "vgg16-397923af.pth); default: through the torch.hub cache")
    cli.add_path_option(p, "--json", help="also write the results to this file")
    p.add_argument("--per-image", action="store_true", help="per-image scores in the JSON")
    args = cli.add_common_options(p, device="cpu").parse_args(argv)
    if args.scale < 2:
        p.error(f"--scale must be an integer >= 2 (the models are x4), got {args.scale}")
    return args


def _error(exc):
    """One line for ``exc`` (the traceback under ``--debug``, see ``cli.fail``)."""
    return cli.fail("evaluate.py", exc)


def main(argv=None):
    args = parse_args(argv)
    try:
        device = cli.device_setting(resolve_device, args.device)
    except ValueError as e:  # not a device, or CUDA asked for but not available
        return _error(e)
    try:
        found = check_sets(args.data_root, args.sets, args.scale)   # before any work
        if args.json is not None:   # never over an input, an image or a checkpoint
            folders = [d for pair in found.values() for d in pair if d is not None]
            cli.check_output_file(args.json, "--json", inputs=[args.model, *folders],
                                  replaceable=cli.is_json_file, kind="JSON results")
        method = load_method(args.model, device, args.scale)
        metrics, lpips_model, unavailable = prepare_metrics(
            args.metrics, device, lpips_net=args.lpips_net, lpips_backbone=args.lpips_backbone,
            lpips_weights=args.lpips_weights)
    except (OSError, ValueError, RuntimeError) as e:  # missing sets/files, bad checkpoints
        return _error(e)
    results, failed = {}, {}
    for name in args.sets:   # a failing set is reported; the others are still scored
        try:
            results[name] = evaluate_set(method, args.data_root, name, args.scale, metrics,
                                         lpips_model, unavailable, not args.quiet, args.per_image)
        except (OSError, ValueError, RuntimeError) as e:
            if cli.debugging():            # the traceback, and the other sets still scored
                traceback.print_exc()
            failed[name] = f"{type(e).__name__}: {cli.one_line(e)}"
    print(f"x{args.scale}, model {args.model}; PSNR/SSIM on Y, {args.scale} px shaved; "
          f"LR-PSNR on the whole image\n")
    if results:
        print(format_table(results, title=method.name))
    for note in result_notes(results):
        print(f"- {note}")
    if args.json is not None and not results:   # nothing scored: an existing file is kept
        print(f"\nnothing scored: {args.json} not written")
    elif args.json is not None:
        write_json(args.json, {"model": str(args.model), "scale": args.scale,
                               "data_root": str(args.data_root), "metrics": list(metrics),
                               "unavailable": unavailable, "results": results,
                               "failed": failed})
        print(f"\nwrote {args.json}")
    for name, message in failed.items():
        print(f"evaluate.py: error: test set {name} not scored: {message}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(cli.run("evaluate.py", main))
