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
``solver.generator_step``. The notebooks call ``config.build_config`` and :func:`run_stage`.
"""
import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from easydict import EasyDict

import checkpoint
import cli
import create_data_lists
import datasets
import distributed
import evaluate
import losses
import models
import report
import run_clock
import runtime
import solver
import train_log
import utils
from progress import write_line
from config import (ARCH_PRESETS, PRESETS, STAGES, VARIANTS, build_config,
                    stage_config, validate_config)

RANK_SEED_OFFSET = datasets.RANK_SEED_OFFSET
"""Rank r draws its patches with seed ``cfg.seed + epoch + r * RANK_SEED_OFFSET`` (more than
any number of epochs, so no two (rank, epoch) pairs share a seed; rank 0 = single process);
its DataLoader workers likewise (``datasets.make_train_loader``)."""

AVERAGED_METRICS = solver.GAN_METRICS
"""Epoch metrics averaged over the ranks of a multi-process run before they are logged: the
losses and D's probabilities of ``solver.train_epoch_gan`` (stage 1's ``content_loss`` among
them)."""

STAGE_VALIDATION = {"srresnet": ("psnr", "ssim"), "srgan": evaluate.VALIDATION_METRICS}
"""What each stage validates per epoch (``evaluate.validate``): stage 2 also LR-PSNR and NIQE,
since its point is perceptual quality, which PSNR does not measure."""


# ----------------------------------------------------------------------------------------------
# A run's files and generator, from its configuration (config.build_config)
# ----------------------------------------------------------------------------------------------

def checkpoint_name(cfg, stage):
    """File stem of a stage's checkpoint: the generator arch for stage 1, 'srgan' for stage 2."""
    return cfg.generator.arch if stage == "srresnet" else stage_config(cfg, stage).name


def generator_kwargs(cfg):
    """Keyword arguments of ``models.build_generator`` for ``cfg.generator.arch``.

    SRResNet takes ``n_blocks`` / ``n_channels`` / ``batch_norm`` / ``upsample`` /
    ``bicubic_skip`` from ``cfg.generator``; the other archs take the dict
    ``cfg.generator.<arch>`` when the config has one (else their defaults).
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


# ----------------------------------------------------------------------------------------------
# Logs
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# One stage
# ----------------------------------------------------------------------------------------------


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
        checkpoint.init_generator(generator, init, cfg.generator.arch, cfg.scale)
    discriminator = None
    if stage == "srgan":
        d = cfg.discriminator
        discriminator = runtime.prepare_model(models.Discriminator(d.n_channels, d.n_blocks, d.fc_size),
                                             device, channels_last)
    # the VGG19 weights (548 MB) are downloaded by rank 0 alone; the others then read its cache
    content_loss = distributed.first_ranks_then_others(
        lambda: losses.content_loss_of(cfg, stage, generator.y_only),
        "rank 0 failed while loading the VGG19 weights", distributed.is_main_process(),
        others_too=True)
    return (runtime.prepare_model(generator, device, channels_last), discriminator,
            runtime.prepare_model(content_loss, device, channels_last))


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
    comes first; see ``run_clock.RunClock``). ``resume`` continues from ``out_dir/<name>.pth``;
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


@dataclass
class StageRun:
    """Everything one stage holds while it trains (built by :func:`_set_up`), by group."""

    # settings: the run's config, the stage ('srresnet' / 'srgan') and its section
    # (cfg.stage1 / cfg.stage2), the checkpoint stem and the generator arch
    cfg: EasyDict = None
    stage: str = None
    scfg: EasyDict = None
    name: str = None
    arch: str = None
    # processes: how many, whether this one is rank 0 (it validates and writes files), bars
    world: int = 1
    is_main: bool = True
    progress: bool = True
    # where and how the steps run: runtime.resolve_amp, steps between two host reads
    device: torch.device = None
    amp: str = None
    sync_every: int = solver.SYNC_EVERY
    # files: OUT/<name>.pth, <name>_best.pth, <name>_log.csv; a SummaryWriter or None
    ckpt_path: Path = None
    best_path: Path = None
    log_path: Path = None
    tensorboard: "torch.utils.tensorboard.SummaryWriter" = None
    # networks: D is None in stage 1; model / critic are what trains (DDP-wrapped or compiled
    # when asked)
    generator: torch.nn.Module = None
    discriminator: torch.nn.Module = None
    model: torch.nn.Module = None
    critic: torch.nn.Module = None
    content_loss: losses.ContentLoss = None
    ema: solver.GeneratorEMA = None
    # optimisation: optimisers, fp16 scalers (else None), the lr schedule as stored in
    # checkpoints and its progress -> lr function, D steps per G step
    optimizer_g: torch.optim.Optimizer = None
    optimizer_d: torch.optim.Optimizer = None
    scaler_g: torch.amp.GradScaler = None
    scaler_d: torch.amp.GradScaler = None
    schedule: dict = None
    lr_fn: Callable[[float], float] = None
    d_steps: int = 1
    # the clock: a time budget in seconds (or None) and the stage's clock
    budget: float = None
    clock: run_clock.RunClock = None
    # data: val_set on rank 0 only; loader kept for the stage when data.workers > 0; this
    # process's share of the batch; batches per epoch and process
    train_set: datasets.TrainDataset = None
    val_set: datasets.TestDataset = None
    loader: torch.utils.data.DataLoader = None
    rank_batch: int = None
    batches: int = None
    # progress: the per-epoch log rows, the epoch to start from
    history: list = field(default_factory=list)
    start_epoch: int = 1


def _set_up(cfg, stage, out_dir, resume, progress):
    """The :class:`StageRun` of a stage: config, files, networks, optimisers, data, clock and
    history (restored from the checkpoint when resuming)."""
    world, is_main = distributed.world_size(), distributed.is_main_process()
    scfg = stage_config(cfg, stage)
    out_dir.mkdir(parents=True, exist_ok=True)
    name, arch = checkpoint_name(cfg, stage), cfg.generator.arch
    run = StageRun(cfg=cfg, stage=stage, scfg=scfg, name=name, arch=arch, world=world,
                   is_main=is_main, progress=progress and is_main,
                   ckpt_path=out_dir / f"{name}.pth", best_path=out_dir / f"{name}_best.pth",
                   log_path=out_dir / f"{name}_log.csv")
    ckpt = _check_resume(run.ckpt_path, resume, name, arch,
                         (run.ckpt_path, run.best_path, run.log_path), generator_kwargs(cfg))
    init = _stage2_init(run, out_dir) if stage == "srgan" and ckpt is None else None
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
    _plan_steps(run)
    if ckpt is not None:
        _restore(run, ckpt)
    if is_main:
        run.clock.on_estimate = lambda clock, rate: write_line(_estimate_line(run, clock, rate))
    _wrap_models(run, sync_bn)
    run.tensorboard = (train_log.tensorboard_writer(out_dir / "tensorboard" / name)
                       if is_main and cfg.train.get("tensorboard") else None)
    return run


def _stage2_init(run, out_dir):
    """The checkpoint stage 2 starts from: ``stage2.init``, else ``OUT/<arch>.pth``
    (FileNotFoundError with what to do when it does not exist)."""
    init = Path(run.scfg.get("init") or out_dir / f"{run.arch}.pth")
    if not init.is_file():
        raise FileNotFoundError(f"stage 'srgan' starts from a trained generator, but {init} "
                                f"does not exist: run --stage srresnet first, or set "
                                f"--set stage2.init=PATH")
    return init


def _plan_steps(run):
    """``d_steps``, ``batches`` per epoch, the time ``budget`` and the stage's ``clock`` (its
    planned generator steps); ValueError when an epoch would hold no batch or no G step."""
    scfg = run.scfg
    run.d_steps = int(scfg.get("d_steps", 1)) if run.stage == "srgan" else 1
    batches = (len(run.train_set) // run.world) // run.rank_batch   # = len // batch on 1 process
    if batches < 1:
        raise ValueError(f"the training set has {len(run.train_set)} patches, fewer than one batch "
                         f"of {scfg.batch_size}: raise data.patches_per_image or lower the batch size")
    if batches // run.d_steps < 1:
        raise ValueError(f"setting stage2.d_steps={run.d_steps}: an epoch has only {batches} "
                         f"batches, so no generator step would run; lower d_steps or raise "
                         f"data.patches_per_image")
    run.budget = scfg.get("time_budget_s") or run.cfg.train.get("time_budget_s")
    run.clock = run_clock.RunClock(scfg.epochs * (batches // run.d_steps), run.budget,
                                share_every=run.sync_every)
    run.batches = batches


def _wrap_models(run, sync_bn):
    """``run.model`` / ``run.critic``: the networks that train, DDP-wrapped in a multi-process
    run and compiled with ``train.compile``."""
    run.model, run.critic = run.generator, run.discriminator
    if run.world > 1:
        run.model = distributed.wrap_ddp(run.generator, run.device, sync_bn)
        if run.discriminator is not None:
            run.critic = distributed.wrap_ddp(run.discriminator, run.device, sync_bn)
    if run.cfg.train.compile:
        run.model = torch.compile(run.model)
        run.critic = torch.compile(run.critic) if run.critic is not None else None


def _build_training(run, init):
    """The stage's networks (G from ``init`` when given), optimisers, fp16 scalers, EMA and lr
    schedule, onto ``run``."""
    cfg, scfg = run.cfg, run.scfg
    run.generator, run.discriminator, run.content_loss = build_networks(cfg, run.stage, run.device,
                                                                        init)
    run.optimizer_g = solver.optimizer_of(run.generator, scfg)
    run.optimizer_d = (solver.optimizer_of(run.discriminator, scfg, last_layer_lr_scale=1.0)
                       if run.discriminator is not None else None)
    run.scaler_g = runtime.make_grad_scaler(run.amp, run.device)        # fp16: one per optimiser
    run.scaler_d = (runtime.make_grad_scaler(run.amp, run.device)
                    if run.discriminator is not None else None)
    ema_decay = scfg.get("ema_decay") if run.stage == "srgan" else None
    run.ema = solver.GeneratorEMA(run.generator, ema_decay) if ema_decay is not None else None
    run.schedule, run.lr_fn = solver.lr_schedule_of(scfg)


def _build_data(run):
    """The stage's training set (decoded by the first rank of each node first, which fills
    ``data.cache_dir`` for the others), validation set (rank 0) and, with workers, its loader."""
    cfg = run.cfg
    distributed.main_rank_first(lambda: create_data_lists.ensure_data(cfg), "preparing the data")
    patch = run.scfg.get("patch_size")
    run.train_set = distributed.local_main_first(
        lambda: datasets.build_train_set(cfg, run.progress, patch), "decoding the data")
    run.val_set = datasets.build_val_set(cfg) if run.is_main else None
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
            f"(measured over {run_clock.ESTIMATE_STEPS} steps here) -> about "
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
    run.clock = run_clock.RunClock.from_state_dict(ckpt["clock"], run.clock.total_steps,
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
    plan = solver.EpochPlan(run.device, run.clock, run.name, epoch, run.lr_fn, run.amp,
                            channels_last=bool(cfg.train.channels_last), progress=run.progress,
                            sync_every=run.sync_every)
    generator = solver.Trainee(run.model, run.optimizer_g, run.scaler_g)
    with runtime.cudnn_benchmark(run.device.type == "cuda"):
        if run.stage == "srresnet":
            metrics = solver.train_epoch_mse(generator, loader, run.content_loss, plan,
                                             clip_theta=scfg.get("grad_clip_theta"),
                                             clip_mode=scfg.get("grad_clip_mode", "norm"))
        else:
            gan = solver.GANSettings(scfg.adv_weight, run.d_steps, scfg.get("d_lr_scale", 1.0),
                                     scfg.get("collapse_fake"), scfg.get("collapse_real"))
            metrics = solver.train_epoch_gan(
                generator, solver.Trainee(run.critic, run.optimizer_d, run.scaler_d), loader,
                run.content_loss, plan, gan, ema=run.ema)
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
    train_log.write_log(run.log_path, run.history)


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
    train_log.print_epoch(run.name, run.scfg.epochs, row)
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
    train_log.write_log(run.log_path, run.history)
    if epoch % cfg.train.checkpoint_every == 0 or finished:
        checkpoint.save_checkpoint(run.ckpt_path, checkpoint.make_checkpoint(**state))
    if run.tensorboard is not None:
        train_log.log_tensorboard(run.tensorboard, row, _inference_generator(run), run.val_set,
                                  cfg.scale, run.device)


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = cli.tool_parser(__doc__)
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
    files = {report.stage_label(checkpoint_name(cfg, stage), args.config):
             out / f"{checkpoint_name(cfg, stage)}.pth"
             for stage in STAGES if stage in stages or stage == "srresnet"}
    report.report_training(cfg, files)
    report.print_provenance(files)
    print(f"\ndone in {time.perf_counter() - start:.0f} s; checkpoints in {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run("train.py", main))   # one line per failure, traceback only with --debug
