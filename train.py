"""Train SRResNet (stage 1) and SRGAN (stage 2) from a config preset; resumable.

Usage (from the project root)::

    python train.py --config demo --out runs/demo            # the demo: SRResNet on the CPU, minutes
    python train.py --config paper --out runs/paper           # both stages of the paper (GPU)
    python train.py --config paper --out runs/paper --stage srgan --resume
    python train.py --config paper --out runs/vdsr --arch vdsr --stage srresnet
    python train.py --config demo --out runs/x --set stage1.lr=2e-4 --set data.workers=2

Stage ``srresnet`` (stage 1) trains ``cfg.generator.arch`` with a pixel loss and writes
``OUT/<arch>.pth`` (``srresnet.pth``, or ``srcnn.pth`` / ``vdsr.pth`` for the baselines);
stage ``srgan`` (stage 2) starts its generator from that file (or ``cfg.stage2.init``) and
writes ``OUT/srgan.pth``. After every epoch the latest checkpoint is replaced atomically,
``OUT/<name>_log.csv`` gets a row (losses, D(real)/D(fake), validation PSNR/SSIM, lr, time),
and in stage 1 ``OUT/<name>_best.pth`` keeps the epoch with the best validation PSNR.
``--resume`` continues a stage from its checkpoint with the same weights, optimiser state,
schedule and data order as an uninterrupted run.

Faults: checkpoints and logs are written atomically (temp file, fsync, rename), so a run
killed at any moment (SIGKILL, out of memory) or stopped by a full disk leaves the last complete
checkpoint; ``--resume`` restarts the interrupted epoch from it (each epoch's data depends only
on the seed and the epoch number, so on the CPU the result is bit-identical to an uninterrupted
run) and deletes the half-written temp files of the killed run. A non-finite loss stops the run
before the optimiser step, naming the stage, epoch and step; a collapsed discriminator is
reported with its epoch and step.

Several GPUs: one process per GPU with DistributedDataParallel::

    torchrun --nproc_per_node=4 train.py --config paper --out runs/paper

* Each rank trains on ``cuda:LOCAL_RANK`` (NCCL); without CUDA the ranks use the CPU (gloo).
* Batch: ``stage1.batch_size`` / ``stage2.batch_size`` is the **global** batch, split evenly
  over the ranks (the paper's 16 on 4 GPUs = 4 patches per GPU; it must divide evenly). DDP
  averages the gradients over the ranks, so each optimiser step uses the mean gradient of 16
  patches, as on one GPU; steps per epoch, lr schedule and checkpoint epochs/steps do not
  depend on the number of GPUs. A DistributedSampler gives each rank its share of an epoch's
  patches (``set_epoch`` every epoch); each rank crops with its own seed.
* BatchNorm: by default each rank normalises with the statistics of its own share of the batch
  (plain per-GPU BN, noisier with fewer patches per GPU); ``--set train.sync_bn=True`` uses
  SyncBatchNorm (CUDA only): statistics over the global batch, as on one GPU, for one
  all-reduce per BN layer. The running statistics kept are rank 0's.
* Rank 0 alone validates and writes checkpoints (the plain module's state dict: no
  ``module.`` prefix), logs and messages; the others wait for it (and stop if it fails).
  A checkpoint can be resumed with any number of processes.

The notebooks call :func:`build_config` and :func:`run_stage` directly.
"""
import argparse
import ast
import contextlib
import csv
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

import solver
from config import PRESETS, get_config

STAGES = ("srresnet", "srgan")
"""Stage names: 'srresnet' = stage 1 (pixel loss, any generator arch), 'srgan' = stage 2."""

RANK_SEED_OFFSET = 2 ** 20
"""Rank r draws its patches with seed ``cfg.seed + epoch + r * RANK_SEED_OFFSET`` (more than
any number of epochs, so no two (rank, epoch) pairs share a seed; rank 0 = single process)."""

AVERAGED_METRICS = ("content_loss", "adv_loss", "d_loss", "d_real", "d_fake")
"""Epoch metrics averaged over the ranks of a multi-process run before they are logged."""

LOG_COLUMNS = ("epoch", "step", "content_loss", "adv_loss", "d_loss", "d_real", "d_fake",
               "val_psnr", "val_ssim", "lr", "it_per_s", "epoch_s", "time_s")
"""Columns of ``<name>_log.csv`` (missing values are left empty, e.g. D columns in stage 1)."""


# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------

def parse_value(text):
    """A ``--set`` value: a python literal (``2e-4``, ``True``, ``None``, ``[1, 2]``, ``'x'``)
    or, when it is not one, the plain string (``vgg``, ``/path/to/file``)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_overrides(cfg, overrides):
    """Apply ``KEY=VALUE`` strings (dotted keys, e.g. ``stage1.lr=2e-4``) to ``cfg`` in place.

    Raises ValueError naming the item for a malformed item or a key that the config does not
    have (typos should not be silently ignored).
    """
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. stage1.lr=2e-4")
        parts = key.strip().split(".")
        node = cfg
        for depth, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                where = ".".join(parts[:depth]) or "the config"
                options = sorted(node) if isinstance(node, dict) else []
                raise ValueError(f"--set {item!r}: {where} has no key {part!r}; keys: {options}")
            if depth < len(parts) - 1:
                node = node[part]
        node[parts[-1]] = parse_value(text.strip())
    return cfg


def build_config(preset="paper", *, epochs=None, device=None, arch=None, overrides=(),
                 stages=STAGES):
    """The config of a run: preset ``preset``, then ``overrides`` (``KEY=VALUE``), then the
    shortcuts ``epochs`` (of the stages in ``stages``), ``device`` and ``arch``."""
    cfg = get_config(preset)
    apply_overrides(cfg, overrides)
    if epochs is not None:
        for stage in stages:
            stage_config(cfg, stage).epochs = int(epochs)
    if device is not None:
        cfg.train.device = device
    if arch is not None:
        cfg.generator.arch = arch
    return cfg


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

    SRResNet takes ``n_blocks`` / ``n_channels`` from ``cfg.generator``; the other archs take
    the dict ``cfg.generator.<arch>`` when the config has one (else their defaults).
    """
    arch = cfg.generator.arch
    if arch == "srresnet":
        return {"n_blocks": int(cfg.generator.n_blocks), "n_channels": int(cfg.generator.n_channels)}
    return dict(cfg.generator.get(arch) or {})


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------

def list_path(cfg, name):
    """Path of the JSON data list ``name`` in ``cfg.data.lists_dir``."""
    return Path(cfg.data.lists_dir) / f"{name}.json"


def ensure_data(cfg):
    """Make sure the training list exists; the demo dataset (``demo_*`` lists) is built here
    from the scikit-image photos when missing. Other missing lists -> FileNotFoundError saying
    how to make them."""
    train_list = list_path(cfg, cfg.data.train_list)
    if train_list.is_file():
        return
    if cfg.data.train_list.startswith("demo"):
        import create_data_lists
        print(f"building the demo dataset in {cfg.data.root} (scikit-image photos) ...", flush=True)
        create_data_lists.build_demo_dataset(root=cfg.data.root, lists_dir=cfg.data.lists_dir,
                                             scale=cfg.scale)
        return
    raise FileNotFoundError(f"training list {train_list} not found: write it with "
                            f"`python create_data_lists.py` (see its --help), or pick another "
                            f"list with --set data.train_list=NAME")


def build_train_set(cfg, progress=True):
    """``datasets.TrainDataset`` of the list ``cfg.data.train_list`` with the patch settings."""
    import datasets
    return datasets.TrainDataset.from_list(
        list_path(cfg, cfg.data.train_list), scale=cfg.scale, patch_size=cfg.data.patch_size,
        patches_per_image=cfg.data.patches_per_image, augment=cfg.data.augment,
        cache_dir=cfg.data.get("cache_dir"), progress=progress)


def build_val_set(cfg):
    """The validation ``datasets.TestDataset``: the list ``cfg.data.val_list``, else that set in
    ``cfg.data.benchmark_root``; None (validation skipped, with a message) when neither exists."""
    import datasets
    name = cfg.data.get("val_list")
    if not name:
        return None
    path = list_path(cfg, name)
    if path.is_file():
        return datasets.TestDataset.from_list(path)
    try:
        hr_dir, lr_dir = datasets.find_test_set(cfg.data.benchmark_root, name, cfg.scale)
    except FileNotFoundError:
        print(f"validation set {name!r} not found (no {path}, nothing in "
              f"{cfg.data.benchmark_root}): per-epoch validation is skipped", flush=True)
        return None
    return datasets.TestDataset(hr_dir, lr_dir, cfg.scale)


# ----------------------------------------------------------------------------------------------
# Logs
# ----------------------------------------------------------------------------------------------

def write_log(path, history):
    """Write ``history`` (list of per-epoch dicts) as CSV with ``LOG_COLUMNS``, atomically."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=LOG_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for row in history:
                writer.writerow({k: _fmt(row.get(k)) for k in LOG_COLUMNS})
        os.chmod(tmp, 0o644)             # mkstemp makes 0600 files; a log is for everyone to read
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise solver.write_failed(path, e, "log") from e
        raise


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
    """Load stage-1 weights (a checkpoint of this project) into ``generator`` for stage 2."""
    ckpt = solver.load_checkpoint(path)
    if ckpt["arch"] != arch or ckpt["scale"] != scale:
        raise ValueError(f"{path} holds a x{ckpt['scale']} {ckpt['arch']!r} generator, but this "
                         f"run trains a x{scale} {arch!r}")
    try:
        generator.load_state_dict(ckpt["generator"])
    except RuntimeError as e:
        raise ValueError(f"{path}: its generator does not fit the configured one "
                         f"(cfg.generator): {e}") from e


def build_networks(cfg, stage, device, init=None):
    """The networks of a stage on ``device``: ``(generator, discriminator, content_loss)``.

    Stage 1: ``discriminator`` is None and ``content_loss`` the pixel loss of ``cfg.stage1``.
    Stage 2: the paper's discriminator and the content loss ``cfg.stage2.content_loss`` (the VGG
    loss phi_{i,j} of ``cfg.vgg``, or a pixel loss); the generator starts from the stage-1
    checkpoint ``init`` when given. Seeds torch with ``cfg.seed`` first, so the initial weights
    are the same in every run.
    """
    import models

    scfg = stage_config(cfg, stage)
    solver.seed_everything(cfg.seed)
    channels_last = bool(cfg.train.channels_last)
    generator = models.build_generator(cfg.generator.arch, scale=cfg.scale, **generator_kwargs(cfg))
    if init is not None:
        _init_generator_from(generator, init, cfg.generator.arch, cfg.scale)
    discriminator = None
    if stage == "srresnet":
        content_loss = solver.PixelLoss(scfg.loss, generator.y_only)
    else:
        d = cfg.discriminator
        discriminator = solver.prepare_model(models.Discriminator(d.n_channels, d.n_blocks, d.fc_size),
                                             device, channels_last)
        if scfg.content_loss == "vgg":
            vgg = models.TruncatedVGG19(cfg.vgg.i, cfg.vgg.j, weights=cfg.vgg.weights)
            content_loss = solver.VGGLoss(vgg, cfg.vgg.feature_scale)
        else:
            content_loss = solver.PixelLoss(scfg.content_loss, generator.y_only)
    return (solver.prepare_model(generator, device, channels_last), discriminator,
            solver.prepare_model(content_loss, device, channels_last))


def lr_schedule(scfg):
    """The lr schedule of a stage config as a plain dict (stored in checkpoints) and its
    ``lr_fn(progress) -> lr`` (see ``solver.make_lr_fn``)."""
    schedule = {"schedule": scfg.lr_schedule, "base_lr": scfg.lr,
                "decay_at": scfg.get("lr_decay_at", 0.5),
                "decay_factor": scfg.get("lr_decay_factor", 0.1), "min_lr": scfg.get("lr_min", 0.0)}
    lr_fn = solver.make_lr_fn(schedule["base_lr"], schedule["schedule"], schedule["decay_at"],
                              schedule["decay_factor"], schedule["min_lr"])
    return schedule, lr_fn


def _main_rank_first(fn, what):
    """Run ``fn()`` on rank 0 while the other ranks wait; then (if it succeeded) return its
    result on rank 0 and None elsewhere. A failure on rank 0 is raised there and stops the
    others (``solver.agree``) instead of leaving them waiting. Single process: just ``fn()``."""
    result, error = None, None
    if solver.is_main_process():
        try:
            result = fn()
        except BaseException as e:    # re-raised below, after telling the other ranks
            error = e
    solver.agree(error is None, f"rank 0 failed while {what}")
    if error is not None:
        raise error
    return result


def _ddp(model, device, sync_bn):
    """``model`` wrapped in DistributedDataParallel (SyncBatchNorm first when ``sync_bn``)."""
    if sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, output_device=None
                                                     if ids is None else ids[0])


def run_stage(cfg, stage, out_dir, resume=False, progress=True):
    """Train one stage and return its history (list of per-epoch metric dicts).

    ``stage`` is 'srresnet' (stage 1: ``cfg.generator.arch`` with the pixel loss of
    ``cfg.stage1``) or 'srgan' (stage 2: adversarial training from ``OUT/<arch>.pth`` or
    ``cfg.stage2.init``). Writes ``out_dir/<name>.pth`` after every ``checkpoint_every`` epochs
    and at the end, ``out_dir/<name>_log.csv`` every epoch and, in stage 1, ``<name>_best.pth``.

    The stage ends after ``epochs`` epochs or when ``cfg.train.time_budget_s`` seconds of
    training are spent (the lr schedule is laid over whichever comes first; see
    ``solver.RunClock``). ``resume`` continues from ``out_dir/<name>.pth``; without it an
    existing checkpoint is an error (nothing is overwritten). Raises FloatingPointError (from
    ``solver``) on a non-finite loss, with the previous checkpoint left intact.

    Inside a process group (``torchrun``, see the module docstring) every rank calls this; the
    models are trained with DistributedDataParallel, ``batch_size`` is the global batch, and
    rank 0 alone validates and writes files. ``progress`` bars are shown by rank 0 only.
    """
    import datasets

    world, is_main = solver.world_size(), solver.is_main_process()
    progress = progress and is_main
    scfg = stage_config(cfg, stage)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name, arch = checkpoint_name(cfg, stage), cfg.generator.arch
    ckpt_path, best_path = out_dir / f"{name}.pth", out_dir / f"{name}_best.pth"
    log_path = out_dir / f"{name}_log.csv"
    if ckpt_path.exists() and not resume:
        raise FileExistsError(f"{ckpt_path} exists: pass --resume (resume=True) to continue it, "
                              f"or choose another output folder")
    checkpoint = solver.load_checkpoint(ckpt_path) if resume and ckpt_path.exists() else None
    if resume and checkpoint is None:
        print(f"no checkpoint {ckpt_path} to resume: starting {name} from scratch", flush=True)
    if resume and is_main:                    # half-written files of a killed run
        for path in (ckpt_path, best_path, log_path):
            for tmp in solver.remove_stale_temp_files(path):
                print(f"removed {tmp}: an incomplete write of an interrupted run", flush=True)
    if checkpoint is not None and (checkpoint["arch"] != arch or checkpoint["stage"] != name):
        raise ValueError(f"{ckpt_path} is a {checkpoint['stage']!r} checkpoint of "
                         f"{checkpoint['arch']!r}, not {name!r} of {arch!r}")
    init = None
    if stage == "srgan" and checkpoint is None:
        init = Path(scfg.get("init") or out_dir / f"{arch}.pth")
        if not init.is_file():
            raise FileNotFoundError(f"stage 'srgan' starts from a trained generator, but {init} "
                                    f"does not exist: run --stage srresnet first, or set "
                                    f"--set stage2.init=PATH")

    device = solver.rank_device(cfg.train.device)
    channels_last, amp = bool(cfg.train.channels_last), cfg.train.amp
    sync_bn = bool(cfg.train.get("sync_bn")) and world > 1
    if sync_bn and device.type != "cuda":
        raise ValueError("train.sync_bn=True needs CUDA: SyncBatchNorm does not run on the CPU")
    if scfg.batch_size % world:
        raise ValueError(f"{stage} batch_size {scfg.batch_size} is the global batch and must be "
                         f"divisible by the {world} processes of the run")
    rank_batch = scfg.batch_size // world
    generator, discriminator, content_loss = build_networks(cfg, stage, device, init)
    betas = tuple(scfg.betas)
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=scfg.lr, betas=betas)
    optimizer_d = (torch.optim.Adam(discriminator.parameters(), lr=scfg.lr, betas=betas)
                   if discriminator is not None else None)
    schedule, lr_fn = lr_schedule(scfg)

    _main_rank_first(lambda: ensure_data(cfg), "preparing the data")
    # rank 0 decodes first (and fills data.cache_dir), the others then read its cache
    train_set = _main_rank_first(lambda: build_train_set(cfg, progress), "decoding the data")
    if not is_main:
        train_set = build_train_set(cfg, progress)
    val_set = build_val_set(cfg) if is_main else None
    d_steps = int(scfg.get("d_steps", 1)) if stage == "srgan" else 1
    batches = (len(train_set) // world) // rank_batch     # = len // batch_size on one process
    if batches < 1:
        raise ValueError(f"the training set has {len(train_set)} patches, fewer than one batch of "
                         f"{scfg.batch_size}: raise data.patches_per_image or lower the batch size")
    steps_per_epoch = batches // d_steps
    budget = cfg.train.get("time_budget_s")
    clock = solver.RunClock(scfg.epochs * steps_per_epoch, budget)

    history, start_epoch, best_psnr = [], 1, -math.inf
    if checkpoint is not None:
        generator.load_state_dict(checkpoint["generator"])
        optimizer_g.load_state_dict(checkpoint["optimizer_g"])
        if discriminator is not None:
            discriminator.load_state_dict(checkpoint["discriminator"])
            optimizer_d.load_state_dict(checkpoint["optimizer_d"])
        history = list(checkpoint["history"])
        start_epoch = checkpoint["epoch"] + 1
        clock = solver.RunClock.from_state_dict(checkpoint["clock"], clock.total_steps, budget)
        best_psnr = max((r["val_psnr"] for r in history if r.get("val_psnr") is not None),
                        default=-math.inf)
        solver.set_rng_state(checkpoint["rng"])
        print(f"resuming {name} from {ckpt_path}: epoch {checkpoint['epoch']} done, "
              f"step {clock.step}", flush=True)

    model, critic = generator, discriminator      # what the epochs train (DDP-wrapped if needed)
    if world > 1:
        model = _ddp(generator, device, sync_bn)
        critic = _ddp(discriminator, device, sync_bn) if discriminator is not None else None
    model = torch.compile(model) if cfg.train.compile else model
    collapse = (scfg.get("collapse_fake"), scfg.get("collapse_real"))
    clock.start()
    for epoch in range(start_epoch, scfg.epochs + 1):
        if clock.finished():
            break
        # The data of an epoch depends only on (seed, epoch): the loader's shuffling generator
        # and the patch RNG of datasets.TrainDataset (seeded from torch.initial_seed() in the
        # main process, from the loader's worker seeds otherwise).
        torch.manual_seed(cfg.seed + epoch + solver.rank() * RANK_SEED_OFFSET)
        loader = datasets.make_train_loader(train_set, rank_batch, cfg.data.workers,
                                            cfg.seed + epoch, distributed=world > 1)
        if world > 1:
            loader.sampler.set_epoch(epoch)
        epoch_start = time.perf_counter()
        common = dict(clock=clock, lr_fn=lr_fn, amp=amp, channels_last=channels_last,
                      stage=name, epoch=epoch, progress=progress)
        if stage == "srresnet":
            metrics = solver.train_epoch_mse(model, loader, optimizer_g, content_loss, device, **common)
        else:
            metrics = solver.train_epoch_gan(
                model, critic, loader, optimizer_g, optimizer_d, content_loss, device,
                adv_weight=scfg.adv_weight, d_steps=d_steps, collapse_fake=collapse[0],
                collapse_real=collapse[1], **common)
        del loader
        finished = clock.finished() or epoch == scfg.epochs
        solver.all_reduce_mean(metrics, AVERAGED_METRICS)
        for net in (generator, discriminator):         # every rank holds rank 0's BN statistics
            if net is not None:
                solver.broadcast_buffers(net)
        row = {"epoch": epoch, "step": clock.step, **metrics}

        def validate_and_save():
            nonlocal best_psnr
            if val_set is not None and (epoch % cfg.train.val_every == 0 or finished):
                val = solver.validate(generator, val_set, cfg.scale, device)
                row.update(val_psnr=val["psnr"], val_ssim=val["ssim"])
            row.update(epoch_s=time.perf_counter() - epoch_start, time_s=clock.elapsed_s)
            history.append(row)
            _print_epoch(name, scfg.epochs, row)
            state = dict(stage=name, arch=arch, arch_kwargs=generator_kwargs(cfg),
                         scale=cfg.scale, generator=generator, discriminator=discriminator,
                         optimizer_g=optimizer_g, optimizer_d=optimizer_d, scheduler_g=schedule,
                         scheduler_d=schedule if discriminator is not None else None,
                         clock=clock, epoch=epoch, step=clock.step, config=cfg,
                         history=history, finished=finished, world_size=world)
            if epoch % cfg.train.checkpoint_every == 0 or finished:
                solver.save_checkpoint(ckpt_path, solver.make_checkpoint(**state))
            if (stage == "srresnet" and row.get("val_psnr") is not None
                    and row["val_psnr"] > best_psnr):
                best_psnr = row["val_psnr"]
                solver.save_checkpoint(best_path, solver.make_checkpoint(**state))
            write_log(log_path, history)

        _main_rank_first(validate_and_save, f"validating or saving epoch {epoch}")
        if not is_main:
            history.append(row)      # (without validation scores: rank 0 keeps the full log)
    return history


def _print_epoch(name, epochs, row):
    parts = [f"{name} epoch {row['epoch']}/{epochs}", f"step {row['step']}",
             f"content {row['content_loss']:.4g}"]
    if "d_loss" in row:
        parts += [f"adv {row['adv_loss']:.3g}", f"D loss {row['d_loss']:.3g}",
                  f"D(real) {row['d_real']:.3f}", f"D(fake) {row['d_fake']:.3f}"]
    if row.get("val_psnr") is not None:
        parts.append(f"val PSNR {row['val_psnr']:.2f} dB SSIM {row['val_ssim']:.4f}")
    parts += [f"lr {row['lr']:.2e}", f"{row['it_per_s']:.2f} it/s", f"{row['time_s']:.0f} s"]
    print(" | ".join(parts), flush=True)


# ----------------------------------------------------------------------------------------------
# After training: PSNR next to bicubic
# ----------------------------------------------------------------------------------------------

def report(cfg, checkpoint, progress=False):
    """Print the PSNR/SSIM of ``checkpoint`` next to bicubic on ``cfg.train.eval_sets`` (set
    names under ``cfg.train.eval_root``), measured with ``evaluate.evaluate``. Returns the two
    result dicts ``(model, bicubic)``, or None when nothing is configured or found."""
    import evaluate
    root, sets = cfg.train.get("eval_root") or cfg.data.root, list(cfg.train.get("eval_sets") or [])
    if not root or not sets:
        return None
    try:
        ours = evaluate.evaluate(str(checkpoint), root, sets, scale=cfg.scale,
                                 device=solver.resolve_device(cfg.train.device), progress=progress)
        bicubic = evaluate.evaluate("bicubic", root, sets, scale=cfg.scale, progress=progress)
    except FileNotFoundError as e:
        print(f"evaluation skipped: {e}", flush=True)
        return None
    print(f"\nPSNR-Y / SSIM-Y (x{cfg.scale}, {cfg.scale} px shaved) of {checkpoint}:")
    for s in sets:
        m, b = ours[s], bicubic[s]
        print(f"  {s:<10} {m['images']:>3} images   model {m['psnr']:6.2f} dB / {m['ssim']:.4f}   "
              f"bicubic {b['psnr']:6.2f} dB / {b['ssim']:.4f}   gain {m['psnr'] - b['psnr']:+.2f} dB")
    return ours, bicubic


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="paper", choices=sorted(PRESETS), help="config preset")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: cfg.train.out_dir/<preset>)")
    p.add_argument("--stage", choices=(*STAGES, "both"), default=None,
                   help="stage(s) to run (default: cfg.train.stages of the preset)")
    p.add_argument("--arch", choices=("srresnet", "srcnn", "vdsr"), default=None,
                   help="generator architecture (default: cfg.generator.arch)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/<name>.pth")
    p.add_argument("--epochs", type=int, default=None, help="epochs of the stage(s) run")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set stage1.lr=2e-4 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    cfg = build_config(args.config, overrides=args.overrides, device=args.device, arch=args.arch)
    stage_arg = args.stage or cfg.train.stages
    stages = STAGES if stage_arg == "both" else (stage_arg,)
    if args.epochs is not None:
        for stage in stages:
            stage_config(cfg, stage).epochs = args.epochs
    out = args.out or Path(cfg.train.out_dir) / args.config
    try:
        world = solver.init_distributed(cfg.train.device)      # torchrun: join the group
        device = solver.rank_device(cfg.train.device)
    except (RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    rank = solver.rank()
    prefix = f"rank {rank}: " if world > 1 else ""
    # ranks other than 0 stay quiet (their errors and warnings still reach stderr)
    quiet = contextlib.redirect_stdout(open(os.devnull, "w")) if rank else contextlib.nullcontext()
    try:
        with quiet:
            print(f"config {args.config!r}, stages {stages}, arch {cfg.generator.arch!r}, "
                  f"device {device}" + (f" x {world} processes" if world > 1 else "")
                  + f", output {out}", flush=True)
            for stage in stages:
                run_stage(cfg, stage, out, resume=args.resume, progress=not args.no_progress)
    except (FloatingPointError, OSError, ValueError, solver.RankFailure) as e:
        # data, checkpoints, disk, non-finite losses, another rank's failure: one clear line
        print(f"{prefix}error: {e}", file=sys.stderr)
        return 1
    finally:
        solver.close_distributed()
    if rank:
        return 0
    for stage in stages:
        report(cfg, out / f"{checkpoint_name(cfg, stage)}.pth")
    print(f"\ndone in {time.perf_counter() - start:.0f} s; checkpoints in {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
