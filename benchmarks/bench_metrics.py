"""Timing of the evaluation metrics (metrics.psnr / metrics.ssim) and of a bicubic benchmark run.

The metrics are timed on a synthetic Urban100-sized RGB pair (1280x1024; SR = HR plus noise),
so no data is needed; scikit-image's ``structural_similarity`` with the same settings (Gaussian
weights, sigma 1.5, population covariance) on the same Y planes is timed beside it as a
reference and its value compared. The bicubic evaluation of Set5 + Set14 (``evaluate.evaluate``,
reading the PNG files of ``../shared/data/benchmark``) is timed when that data is present.
The no-reference ``metrics.niqe`` is timed on the HR image of the pair and, when present, on the
2K DIV2K sample ``train_samples/DIV2K/DIV2K_train_HR/0004.png``.

Every metric of ``metrics.METRICS`` is then timed on one Set14-sized image (``baboon.png`` of
Set14, 500x480, SR = bicubic x4 of its LR file; a smooth synthetic image of that size without
the data) as ``evaluate.score_image`` computes it, and the bicubic evaluation of Set5 + Set14 is
timed with PSNR + SSIM only and with every metric. LPIPS runs with random weights in the
official layouts (written to a temporary folder and loaded through ``metrics.LPIPS``): the same
computation as with the real weights, which cannot be downloaded here; its values are therefore
not reported.

``run()`` returns a Markdown section; ``python benchmarks/bench_metrics.py`` prints it.
"""
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import evaluate  # noqa: E402
import metrics
import pretrained
import tables
import utils  # noqa: E402
from config import SHARED_DATA  # noqa: E402
from imresize import imresize  # noqa: E402
from timing import median_time  # noqa: E402

IMAGE_SHAPE = (1024, 1280, 3)  # an Urban100-sized RGB image (H, W, C)
NOISE_LEVEL = 10               # SR = HR + uniform noise in [-10, 10] gray levels
SCALE = 4                      # x4: also the border shaved by the protocol
REPEATS = 7                    # timed runs of each metric (median reported)
EVAL_REPEATS = 3               # timed runs of the Set5 + Set14 evaluation
EVAL_SETS = ["Set5", "Set14"]
NIQE_REPEATS = 3               # timed runs of metrics.niqe (median reported)
NIQE_2K = Path("train_samples") / "DIV2K" / "DIV2K_train_HR" / "0004.png"  # under SHARED_DATA
SEED = 0
SET14_IMAGE = Path("benchmark") / "Set14"   # under SHARED_DATA: HR/<name>.png, LR_bicubic/X4
SET14_NAME = "baboon"
SET14_SHAPE = (480, 500, 3)    # baboon's (H, W, C): the synthetic stand-in without the data
SMOOTH_CELL = 8                # the synthetic image: random values on an 8x coarser grid, bicubic
LPIPS_WEIGHT_STD = 0.05        # random LPIPS backbone weights ~ N(0, 0.05^2) (timing only)


def _pair():
    rng = np.random.default_rng(SEED)
    hr = rng.integers(0, 256, IMAGE_SHAPE, dtype=np.uint8)
    noise = rng.integers(-NOISE_LEVEL, NOISE_LEVEL + 1, IMAGE_SHAPE)
    sr = np.clip(hr.astype(np.int64) + noise, 0, 255).astype(np.uint8)
    return sr, hr


def _skimage_row(sr, hr, ours):
    """Table row for scikit-image's SSIM on the same float Y planes, or None without it."""
    try:
        from skimage.metrics import structural_similarity
    except ImportError:
        return None
    y_sr, y_hr = metrics._metric_plane(sr, hr, SCALE, "bench")

    def sk():
        return structural_similarity(y_sr, y_hr, gaussian_weights=True, sigma=metrics.SSIM_SIGMA,
                                     use_sample_covariance=False, data_range=utils.UINT8_MAX,
                                     K1=metrics.SSIM_K1, K2=metrics.SSIM_K2)
    t = median_time(sk, repeats=REPEATS)
    return (f"| scikit-image `structural_similarity` (same settings, on the same Y planes; "
            f"reference) | {t * 1e3:.1f} | value differs from `metrics.ssim` by "
            f"{abs(sk() - ours):.1e} |")


def _niqe_rows(hr):
    """Table rows timing ``metrics.niqe`` on ``hr`` and on the 2K DIV2K sample when present."""
    images = [(f"{hr.shape[1]}x{hr.shape[0]} RGB of the pair (noise)", hr)]
    path = SHARED_DATA / NIQE_2K
    if path.is_file():
        img = utils.load_image(path)
        images.append((f"{img.shape[1]}x{img.shape[0]} `{NIQE_2K.name}` (DIV2K)", img))
    rows = []
    for what, img in images:
        t = median_time(lambda: metrics.niqe(img), repeats=NIQE_REPEATS)
        rows.append(f"| `metrics.niqe` (no reference; {what}; median of {NIQE_REPEATS}) "
                    f"| {t * 1e3:.1f} | NIQE {metrics.niqe(img):.4f} |")
    return rows


def _set14_triple():
    """``(sr, hr, lr, what)``: Set14 baboon (SR = bicubic x4 of its LR file) or a synthetic
    image of its size without the data."""
    hr_path = SHARED_DATA / SET14_IMAGE / "HR" / f"{SET14_NAME}.png"
    lr_path = SHARED_DATA / SET14_IMAGE / "LR_bicubic" / f"X{SCALE}" / f"{SET14_NAME}x{SCALE}.png"
    if hr_path.is_file() and lr_path.is_file():
        hr = utils.modcrop(utils.load_image(hr_path), SCALE)
        lr = utils.load_image(lr_path)
        what = f"Set14 `{SET14_NAME}.png`"
    else:
        h, w, c = SET14_SHAPE
        coarse = np.random.default_rng(SEED).integers(
            0, 256, (h // SMOOTH_CELL + 2, w // SMOOTH_CELL + 2, c)).astype(np.float64)
        hr = np.clip(np.round(imresize(coarse, output_shape=(h, w))), 0, 255).astype(np.uint8)
        lr = imresize(hr, 1 / SCALE)
        what = "a smooth synthetic image (no Set14 here)"
    return imresize(lr, SCALE), hr, lr, what


def _random_lpips(net, folder):
    """``metrics.LPIPS(net)`` loaded from files of the official layouts with random values."""
    gen = torch.Generator().manual_seed(SEED)
    backbone = metrics._LPIPSBackbone(net)
    state = {f"features.{k}": torch.randn(v.shape, generator=gen) * LPIPS_WEIGHT_STD
             for k, v in backbone.features.state_dict().items()}
    linear = {f"lin{k}.model.1.weight": torch.rand((1, ch, 1, 1), generator=gen)
              for k, ch in enumerate(backbone.channels)}
    paths = Path(folder) / f"{net}_backbone.pth", Path(folder) / f"{net}_linear.pth"
    torch.save(state, paths[0])
    torch.save(linear, paths[1])
    return metrics.LPIPS(net, *paths)


def _every_metric_rows(lpips_models):
    """Rows timing each metric of ``metrics.METRICS`` on one Set14-sized image."""
    sr, hr, lr, what = _set14_triple()
    h, w = hr.shape[:2]
    rows = [f"Every metric on one Set14-sized image ({what}, {w}x{h}, SR = bicubic x{SCALE} of "
            f"its LR; `evaluate.score_image`, median of {REPEATS} runs):", "",
            "| metric | median time (ms) | value |", "|---|---:|---:|"]
    cases = [(m, None, "") for m in metrics.METRICS if m != "lpips"]
    cases += [("lpips", model, f" ({net}, random weights)") for net, model in lpips_models.items()]
    for metric, model, note in cases:
        def score():
            return evaluate.score_image(sr, hr, lr, SCALE, [metric], model)[0][metric]
        t = median_time(score, repeats=REPEATS)
        value = "(random weights)" if metric == "lpips" else tables.format_value(metric, score())
        rows.append(f"| {tables.metric_header(metric)}{note} | {t * 1e3:.1f} | {value} |")
    return rows + [""]


def _load_note():
    """The 1-minute load average against the core count (the machine may be shared)."""
    load, cores = os.getloadavg()[0], os.cpu_count()
    shared = " - shared with other work while measured" if load > 1 else ""
    return f"load average {load:.2f} on {cores} cores{shared}"


def run():
    """Time the metrics and the bicubic Set5+Set14 evaluation; return a Markdown section."""
    load_before = _load_note()
    sr, hr = _pair()
    h, w = IMAGE_SHAPE[:2]
    t_psnr = median_time(lambda: metrics.psnr(sr, hr, SCALE), repeats=REPEATS)
    t_ssim = median_time(lambda: metrics.ssim(sr, hr, SCALE), repeats=REPEATS)
    ours = metrics.ssim(sr, hr, SCALE)
    lines = ["## Metrics and evaluation", "",
             f"`metrics.psnr` / `metrics.ssim` on one {w}x{h} RGB pair (Y channel, {SCALE} px shaved; "
             f"median of {REPEATS} runs):", "",
             "| metric | median time (ms) | note |", "|---|---:|---|",
             f"| `metrics.psnr` | {t_psnr * 1e3:.1f} | PSNR {metrics.psnr(sr, hr, SCALE):.2f} dB |",
             f"| `metrics.ssim` (numpy float64, separable Gaussian, row strips) | {t_ssim * 1e3:.1f} "
             f"| SSIM {ours:.4f} |"]
    row = _skimage_row(sr, hr, ours)
    if row:
        lines.append(row)
    lines += _niqe_rows(hr)
    lines.append("")

    with tempfile.TemporaryDirectory() as tmp:
        lpips_models = {net: _random_lpips(net, tmp) for net in pretrained.LPIPS_NETS}
    lines += _every_metric_rows(lpips_models)

    bench_root = SHARED_DATA / "benchmark"
    if all((bench_root / s / "HR").is_dir() for s in EVAL_SETS):
        results = {}

        def run_eval(metrics, lpips_model=None):
            results.clear()
            results.update(evaluate.evaluate("bicubic", bench_root, EVAL_SETS, scale=SCALE,
                                             progress=False, metrics=metrics,
                                             lpips_model=lpips_model))
        t_fidelity = median_time(lambda: run_eval(["psnr", "ssim"]), repeats=EVAL_REPEATS)
        t_all = median_time(lambda: run_eval(metrics.METRICS, lpips_models["alex"]),
                            repeats=EVAL_REPEATS)
        n = sum(r["images"] for r in results.values())
        shown = {name: {k: v for k, v in r.items() if k != "lpips"} for name, r in results.items()}
        lines += [f"Bicubic evaluation of {' + '.join(EVAL_SETS)} ({n} images: read PNGs, MATLAB "
                  f"imresize x{SCALE}, the metrics) with `evaluate.evaluate('bicubic', ...)`, "
                  f"median of {EVAL_REPEATS} runs after one warm-up:", "",
                  "| metrics | median time (s) |", "|---|---:|",
                  f"| PSNR + SSIM (`metrics=['psnr', 'ssim']`) | {t_fidelity:.2f} |",
                  f"| all six (`metrics=metrics.METRICS`, LPIPS AlexNet) | {t_all:.2f} |", "",
                  evaluate.format_table(shown, title="bicubic"), "",
                  "LPIPS left out of the table: random weights here (timing only). "
                  "Published (README of the shared data): Set5 28.42 / 0.8104, "
                  "Set14 26.00 / 0.7027.", ""]
    else:
        lines += [f"Bicubic evaluation not timed: {bench_root} lacks {EVAL_SETS}.", ""]
    lines += [f"Machine load: {load_before} at the start, {_load_note()} at the end.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
