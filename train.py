"""Train a generator (stage 1: SRResNet or a baseline, pixel loss) and SRGAN (stage 2) from a
config preset; resumable, one process or several (``torchrun``).

Usage (from the project root)::

    python train.py --config demo --out runs/demo         # the demo: SRResNet + SRGAN on the CPU
    python train.py --config paper --out runs/paper        # both stages of the paper (GPU)
    python train.py --config paper --variant srgan-vgg22 --out runs/paper   # a Table-1 network
    python train.py --arch fsrcnn --out runs/fsrcnn        # a baseline with its paper's recipe
    python train.py --config paper --out runs/paper --stage srgan --resume
    torchrun --nproc_per_node=4 train.py --config paper --out runs/paper

Stage 1 writes ``OUT/<arch>.pth`` (``srresnet.pth``, ``fsrcnn.pth`` ...), stage 2 ``OUT/srgan.pth``
(or its variant's name), each with ``<name>_log.csv`` and ``<name>_best.pth``; at the end a
table of bicubic and the trained models on ``cfg.train.eval_sets``. The README ("Train",
"Several GPUs", "Faults") says what a run guarantees; a training step is followed from
:func:`run_stage` to ``solver.pixel_step`` / ``solver.discriminator_step`` and
``solver.generator_step``. The notebooks call :func:`build_config` and :func:`run_stage`.
"""
import argparse
import contextlib
import csv
import difflib
import math
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

import checkpoint
import cli
import create_data_lists
import datasets
import distributed
import evaluate
import losses
import models
import pretrained
import runtime
import solver
import super_resolve
import tables
import utils
from metrics import METRICS
from progress import write_line
from report import find_sets
from config import (ARCH_PRESETS, PRESETS, SHARED_VGG, VARIANTS, apply_overrides, get_config,
                    validate_config)

STAGES = ("srresnet", "srgan")
"""Stage names: 'srresnet' = stage 1 (pixel loss, any generator arch), 'srgan' = stage 2."""

RANK_SEED_OFFSET = datasets.RANK_SEED_OFFSET
"""Rank r draws its patches with seed ``cfg.seed + epoch + r * RANK_SEED_OFFSET`` (more than
any number of epochs, so no two (rank, epoch) pairs share a seed; rank 0 = single process);
its DataLoader workers likewise (``datasets.make_train_loader``)."""

TENSORBOARD_IMAGES = 3
"""Validation images shown per epoch in TensorBoard (``train.tensorboard``): LR input (nearest
enlarged), SR and HR side by side, the first images of the validation set."""

AVERAGED_METRICS = ("content_loss", "adv_loss", "d_loss", "d_real", "d_fake")
"""Epoch metrics averaged over the ranks of a multi-process run before they are logged."""

LOG_COLUMNS = ("epoch", "step", "content_loss", "adv_loss", "d_loss", "d_real", "d_fake",
               "val_psnr", "val_ssim", "val_lr_psnr", "val_niqe", "lr", "it_per_s", "epoch_s",
               "time_s")
"""Columns of ``<name>_log.csv`` (missing values are left empty, e.g. D columns in stage 1)."""

STAGE_VALIDATION = {"srresnet": ("psnr", "ssim"), "srgan": evaluate.VALIDATION_METRICS}
"""What each stage validates per epoch (``evaluate.validate``): stage 2 also LR-PSNR and NIQE,
since its point is perceptual quality, which PSNR does not measure."""


# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------

def build_config(preset="paper", *, epochs=None, device=None, arch=None, overrides=(),
                 stages=STAGES, variant=None):
    """The config of a run: preset ``preset``, then the paper variant ``variant`` (a key of
    ``config.VARIANTS``), then ``overrides`` (``KEY=VALUE``), then the shortcuts ``epochs`` (of
    the stages in ``stages``), ``device`` and ``arch``."""
    cfg = get_config(preset)
    if variant is not None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; choose one of {sorted(VARIANTS)}")
        apply_overrides(cfg, VARIANTS[variant])
    apply_overrides(cfg, overrides)
    if epochs is not None:
        for stage in stages:
            stage_config(cfg, stage).epochs = int(epochs)
    if device is not None:
        cfg.train.device = device
    if arch is not None:
        cfg.generator.arch = arch
    return validate_config(cfg)   # every numeric setting in its documented range (one line)


def stage_config(cfg, stage):
    """The config section of ``stage``: ``cfg.stage1`` ('srresnet') or ``cfg.stage2`` ('srgan')."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {STAGES}")
    return cfg.stage1 if stage == "srresnet" else cfg.stage2


def checkpoint_name(cfg, stage):
    """File stem of a stage's checkpoint: the generator arch for stage 1, 'srgan' for stage 2."""
    return cfg.generator.arch if stage == "srresnet" else stage_config(cfg, stage).name


def generator_kwargs(cfg):
    """Keyword arguments of ``models.build_generator`` for ``cfg.generator.arch``.

    SRResNet takes ``n_blocks`` / ``n_channels`` / ``batch_norm`` / ``upsample`` / ``bicubic_skip`` from ``cfg.generator``; the other archs take
    the dict ``cfg.generator.<arch>`` when the config has one (else their defaults).
    """
    arch = cfg.generator.arch
    if arch == "srresnet":
        return {"n_blocks": int(cfg.generator.n_blocks), "n_channels": int(cfg.generator.n_channels),
                "batch_norm": bool(cfg.generator.get("batch_norm", True)),
                "upsample": str(cfg.generator.get("upsample", "pixel_shuffle")),
                "bicubic_skip": bool(cfg.generator.get("bicubic_skip", False))}
    return dict(cfg.generator.get(arch) or {})


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------

def list_path(cfg, name):
    """Path of the JSON data list ``name`` in ``cfg.data.lists_dir``."""
    return Path(cfg.data.lists_dir) / f"{name}.json"


CLASSIC_TRAIN_SETS = {
    "T91": (("train_sets_root", "T91"),),
    "T91_BSD200": (("train_sets_root", "T91"), ("train_sets_root", "BSD200")),
    "reference_train": (("train_sets_root", "T91"), ("train_sets_root", "BSD200"),
                        ("train_samples_root", "DIV2K/DIV2K_train_HR"),
                        ("train_samples_root", "Flickr2K/Flickr2K_HR")),
}
"""The training lists built on first use, each as ``(cfg.data key of a root, folder under it)``
pairs: T91 (SRCNN, FSRCNN), T91 + BSD200 (VDSR's "291" images), and reference_train (the 291
plus the DIV2K / Flickr2K samples: the reference models' data)."""


def ensure_data(cfg):
    """Make sure the training list exists; the demo dataset (``demo_*`` lists, for training or
    validation) is built here from the scikit-image photos when missing, the lists of
    :data:`CLASSIC_TRAIN_SETS` from their folders when these exist. Other missing lists ->
    FileNotFoundError saying how to make them."""
    demo_lists = [n for n in (cfg.data.train_list, cfg.data.get("val_list"))
                  if n in create_data_lists.DEMO_LISTS and not list_path(cfg, n).is_file()]
    if demo_lists:
        print(f"building the demo dataset in {cfg.data.root} (scikit-image photos) ...", flush=True)
        create_data_lists.build_demo_dataset(root=cfg.data.root, lists_dir=cfg.data.lists_dir,
                                             scale=cfg.scale)
    train_list = list_path(cfg, cfg.data.train_list)
    if train_list.is_file():
        return
    folders = [Path(cfg.data.get(root) or "") / name
               for root, name in CLASSIC_TRAIN_SETS.get(cfg.data.train_list, ())]
    if folders and all(f.is_dir() for f in folders):
        print(f"building the list {cfg.data.train_list} from {', '.join(map(str, folders))} "
              f"(LR by MATLAB-exact imresize) ...", flush=True)
        create_data_lists.list_from_folder([str(f) for f in folders], None, cfg.data.train_list,
                                           cfg.data.lists_dir, cfg.scale)
        return
    known = sorted({p.stem for p in Path(cfg.data.lists_dir).glob("*.json")}
                   | set(create_data_lists.DEMO_LISTS) | set(CLASSIC_TRAIN_SETS))
    near = difflib.get_close_matches(cfg.data.train_list, known, n=1)
    hint = f"did you mean --set data.train_list={near[0]}? Or write" if near else "write"
    raise FileNotFoundError(f"training list {train_list} not found: {hint} it with "
                            f"`python create_data_lists.py` (see its --help), or pick another "
                            f"list with --set data.train_list=NAME")


def build_train_set(cfg, progress=True, patch_size=None):
    """``datasets.TrainDataset`` of the list ``cfg.data.train_list`` with the patch settings
    (HR patches of ``patch_size``, default ``cfg.data.patch_size``)."""
    return datasets.TrainDataset.from_list(
        list_path(cfg, cfg.data.train_list), scale=cfg.scale,
        patch_size=int(patch_size or cfg.data.patch_size),
        patches_per_image=cfg.data.patches_per_image, augment=cfg.data.augment,
        cache_dir=cfg.data.get("cache_dir"), progress=progress,
        skip_small=bool(cfg.data.get("skip_small", False)))


def build_val_set(cfg):
    """The validation ``datasets.TestDataset``: the list ``cfg.data.val_list``, else that set in
    ``cfg.data.benchmark_root``; None when validation is switched off (``data.val_list=None``).
    A configured set that exists nowhere is an error (FileNotFoundError saying how to make it or
    switch validation off), not a whole run without validation."""
    name = cfg.data.get("val_list")
    if not name:
        return None
    path = list_path(cfg, name)
    if path.is_file():
        return datasets.TestDataset.from_list(path)
    try:
        hr_dir, lr_dir = datasets.find_test_set(cfg.data.benchmark_root, name, cfg.scale)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"data.val_list: validation set {name!r} not found (no list {path}, nothing in "
            f"data.benchmark_root={cfg.data.benchmark_root}): make it with "
            f"`python create_data_lists.py`, or train without validation with "
            f"--set data.val_list=None") from None
    return datasets.TestDataset(hr_dir, lr_dir, cfg.scale)


def bicubic_validation(cfg, metrics=evaluate.VALIDATION_METRICS):
    """The bicubic baseline's mean scores on the validation set of ``cfg`` (:func:`build_val_set`;
    its data is built first when missing, :func:`ensure_data`), keyed as the training log's
    columns: ``{"val_psnr": dB, "val_ssim": [0, 1], "val_lr_psnr": dB, "val_niqe": float}``
    (None where no image could be scored; ``metrics`` names of ``evaluate.VALIDATION_METRICS``).
    The level a generator must beat, drawn on the training curves (``report.plot_history``
    ``reference``); computed once (bicubic does not train). ``{}`` without a validation set."""
    ensure_data(cfg)
    val_set = build_val_set(cfg)
    if val_set is None:
        return {}
    bicubic = evaluate.load_method(evaluate.BICUBIC, scale=cfg.scale)
    scores, _ = evaluate.score_dataset(bicubic, val_set, cfg.scale, metrics)
    return {f"val_{m}": v for m, v in evaluate.mean_scores(scores, metrics).items()}


# ----------------------------------------------------------------------------------------------
# Logs
# ----------------------------------------------------------------------------------------------

def write_log(path, history):
    """Write ``history`` (list of per-epoch dicts) as CSV with ``LOG_COLUMNS``, atomically
    (``utils.atomic_write``: fsynced, a failed write leaves the previous log)."""
    with utils.atomic_write(path, "w", what="log", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in history:
            writer.writerow({k: _fmt(row.get(k)) for k in LOG_COLUMNS})


def _fmt(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


# ----------------------------------------------------------------------------------------------
# One stage
# ----------------------------------------------------------------------------------------------

def _init_generator_from(generator, path, arch, scale):
    """Stage 2 starts from the generator of a checkpoint of this project (read like
    ``checkpoint.load_generator`` reads it: its EMA weights when it has them)."""
    ckpt = checkpoint.load_checkpoint(path)
    if ckpt["arch"] != arch or ckpt["scale"] != scale:
        raise ValueError(f"{path} holds a x{ckpt['scale']} {ckpt['arch']!r} generator, but this "
                         f"run trains a x{scale} {arch!r}")
    try:
        generator.load_state_dict(checkpoint.generator_state(ckpt, path))
    except RuntimeError as e:
        raise ValueError(f"{path}: its generator does not fit the configured one "
                         f"(cfg.generator): {e}") from e


def vgg_content_loss(cfg):
    """The VGG content loss phi_{i,j} of ``cfg.vgg`` (``losses.VGGLoss``), or None with the
    reason when no VGG19 weights covering phi_{i,j} can be had.

    Weights are looked for in this order: ``cfg.vgg.weights`` (a file, or 'random' for tests),
    the official file in the torch.hub cache, the shared VGG19 slice (``config.SHARED_VGG``,
    conv1_1..conv3_1: enough for VGG22), then the official URL (a download when online).
    """
    if cfg.vgg.weights is not None:
        candidates = [cfg.vgg.weights]
    else:
        cached = pretrained.vgg19_hub_cache_file()
        candidates = [p for p in (cached, SHARED_VGG) if Path(p).is_file()] + [None]
    reasons = []
    for weights in candidates:
        try:
            vgg = pretrained.vgg19(cfg.vgg.i, cfg.vgg.j, weights=weights)
        except (OSError, RuntimeError, ValueError) as e:
            reasons.append(str(e).splitlines()[0])
            continue
        return losses.VGGLoss(vgg, cfg.vgg.feature_scale), None
    return None, "; ".join(reasons)


def content_loss_of(cfg, stage, y_only=False):
    """The content loss of a stage: ``losses.ContentLoss`` of its terms.

    Stage 1: ``cfg.stage1.loss`` ('mse', 'l1', or 'vgg' for SRResNet-VGG). Stage 2: the main
    term ``cfg.stage2.content_loss`` -- 'vgg' (phi_{i,j}) or 'mse' (SRGAN-MSE, x
    ``mse_range_factor`` for the paper's [-1,1] range) -- plus ``pixel_weight`` x the pixel loss
    ``pixel_loss`` and ``lr_consistency_weight`` x ``losses.LRConsistencyLoss`` when > 0. A VGG
    loss whose weights cannot be had falls back to the MSE loss with a one-line note when
    ``cfg.vgg.weights`` is None, and is an error when a file was named.
    """
    scfg = stage_config(cfg, stage)
    kind = scfg.loss if stage == "srresnet" else scfg.content_loss
    if kind == "vgg":
        vgg_loss, why = vgg_content_loss(cfg)
        if vgg_loss is None and cfg.vgg.weights is not None:
            raise ValueError(f"vgg.weights={cfg.vgg.weights}: {why}")
        if vgg_loss is None:
            print(f"note: no VGG19 weights for phi_{cfg.vgg.i},{cfg.vgg.j} ({why}); stage "
                  f"{stage} uses the MSE content loss instead", flush=True)
            kind = "mse"
    if kind == "vgg":
        terms = [(1.0, vgg_loss)]
    else:
        factor = scfg.get("mse_range_factor", 1.0) if stage == "srgan" and kind == "mse" else 1.0
        terms = [(factor, losses.PixelLoss(kind, y_only))]
    if stage == "srgan" and scfg.get("pixel_weight", 0) > 0:
        terms.append((scfg.pixel_weight, losses.PixelLoss(scfg.pixel_loss, y_only)))
    if stage == "srgan" and scfg.get("lr_consistency_weight", 0) > 0:
        terms.append((scfg.lr_consistency_weight,
                       losses.LRConsistencyLoss(cfg.scale, scfg.pixel_loss)))
    return losses.ContentLoss(terms)


def build_networks(cfg, stage, device, init=None):
    """The networks of a stage on ``device``: ``(generator, discriminator, content_loss)``.

    Stage 1: ``discriminator`` is None. Stage 2: the paper's discriminator (sizes of
    ``cfg.discriminator``); the generator starts from the stage-1 checkpoint ``init`` when
    given. ``content_loss`` from :func:`content_loss_of`. Seeds torch with ``cfg.seed`` first,
    so the initial weights are the same in every run.
    """
    runtime.seed_everything(cfg.seed)
    channels_last = bool(cfg.train.channels_last)
    generator = models.build_generator(cfg.generator.arch, scale=cfg.scale, **generator_kwargs(cfg))
    if init is not None:
        _init_generator_from(generator, init, cfg.generator.arch, cfg.scale)
    discriminator = None
    if stage == "srgan":
        d = cfg.discriminator
        discriminator = runtime.prepare_model(models.Discriminator(d.n_channels, d.n_blocks, d.fc_size),
                                             device, channels_last)
    # the VGG19 weights (548 MB) are downloaded by rank 0 alone; the others then read its cache
    content_loss = distributed.first_ranks_then_others(
        lambda: content_loss_of(cfg, stage, generator.y_only),
        "rank 0 failed while loading the VGG19 weights", distributed.is_main_process(),
        others_too=True)
    return (runtime.prepare_model(generator, device, channels_last), discriminator,
            runtime.prepare_model(content_loss, device, channels_last))


def make_optimizer(model, scfg, **changes):
    """The optimiser a stage config ``scfg`` describes (``solver.make_optimizer``): Adam, or
    momentum SGD with weight decay and a separate lr for the last layer (the baselines'
    recipes); ``changes`` override single settings."""
    settings = dict(kind=scfg.get("optimizer", "adam"), lr=scfg.lr,
                    betas=tuple(scfg.get("betas", (0.9, 0.999))),
                    momentum=scfg.get("momentum", 0.9), weight_decay=scfg.get("weight_decay", 0.0),
                    last_layer_lr_scale=scfg.get("last_layer_lr_scale", 1.0))
    settings.update(changes)
    return solver.make_optimizer(model, **settings)


def lr_schedule(scfg):
    """The lr schedule of a stage config as a plain dict (stored in checkpoints) and its
    ``lr_fn(progress) -> lr`` (see ``solver.make_lr_fn``)."""
    schedule = {"schedule": scfg.lr_schedule, "base_lr": scfg.lr,
                "decay_at": scfg.get("lr_decay_at", 0.5),
                "decay_factor": scfg.get("lr_decay_factor", 0.1), "min_lr": scfg.get("lr_min", 0.0)}
    lr_fn = solver.make_lr_fn(schedule["base_lr"], schedule["schedule"], schedule["decay_at"],
                              schedule["decay_factor"], schedule["min_lr"])
    return schedule, lr_fn


def check_train_options(cfg, world, device):
    """Refuse combinations of ``cfg.train`` that cannot work: SyncBatchNorm off CUDA, and
    ``compile`` with ``sync_bn`` (torch.compile breaks its graph at every SyncBatchNorm, about
    35 in SRResNet: slower than not compiling). Returns ``sync_bn`` as used (only with > 1 rank)."""
    sync_bn = bool(cfg.train.get("sync_bn")) and world > 1
    if sync_bn and device.type != "cuda":
        raise ValueError("train.sync_bn=True needs CUDA: SyncBatchNorm does not run on the CPU")
    if sync_bn and cfg.train.compile:
        raise ValueError("train.compile=True with train.sync_bn=True: torch.compile breaks the graph "
                         "at every SyncBatchNorm layer (about 35 in SRResNet), which is slower than "
                         "not compiling; turn one of them off")
    return sync_bn


def tensorboard_writer(log_dir):
    """A ``torch.utils.tensorboard.SummaryWriter`` writing to ``log_dir`` (``train.tensorboard``);
    RuntimeError saying how to install the ``tensorboard`` package when it is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        raise RuntimeError(f"train.tensorboard=True needs the tensorboard package: "
                           f"`{sys.executable} -m pip install tensorboard` (or set "
                           f"train.tensorboard=False; the CSV log is written either way)") from e
    return SummaryWriter(log_dir=str(log_dir))


def run_stage(cfg, stage, out_dir, resume=False, progress=True):
    """Train one stage and return its history (list of per-epoch metric dicts).

    ``stage`` is 'srresnet' (stage 1: ``cfg.generator.arch`` with the loss of ``cfg.stage1``) or
    'srgan' (stage 2: adversarial training from ``OUT/<arch>.pth`` or ``cfg.stage2.init``).
    Writes ``out_dir/<name>.pth`` after every ``checkpoint_every`` epochs and at the end,
    ``out_dir/<name>_log.csv`` every epoch, and ``<name>_best.pth``: in stage 1 the epoch of
    the best validation PSNR; in stage 2 the epoch of the lowest validation NIQE among those
    whose LR-PSNR stays within ``stage2.best_lr_psnr_margin`` dB of the starting generator's
    (validated before the first step and logged as epoch 0).

    The stage ends after ``epochs`` epochs or when its time budget (``time_budget_s`` of the
    stage, else ``cfg.train.time_budget_s``) is spent (the lr schedule is laid over whichever
    comes first; see ``solver.RunClock``). ``resume`` continues from ``out_dir/<name>.pth``;
    without it an existing checkpoint is an error (nothing is overwritten). Raises
    FloatingPointError (from ``solver``) on a non-finite loss, with the previous checkpoint
    left intact.

    Inside a process group (``torchrun``, see the module docstring) every rank calls this; the
    models are trained with DistributedDataParallel, ``batch_size`` is the global batch, and
    rank 0 alone validates and writes files. ``progress`` bars are shown by rank 0 only.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"--out {out_dir} is a file: the output must be a folder "
                                 f"(it is created when missing)")
    # one run per folder: a second train.py (or a --resume typed beside a live run) is refused
    # before it reads, deletes or writes anything there
    lock = (utils.folder_lock(out_dir, "training run") if distributed.is_main_process()
            else contextlib.nullcontext())
    with lock:
        run = _set_up(cfg, stage, out_dir, resume, progress)
        if stage == "srgan" and not run.history:
            distributed.main_rank_first(lambda: _validate_start(run),
                                        "validating the starting generator")
        run.clock.start()      # after validating the start: a time budget is training time
        for epoch in range(run.start_epoch, run.scfg.epochs + 1):
            if run.clock.finished():
                break
            epoch_start = time.perf_counter()
            metrics = _train_epoch(run, epoch)
            row = {"epoch": epoch, "step": run.clock.step, **metrics}
            finished = run.clock.finished() or epoch == run.scfg.epochs
            distributed.main_rank_first(lambda: _end_of_epoch(run, row, finished, epoch_start),
                                        f"validating or saving epoch {epoch}")
            if not run.is_main:
                run.history.append(row)  # (without validation scores: rank 0 keeps the full log)
        if run.is_main and run.clock.stopped_by_budget():
            print(run.clock.budget_note(run.name), flush=True)
        if run.tensorboard is not None:
            run.tensorboard.close()
    return run.history


def _check_resume(ckpt_path, resume, name, arch, run_files, arch_kwargs=None):
    """The checkpoint to resume (or None); refuses to overwrite a finished run without
    ``resume``, refuses a checkpoint whose generator settings differ from ``arch_kwargs`` (the
    run's ``cfg.generator``: naming the settings that differ) and removes the temp files of a
    killed run."""
    if ckpt_path.exists() and not resume:
        raise FileExistsError(f"{ckpt_path} exists: pass --resume (resume=True) to continue it, "
                              f"or choose another output folder")
    ckpt = checkpoint.load_checkpoint(ckpt_path) if resume and ckpt_path.exists() else None
    if resume and ckpt is None:
        print(f"no checkpoint {ckpt_path} to resume: starting {name} from scratch", flush=True)
    if resume and distributed.is_main_process():       # half-written files of a killed run
        for path in run_files:
            for tmp in utils.remove_stale_temp_files(path):
                print(f"removed {tmp}: an incomplete write of an interrupted run", flush=True)
    if ckpt is not None and (ckpt["arch"] != arch or ckpt["stage"] != name):
        raise ValueError(f"{ckpt_path} is a {ckpt['stage']!r} checkpoint of "
                         f"{ckpt['arch']!r}, not {name!r} of {arch!r}")
    saved = dict(ckpt.get("arch_kwargs") or {}) if ckpt is not None else None
    if saved is not None and arch_kwargs is not None:
        differ = {k: (saved.get(k), v) for k, v in arch_kwargs.items()   # as stored: lists
                  if k in saved and saved[k] != checkpoint.to_plain(v)}
        if differ:
            what = ", ".join(f"generator.{k}: checkpoint {a!r}, this run {b!r}"
                             for k, (a, b) in differ.items())
            raise ValueError(f"{ckpt_path} was trained with other generator settings ({what}): "
                             f"resume with the preset and --set options it was made with, or "
                             f"choose another --out")
    return ckpt


def _set_up(cfg, stage, out_dir, resume, progress):
    """Everything a stage needs, as one namespace: config, files, networks, optimisers, data,
    clock, history (restored from the checkpoint when resuming)."""
    world, is_main = distributed.world_size(), distributed.is_main_process()
    scfg = stage_config(cfg, stage)
    out_dir.mkdir(parents=True, exist_ok=True)
    name, arch = checkpoint_name(cfg, stage), cfg.generator.arch
    run = SimpleNamespace(cfg=cfg, stage=stage, scfg=scfg, name=name, arch=arch, world=world,
                          is_main=is_main, progress=progress and is_main,
                          ckpt_path=out_dir / f"{name}.pth", best_path=out_dir / f"{name}_best.pth",
                          log_path=out_dir / f"{name}_log.csv")
    ckpt = _check_resume(run.ckpt_path, resume, name, arch,
                               (run.ckpt_path, run.best_path, run.log_path), generator_kwargs(cfg))
    init = None
    if stage == "srgan" and ckpt is None:
        init = Path(scfg.get("init") or out_dir / f"{arch}.pth")
        if not init.is_file():
            raise FileNotFoundError(f"stage 'srgan' starts from a trained generator, but {init} "
                                    f"does not exist: run --stage srresnet first, or set "
                                    f"--set stage2.init=PATH")

    run.device = distributed.rank_device(cfg.train.device)
    sync_bn = check_train_options(cfg, world, run.device)
    run.amp = runtime.resolve_amp(cfg.train.amp, run.device)
    run.sync_every = int(cfg.train.get("sync_every", solver.SYNC_EVERY))
    if scfg.batch_size % world:
        raise ValueError(f"{stage} batch_size {scfg.batch_size} is the global batch and must be "
                         f"divisible by the {world} processes of the run")
    run.rank_batch = scfg.batch_size // world
    _build_training(run, init)
    _build_data(run)
    run.d_steps = int(scfg.get("d_steps", 1)) if stage == "srgan" else 1
    batches = (len(run.train_set) // world) // run.rank_batch   # = len // batch_size on one process
    if batches < 1:
        raise ValueError(f"the training set has {len(run.train_set)} patches, fewer than one batch "
                         f"of {scfg.batch_size}: raise data.patches_per_image or lower the batch size")
    if batches // run.d_steps < 1:
        raise ValueError(f"setting stage2.d_steps={run.d_steps}: an epoch has only {batches} "
                         f"batches, so no generator step would run; lower d_steps or raise "
                         f"data.patches_per_image")
    run.budget = scfg.get("time_budget_s") or cfg.train.get("time_budget_s")
    run.clock = solver.RunClock(scfg.epochs * (batches // run.d_steps), run.budget,
                                share_every=run.sync_every)
    run.history, run.start_epoch = [], 1
    if ckpt is not None:
        _restore(run, ckpt)
    run.batches = batches
    if is_main:
        run.clock.on_estimate = lambda clock, rate: write_line(_estimate_line(run, clock, rate))

    run.model, run.critic = run.generator, run.discriminator  # what trains (DDP-wrapped if needed)
    if world > 1:
        run.model = distributed.wrap_ddp(run.generator, run.device, sync_bn)
        if run.discriminator is not None:
            run.critic = distributed.wrap_ddp(run.discriminator, run.device, sync_bn)
    if cfg.train.compile:
        run.model = torch.compile(run.model)
        run.critic = torch.compile(run.critic) if run.critic is not None else None
    run.tensorboard = (tensorboard_writer(out_dir / "tensorboard" / name)
                       if is_main and cfg.train.get("tensorboard") else None)
    return run


def _build_training(run, init):
    """The stage's networks (G from ``init`` when given), optimisers, fp16 scalers, EMA and lr
    schedule, onto ``run``."""
    cfg, scfg = run.cfg, run.scfg
    run.generator, run.discriminator, run.content_loss = build_networks(cfg, run.stage, run.device,
                                                                        init)
    run.optimizer_g = make_optimizer(run.generator, scfg)
    run.optimizer_d = (make_optimizer(run.discriminator, scfg, last_layer_lr_scale=1.0)
                       if run.discriminator is not None else None)
    run.scaler_g = runtime.make_grad_scaler(run.amp, run.device)        # fp16: one per optimiser
    run.scaler_d = (runtime.make_grad_scaler(run.amp, run.device)
                    if run.discriminator is not None else None)
    ema_decay = scfg.get("ema_decay") if run.stage == "srgan" else None
    run.ema = solver.GeneratorEMA(run.generator, ema_decay) if ema_decay is not None else None
    run.schedule, run.lr_fn = lr_schedule(scfg)


def _build_data(run):
    """The stage's training set (decoded by the first rank of each node first, which fills
    ``data.cache_dir`` for the others), validation set (rank 0) and, with workers, its loader."""
    cfg = run.cfg
    distributed.main_rank_first(lambda: ensure_data(cfg), "preparing the data")
    patch = run.scfg.get("patch_size")
    run.train_set = distributed.local_main_first(
        lambda: build_train_set(cfg, run.progress, patch), "decoding the data")
    run.val_set = build_val_set(cfg) if run.is_main else None
    run.loader = (datasets.make_stage_loader(run.train_set, run.rank_batch, cfg.data.workers,
                                             distributed=run.world > 1,
                                             pin_memory=run.device.type == "cuda")
                  if cfg.data.workers > 0 else None)


def _estimate_line(run, clock, rate):
    """The time a stage will take on this machine, from the speed of its first steps, and how
    to shorten it (printed once, near the start of a stage)."""
    key = "stage1" if run.stage == "srresnet" else "stage2"
    left = clock.total_steps - clock.step
    line = (f"{run.name}: {left:,} of {clock.total_steps:,} steps to go at {rate:.2f} steps/s "
            f"(measured over {solver.ESTIMATE_STEPS} steps here) -> about "
            f"{_duration(left / rate)} of training, validation not included")
    if run.budget:
        stop = min(clock.total_steps, clock.step + int(rate * max(0.0, run.budget - clock.elapsed_s)))
        if stop < clock.total_steps:
            line += (f"; its time budget ({run.budget:.0f} s) will stop it near step {stop:,} "
                     f"({100 * stop / clock.total_steps:.0f}%), with the lr schedule laid over "
                     f"the budget")
    steps_per_epoch = run.batches // run.d_steps
    return line + (f". Shorter: --set {key}.epochs=N ({steps_per_epoch:,} steps each) or a time "
                   f"budget --set {key}.time_budget_s=SECONDS (README, 'Time budgets')")


def _duration(seconds):
    """``seconds`` as "42 s", "12 min" or "3 h 05 min"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def _restore(run, ckpt):
    """Continue from the checkpoint dict ``ckpt``: weights, optimisers, EMA, history, clock and RNG states."""
    run.generator.load_state_dict(ckpt["generator"])
    run.optimizer_g.load_state_dict(ckpt["optimizer_g"])
    if run.discriminator is not None:
        run.discriminator.load_state_dict(ckpt["discriminator"])
        run.optimizer_d.load_state_dict(ckpt["optimizer_d"])
    if run.ema is not None:
        run.ema.load_state_dict(ckpt.get("generator_ema") or ckpt["generator"])
    for key in ("scaler_g", "scaler_d"):      # fp16 loss scales (absent: a run without fp16)
        scaler = getattr(run, key)
        if scaler is not None and ckpt.get(key):
            scaler.load_state_dict(ckpt[key])
    run.history = list(ckpt["history"])
    run.start_epoch = ckpt["epoch"] + 1
    run.clock = solver.RunClock.from_state_dict(ckpt["clock"], run.clock.total_steps,
                                                run.budget, run.sync_every)
    runtime.set_rng_state(ckpt["rng"], run.device)
    print(f"resuming {run.name} from {run.ckpt_path}: epoch {ckpt['epoch']} done, "
          f"step {run.clock.step}", flush=True)


def _train_epoch(run, epoch):
    """One epoch of the stage (``solver.train_epoch_mse`` or ``train_epoch_gan``), with
    ``cudnn.benchmark`` on for its fixed patch size (CUDA); returns its metrics averaged over
    the ranks."""
    cfg, scfg = run.cfg, run.scfg
    # The data of an epoch depends only on (seed, epoch): the loader's shuffling generator
    # and the patch RNG of datasets.TrainDataset (seeded from torch.initial_seed() in the
    # main process, from the loader's worker seeds otherwise).
    crop_seed = cfg.seed + epoch + distributed.rank() * RANK_SEED_OFFSET
    torch.manual_seed(crop_seed)
    if run.loader is not None:          # workers: one loader (and its workers) for the stage
        loader = datasets.start_epoch(run.loader, cfg.seed + epoch, crop_seed, epoch)
    else:                               # no workers to keep: a loader per epoch, as always
        loader = datasets.make_train_loader(run.train_set, run.rank_batch, cfg.data.workers,
                                            cfg.seed + epoch, distributed=run.world > 1,
                                            pin_memory=run.device.type == "cuda")
        if run.world > 1:
            loader.sampler.set_epoch(epoch)
    common = dict(clock=run.clock, lr_fn=run.lr_fn, amp=run.amp,
                  channels_last=bool(cfg.train.channels_last), stage=run.name, epoch=epoch,
                  progress=run.progress, sync_every=run.sync_every)
    with runtime.cudnn_benchmark(run.device.type == "cuda"):
        if run.stage == "srresnet":
            metrics = solver.train_epoch_mse(run.model, loader, run.optimizer_g, run.content_loss,
                                             run.device, scaler=run.scaler_g,
                                             clip_theta=scfg.get("grad_clip_theta"),
                                             clip_mode=scfg.get("grad_clip_mode", "norm"), **common)
        else:
            metrics = solver.train_epoch_gan(
                run.model, run.critic, loader, run.optimizer_g, run.optimizer_d, run.content_loss,
                run.device, adv_weight=scfg.adv_weight, d_steps=run.d_steps,
                d_lr_scale=scfg.get("d_lr_scale", 1.0), ema=run.ema,
                collapse_fake=scfg.get("collapse_fake"), collapse_real=scfg.get("collapse_real"),
                scaler_g=run.scaler_g, scaler_d=run.scaler_d, **common)
    distributed.all_reduce_mean(metrics, AVERAGED_METRICS)
    for net in (run.generator, run.discriminator):         # every rank holds rank 0's BN statistics
        if net is not None:
            distributed.broadcast_buffers(net)
    return metrics


def _inference_generator(run):
    """The generator that is validated and used: the EMA average when the stage keeps one."""
    return run.ema.model if run.ema is not None else run.generator


def _validate(run):
    """Validation scores of the current generator (``evaluate.validate``), keys ``val_*``;
    stage 2 adds LR-PSNR and NIQE. Empty without a validation set."""
    if run.val_set is None:
        return {}
    metrics = STAGE_VALIDATION[run.stage]
    val = evaluate.validate(_inference_generator(run), run.val_set, run.cfg.scale, run.device,
                          metrics)
    return {f"val_{m}": val[m] for m in metrics}


def _validate_start(run):
    """Stage 2, before the first step: log the starting generator as epoch 0 (the reference
    of the LR-PSNR floor of ``srgan_best.pth`` and the start of the curves)."""
    row = {"epoch": 0, "step": 0, **_validate(run), "time_s": 0.0}
    run.history.append(row)
    if row.get("val_psnr") is not None:
        print(f"{run.name} start ({run.scfg.get('init') or 'stage 1'}): " + " | ".join(
            f"{k[4:]} {v:.3f}" for k, v in row.items() if k.startswith("val_") and v is not None),
            flush=True)
    write_log(run.log_path, run.history)


def _is_best(run, row):
    """Does ``row`` beat the best epoch so far? Stage 1: higher validation PSNR. Stage 2: lower
    NIQE, among the epochs whose LR-PSNR is within ``best_lr_psnr_margin`` dB of epoch 0's."""
    earlier = [r for r in run.history if r is not row and r.get("epoch", 0) > 0]
    if run.stage == "srresnet":
        if row.get("val_psnr") is None:
            return False
        return all(row["val_psnr"] > (r.get("val_psnr") or -math.inf) for r in earlier)
    start = next((r for r in run.history if r.get("epoch") == 0), None)
    if row.get("val_niqe") is None or start is None or start.get("val_lr_psnr") is None:
        return False
    floor = start["val_lr_psnr"] - run.scfg.get("best_lr_psnr_margin", math.inf)
    if row["val_lr_psnr"] < floor:
        return False
    return all(row["val_niqe"] < r["val_niqe"] for r in earlier
               if r.get("val_niqe") is not None and r.get("val_lr_psnr", -math.inf) >= floor)


def _end_of_epoch(run, row, finished, epoch_start):
    """Rank 0, after an epoch: validate, log, save the checkpoint (and the best one)."""
    cfg, epoch = run.cfg, row["epoch"]
    if epoch % cfg.train.val_every == 0 or finished:
        row.update(_validate(run))
    row.update(epoch_s=time.perf_counter() - epoch_start, time_s=run.clock.elapsed_s)
    run.history.append(row)
    _print_epoch(run.name, run.scfg.epochs, row)
    state = dict(stage=run.name, arch=run.arch, arch_kwargs=generator_kwargs(cfg),
                 scale=cfg.scale, generator=run.generator, discriminator=run.discriminator,
                 optimizer_g=run.optimizer_g, optimizer_d=run.optimizer_d,
                 scheduler_g=run.schedule,
                 scheduler_d=run.schedule if run.discriminator is not None else None,
                 clock=run.clock, epoch=epoch, step=run.clock.step, config=cfg,
                 history=run.history, finished=finished, world_size=run.world, ema=run.ema,
                 scaler_g=run.scaler_g, scaler_d=run.scaler_d)
    # the resume point last: if the best checkpoint or the log cannot be written (a full
    # disk), the checkpoint still says the epoch is unfinished and --resume redoes it
    if _is_best(run, row):
        checkpoint.save_checkpoint(run.best_path, checkpoint.make_checkpoint(**state))
    write_log(run.log_path, run.history)
    if epoch % cfg.train.checkpoint_every == 0 or finished:
        checkpoint.save_checkpoint(run.ckpt_path, checkpoint.make_checkpoint(**state))
    if run.tensorboard is not None:
        _log_tensorboard(run, row)


TENSORBOARD_SCALARS = {"content_loss": "loss/content", "adv_loss": "loss/adversarial",
                       "d_loss": "loss/discriminator", "d_real": "D/real", "d_fake": "D/fake",
                       "lr": "lr", "it_per_s": "speed/it_per_s",
                       "patches_per_s": "speed/patches_per_s", "data_wait": "speed/data_wait",
                       "val_psnr": "val/psnr", "val_ssim": "val/ssim",
                       "val_lr_psnr": "val/lr_psnr", "val_niqe": "val/niqe"}
"""Epoch-row keys written to TensorBoard, with their tags (x axis: the training step)."""


def _log_tensorboard(run, row):
    """Rank 0, after an epoch: the row's scalars and, after a validation, the first
    :data:`TENSORBOARD_IMAGES` validation images (LR nearest-enlarged | SR | HR, ``(3,H,3W)``
    float in [0,1])."""
    writer, step = run.tensorboard, row["step"]
    for key, tag in TENSORBOARD_SCALARS.items():
        if row.get(key) is not None:
            writer.add_scalar(tag, row[key], step)
    if row.get("val_psnr") is not None and run.val_set is not None:
        model = _inference_generator(run)
        for i in range(min(TENSORBOARD_IMAGES, len(run.val_set))):
            lr, hr, name = run.val_set[i]
            sr = super_resolve.upscale_image(model, lr, device=run.device,
                                             tile=evaluate.validation_tile(run.device))
            near = lr.repeat(run.cfg.scale, 0).repeat(run.cfg.scale, 1)
            panel = [utils.image_to_tensor(x if x.ndim == 3 else x[..., None].repeat(3, -1))
                     for x in (near, sr, hr)]
            writer.add_image(f"val/{name}", torch.cat(panel, dim=-1)[0], step)
    writer.flush()


def _print_epoch(name, epochs, row):
    parts = [f"{name} epoch {row['epoch']}/{epochs}", f"step {row['step']}",
             f"content {row['content_loss']:.4g}"]
    if "d_loss" in row:
        parts += [f"adv {row['adv_loss']:.3g}", f"D loss {row['d_loss']:.3g}",
                  f"D(real) {row['d_real']:.3f}", f"D(fake) {row['d_fake']:.3f}"]
    if row.get("val_psnr") is not None:
        parts.append(f"val PSNR {row['val_psnr']:.2f} dB SSIM {row['val_ssim']:.4f}")
    if row.get("val_lr_psnr") is not None:
        parts.append(f"LR-PSNR {row['val_lr_psnr']:.2f} dB")
    if row.get("val_niqe") is not None:
        parts.append(f"NIQE {row['val_niqe']:.3f}")
    parts += [f"lr {row['lr']:.2e}", f"{row['it_per_s']:.2f} it/s", f"{row['time_s']:.0f} s"]
    print(" | ".join(parts), flush=True)
    if row.get("patches_per_s") is not None:
        print(f"  throughput: {row['it_per_s']:.2f} it/s, {row['patches_per_s']:.1f} patches/s, "
              f"waiting for data {100 * row['data_wait']:.0f}% of the epoch"
              + (" (the loader is the bottleneck: raise data.workers)"
                 if row["data_wait"] > DATA_BOUND else ""), flush=True)


DATA_BOUND = 0.3
"""Data-wait fraction above which the throughput line calls the loader the bottleneck."""


# ----------------------------------------------------------------------------------------------
# After training: PSNR next to bicubic
# ----------------------------------------------------------------------------------------------

REPORT_METRICS = ("psnr", "ssim", "lr_psnr", "niqe", "lpips")
"""What train.py reports after training (``metrics.METRICS`` names; LPIPS when its weights can
be had): fidelity (PSNR-Y, SSIM-Y), faithfulness to the LR input (LR-PSNR) and perceptual
quality (NIQE; LPIPS)."""


def eval_roots(cfg):
    """The folders searched for ``cfg.train.eval_sets``: ``cfg.train.eval_root`` (one folder or
    a list; None stands for ``cfg.data.root``)."""
    roots = cfg.train.get("eval_root")
    roots = roots if isinstance(roots, (list, tuple)) else [roots]
    return [str(r) if r is not None else cfg.data.root for r in roots]


METHOD_NAMES = {"srresnet": "SRResNet", "srgan": "SRGAN", "srcnn": "SRCNN", "fsrcnn": "FSRCNN",
                "vdsr": "VDSR", "tconv": "TransposedConvSR"}
"""Display names of the stages' checkpoints in tables (others keep their own name)."""


def method_label(name, preset):
    """A table row's label naming the preset, e.g. "SRGAN (demo)": a result of a reduced
    preset is never read as the paper's model."""
    return f"{METHOD_NAMES.get(name, name)} ({preset})"


def print_provenance(files):
    """After the tables: the checkpoint file of each row (``{label: path}``) and, for a stage
    that its time budget stopped early, where it stopped (``solver.budget_note``)."""
    for label, path in files.items():
        if not Path(path).is_file():
            continue
        clock = checkpoint.load_checkpoint(path).get("clock") or {}
        note = solver.budget_note(label, clock)
        print(f"{label}: {path}, {clock.get('step', 0):,} steps"
              + (f"; {note}" if note else ""), flush=True)


def report(cfg, checkpoints, progress=False):
    """Print one table per evaluation set: bicubic and each checkpoint (``{label: path}``) x
    PSNR-Y, SSIM-Y, LR-PSNR, NIQE (and LPIPS when available), measured by ``evaluate.evaluate``
    on ``cfg.train.eval_sets`` (each in the first of :func:`eval_roots` that has it; missing
    sets are named and skipped). Returns ``{label: {set: scores}}``, or None when nothing is
    configured or found."""
    found, missing = find_sets(list(cfg.train.get("eval_sets") or []), eval_roots(cfg),
                                      cfg.scale)
    for name in missing:
        print(f"evaluation set {name!r} not found under {eval_roots(cfg)}: skipped", flush=True)
    methods = {"bicubic": "bicubic", **{k: str(v) for k, v in checkpoints.items()
                                        if Path(v).is_file()}}
    if not found or len(methods) < 2:
        return None
    device = runtime.resolve_device(cfg.train.device)
    metrics, lpips_model, unavailable = evaluate.prepare_metrics(None, device)
    metrics = [m for m in REPORT_METRICS if m in metrics]
    results = {label: {name: evaluate.evaluate(spec, root, [name], scale=cfg.scale, device=device,
                                               progress=progress, metrics=metrics,
                                               lpips_model=lpips_model)[name]
                       for name, root in found.items()}
               for label, spec in methods.items()}
    header = ["Method"] + [tables.metric_header(m) for m in metrics]
    for name in found:
        n = results["bicubic"][name]["images"]
        print(f"\n{name} ({n} images, x{cfg.scale}; PSNR/SSIM on Y with {cfg.scale} px shaved):")
        rows = [[label] + [tables.format_value(m, results[label][name].get(m)) for m in metrics]
                for label in methods]
        print(tables.markdown_table(header, rows, right_from=1), end="")
    for m, reason in unavailable.items():
        if m in REPORT_METRICS:
            print(f"{METRICS[m].label} not computed: {reason.splitlines()[0]}")
    return results


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, choices=sorted(PRESETS),
                   help="config preset (default: the recipe of --arch, config.ARCH_PRESETS, "
                        "else 'paper')")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: cfg.train.out_dir/<preset>)")
    p.add_argument("--variant", choices=sorted(VARIANTS), default=None,
                   help="one of the SRGAN paper's networks (Table 1): sets the stage and losses")
    p.add_argument("--stage", choices=(*STAGES, "both"), default=None,
                   help="stage(s) to run (default: cfg.train.stages of the preset)")
    p.add_argument("--arch", choices=sorted(models.GENERATORS), default=None,
                   help="generator architecture (default: cfg.generator.arch); without --config "
                        "its own recipe preset")
    p.add_argument("--resume", action="store_true", help="continue from OUT/<name>.pth")
    p.add_argument("--epochs", type=int, default=None, help="epochs of the stage(s) run")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set stage1.lr=2e-4 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    args.config = args.config or ARCH_PRESETS.get(args.arch, "paper")
    start = time.perf_counter()
    try:
        cfg = build_config(args.config, overrides=args.overrides, device=args.device,
                           arch=args.arch, variant=args.variant)
    except ValueError as e:
        return cli.fail("train.py", e)
    stage_arg = args.stage or cfg.train.stages
    stages = STAGES if stage_arg == "both" else (stage_arg,)
    if args.epochs is not None:
        for stage in stages:
            stage_config(cfg, stage).epochs = args.epochs
        try:
            validate_config(cfg)             # --epochs 0 / -1: one line naming the setting
        except ValueError as e:
            return cli.fail("train.py", e, prefix=f"--epochs {args.epochs}: ")
    out = args.out or Path(cfg.train.out_dir) / args.config
    try:
        world = distributed.init_distributed(cfg.train.device)      # torchrun: join the group
        device = distributed.rank_device(cfg.train.device)
    except (RuntimeError, ValueError) as e:
        return cli.fail("train.py", e)
    rank = distributed.rank()
    prog = f"train.py rank {rank}" if world > 1 else "train.py"   # names the rank that failed
    # ranks other than 0 stay quiet (their errors and warnings still reach stderr)
    quiet = contextlib.redirect_stdout(open(os.devnull, "w")) if rank else contextlib.nullcontext()
    try:
        with quiet:
            print(f"config {args.config!r}, stages {stages}, arch {cfg.generator.arch!r}, "
                  f"device {device}" + (f" x {world} processes" if world > 1 else "")
                  + f", output {out}", flush=True)
            for stage in stages:
                run_stage(cfg, stage, out, resume=args.resume, progress=not args.no_progress)
    except (FloatingPointError, OSError, ValueError, distributed.RankFailure) as e:
        # data, checkpoints, disk, non-finite losses, another rank's failure: one clear line
        # (the traceback with --debug)
        return cli.fail(prog, e)
    finally:
        distributed.close_distributed()
    if rank:
        return 0
    files = {method_label(checkpoint_name(cfg, stage), args.config):
             out / f"{checkpoint_name(cfg, stage)}.pth"
             for stage in STAGES if stage in stages or stage == "srresnet"}
    report(cfg, files)
    print_provenance(files)
    print(f"\ndone in {time.perf_counter() - start:.0f} s; checkpoints in {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run("train.py", main))   # one line per failure, traceback only with --debug
