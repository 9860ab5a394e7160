"""Timing of the evaluation metrics (utils.psnr / utils.ssim) and of a bicubic benchmark run.

The metrics are timed on a synthetic Urban100-sized RGB pair (1280x1024; SR = HR plus noise),
so no data is needed; scikit-image's ``structural_similarity`` with the same settings (Gaussian
weights, sigma 1.5, population covariance) on the same Y planes is timed beside it as a
reference and its value compared. The bicubic evaluation of Set5 + Set14 (``evaluate.evaluate``,
reading the PNG files of ``../shared/data/benchmark``) is timed when that data is present.
The no-reference ``utils.niqe`` is timed on the HR image of the pair and, when present, on the
2K DIV2K sample ``train_samples/DIV2K/DIV2K_train_HR/0004.png``.

``run()`` returns a Markdown section; ``python benchmarks/bench_metrics.py`` prints it.
"""
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import evaluate  # noqa: E402
import utils  # noqa: E402
from config import SHARED_DATA  # noqa: E402
from timing import median_time  # noqa: E402

IMAGE_SHAPE = (1024, 1280, 3)  # an Urban100-sized RGB image (H, W, C)
NOISE_LEVEL = 10               # SR = HR + uniform noise in [-10, 10] gray levels
SCALE = 4                      # x4: also the border shaved by the protocol
REPEATS = 7                    # timed runs of each metric (median reported)
EVAL_REPEATS = 3               # timed runs of the Set5 + Set14 evaluation
EVAL_SETS = ["Set5", "Set14"]
NIQE_REPEATS = 3               # timed runs of utils.niqe (median reported)
NIQE_2K = Path("train_samples") / "DIV2K" / "DIV2K_train_HR" / "0004.png"  # under SHARED_DATA
SEED = 0


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
    y_sr, y_hr = utils._metric_plane(sr, hr, SCALE, "bench")

    def sk():
        return structural_similarity(y_sr, y_hr, gaussian_weights=True, sigma=utils.SSIM_SIGMA,
                                     use_sample_covariance=False, data_range=utils.UINT8_MAX,
                                     K1=utils.SSIM_K1, K2=utils.SSIM_K2)
    t = median_time(sk, repeats=REPEATS)
    return (f"| scikit-image `structural_similarity` (same settings, on the same Y planes; "
            f"reference) | {t * 1e3:.1f} | value differs from `utils.ssim` by "
            f"{abs(sk() - ours):.1e} |")


def _niqe_rows(hr):
    """Table rows timing ``utils.niqe`` on ``hr`` and on the 2K DIV2K sample when present."""
    images = [(f"{hr.shape[1]}x{hr.shape[0]} RGB of the pair (noise)", hr)]
    path = SHARED_DATA / NIQE_2K
    if path.is_file():
        img = utils.load_image(path)
        images.append((f"{img.shape[1]}x{img.shape[0]} `{NIQE_2K.name}` (DIV2K)", img))
    rows = []
    for what, img in images:
        t = median_time(lambda: utils.niqe(img), repeats=NIQE_REPEATS)
        rows.append(f"| `utils.niqe` (no reference; {what}; median of {NIQE_REPEATS}) "
                    f"| {t * 1e3:.1f} | NIQE {utils.niqe(img):.4f} |")
    return rows


def run():
    """Time psnr/ssim and the bicubic Set5+Set14 evaluation; return a Markdown section."""
    sr, hr = _pair()
    h, w = IMAGE_SHAPE[:2]
    t_psnr = median_time(lambda: utils.psnr(sr, hr, SCALE), repeats=REPEATS)
    t_ssim = median_time(lambda: utils.ssim(sr, hr, SCALE), repeats=REPEATS)
    ours = utils.ssim(sr, hr, SCALE)
    lines = ["## Metrics and evaluation", "",
             f"`utils.psnr` / `utils.ssim` on one {w}x{h} RGB pair (Y channel, {SCALE} px shaved; "
             f"median of {REPEATS} runs):", "",
             "| metric | median time (ms) | note |", "|---|---:|---|",
             f"| `utils.psnr` | {t_psnr * 1e3:.1f} | PSNR {utils.psnr(sr, hr, SCALE):.2f} dB |",
             f"| `utils.ssim` (numpy float64, separable Gaussian, row strips) | {t_ssim * 1e3:.1f} "
             f"| SSIM {ours:.4f} |"]
    row = _skimage_row(sr, hr, ours)
    if row:
        lines.append(row)
    lines += _niqe_rows(hr)
    lines.append("")

    bench_root = SHARED_DATA / "benchmark"
    if all((bench_root / s / "HR").is_dir() for s in EVAL_SETS):
        results = {}

        def run_eval():
            results.update(evaluate.evaluate("bicubic", bench_root, EVAL_SETS, scale=SCALE,
                                             progress=False))
        t_eval = median_time(run_eval, repeats=EVAL_REPEATS)
        n = sum(r["images"] for r in results.values())
        lines += [f"Bicubic evaluation of {' + '.join(EVAL_SETS)} ({n} images: read PNGs, MATLAB "
                  f"imresize x{SCALE}, PSNR + SSIM) with `evaluate.evaluate('bicubic', ...)`: "
                  f"**{t_eval:.2f} s** (median of {EVAL_REPEATS} runs after one warm-up).", "",
                  evaluate.format_table(results, title="bicubic"), "",
                  "Published (README of the shared data): Set5 28.42 / 0.8104, "
                  "Set14 26.00 / 0.7027.", ""]
    else:
        lines += [f"Bicubic evaluation not timed: {bench_root} lacks {EVAL_SETS}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
