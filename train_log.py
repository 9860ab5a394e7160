"""What a training stage records of each epoch: the CSV log ``<name>_log.csv``
(:func:`write_log`), the line printed after the epoch (:func:`print_epoch`), and TensorBoard's
live curves and validation images (:func:`tensorboard_writer`, :func:`log_tensorboard`)."""
import csv
import sys

import torch

import evaluate
import tiling
import utils


LOG_COLUMNS = ("epoch", "step", "content_loss", "adv_loss", "d_loss", "d_real", "d_fake",
               "val_psnr", "val_ssim", "val_lr_psnr", "val_niqe", "lr", "it_per_s", "epoch_s",
               "time_s")
"""Columns of ``<name>_log.csv`` (missing values are left empty, e.g. D columns in stage 1)."""


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


def print_epoch(name, epochs, row):
    """Print the line of an epoch's ``row`` (losses, D's probabilities, validation scores, lr,
    speed) and its throughput line (calling the loader the bottleneck above
    :data:`DATA_BOUND`)."""
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


TENSORBOARD_IMAGES = 3
"""Validation images shown per epoch in TensorBoard (``train.tensorboard``): LR input (nearest
enlarged), SR and HR side by side, the first images of the validation set."""


TENSORBOARD_SCALARS = {"content_loss": "loss/content", "adv_loss": "loss/adversarial",
                       "d_loss": "loss/discriminator", "d_real": "D/real", "d_fake": "D/fake",
                       "lr": "lr", "it_per_s": "speed/it_per_s",
                       "patches_per_s": "speed/patches_per_s", "data_wait": "speed/data_wait",
                       "val_psnr": "val/psnr", "val_ssim": "val/ssim",
                       "val_lr_psnr": "val/lr_psnr", "val_niqe": "val/niqe"}
"""Epoch-row keys written to TensorBoard, with their tags (x axis: the training step)."""


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


def log_tensorboard(writer, row, generator, val_set, scale, device):
    """After an epoch: the row's scalars (:data:`TENSORBOARD_SCALARS`) and, after a validation,
    the first :data:`TENSORBOARD_IMAGES` images of ``val_set`` upscaled by ``generator`` (LR
    nearest-enlarged | SR | HR, ``(3,H,3W)`` float in [0,1])."""
    step = row["step"]
    for key, tag in TENSORBOARD_SCALARS.items():
        if row.get(key) is not None:
            writer.add_scalar(tag, row[key], step)
    if row.get("val_psnr") is not None and val_set is not None:
        for i in range(min(TENSORBOARD_IMAGES, len(val_set))):
            lr, hr, name = val_set[i]
            sr = tiling.upscale_image(generator, lr, device=device,
                                      tile=evaluate.validation_tile(device))
            near = lr.repeat(scale, 0).repeat(scale, 1)
            panel = [utils.image_to_tensor(x if x.ndim == 3 else x[..., None].repeat(3, -1))
                     for x in (near, sr, hr)]
            writer.add_image(f"val/{name}", torch.cat(panel, dim=-1)[0], step)
    writer.flush()
