"""The shipped reference generators (``weights/srresnet.pth``, ``weights/srgan.pth``): what they
score, whether SRGAN does what it is for, and a crop figure to look at. Nothing is trained here.

* the table bicubic / SRResNet / SRGAN x PSNR-Y, SSIM, LR-PSNR, NIQE on the demo's held-out
  photos (``data/demo``, built by the README's first command) and Set5 / Set14 (from
  ``../shared/data``), the same numbers as ``evaluate.py --model weights/<file>``;
* per set, on how many images SRGAN's NIQE is lower than SRResNet's;
* the acceptance lines of the shipped SRGAN: mean NIQE at least :data:`NIQE_GAIN` lower than
  the SRResNet's on Set5 and Set14, Set5 LR-PSNR at least :data:`MIN_LR_PSNR` dB, Set5 PSNR-Y
  at most :data:`MAX_PSNR_LOSS` dB under bicubic's;
* the file sizes and sha256 (as in ``weights/README.md``);
* crops (bicubic | SRResNet | SRGAN | HR) of every Set5 image:
  ``benchmarks/figures/reference_crops.png``.

    .venv/bin/python benchmarks/run_all.py reference
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from bench_srgan import FIGURES, crop_figure, evaluate_run, niqe_counts, results_table  # noqa: E402
from config import REFERENCE_WEIGHTS  # noqa: E402
from utils import sha256_file  # noqa: E402

NIQE_GAIN = 1.0          # SRGAN's mean NIQE must be this much lower than SRResNet's
MIN_LR_PSNR = 45.0       # dB: SRGAN must stay consistent with its input (NTIRE 2021's bar)
MAX_PSNR_LOSS = 1.0      # dB: SRGAN's Set5 PSNR-Y at most this far under bicubic's
CHECK_SETS = ("Set5", "Set14")


def acceptance(results):
    """The acceptance lines of the shipped SRGAN, each ending in 'yes' or 'NO'."""
    lines = []
    for name in CHECK_SETS:
        if name not in results["SRGAN"]:
            continue
        gain = results["SRResNet"][name]["niqe"] - results["SRGAN"][name]["niqe"]
        lines.append(f"{name}: NIQE {results['SRResNet'][name]['niqe']:.3f} -> "
                     f"{results['SRGAN'][name]['niqe']:.3f} (lower by {gain:.3f}; at least "
                     f"{NIQE_GAIN}: {'yes' if gain >= NIQE_GAIN else 'NO'})")
    if "Set5" in results["SRGAN"]:
        lr_psnr = results["SRGAN"]["Set5"]["lr_psnr"]
        ours, bicubic = results["SRGAN"]["Set5"]["psnr"], results["bicubic"]["Set5"]["psnr"]
        lines += [f"Set5: SRGAN LR-PSNR {lr_psnr:.2f} dB (at least {MIN_LR_PSNR}: "
                  f"{'yes' if lr_psnr >= MIN_LR_PSNR else 'NO'})",
                  f"Set5: SRGAN PSNR-Y {ours:.2f} dB, bicubic {bicubic:.2f} dB (at most "
                  f"{MAX_PSNR_LOSS} dB below bicubic: "
                  f"{'yes' if bicubic - ours <= MAX_PSNR_LOSS else 'NO'})"]
    return lines


def run():
    weights = {label: Path(path) for label, path in REFERENCE_WEIGHTS.items()}
    out = ["## The shipped reference models (`weights/`)", ""]
    missing = [str(p) for p in weights.values() if not p.is_file()]
    if missing:
        return "\n".join(out + [f"Missing: {', '.join(missing)}."])
    results = evaluate_run(ROOT / "weights", {"bicubic": "bicubic",
                                              **{k: str(v) for k, v in weights.items()}})
    out += ["PSNR/SSIM on Y with 4 px shaved, LR-PSNR of the SR image shrunk back by the "
            "MATLAB-exact imresize against the LR input, NIQE with 4 px cropped; `test` is the "
            "demo's two held-out photos.", "", results_table(results), ""]
    out += [f"* {line}" for line in niqe_counts(results) + acceptance(results)] + [""]
    out += ["| file | bytes | sha256 |", "|---|---:|---|"]
    out += [f"| `{p.relative_to(ROOT)}` | {p.stat().st_size:,} | `{sha256_file(p)}` |"
            for p in weights.values()] + [""]
    fig = crop_figure(ROOT / "weights", FIGURES / "reference_crops.png")
    out += [f"![crops]({fig.relative_to(ROOT)})", "",
            f"Crops (2x nearest zoom) of the most detailed square of each Set5 image: "
            f"`{fig.relative_to(ROOT)}`.", ""]
    return "\n".join(out)


if __name__ == "__main__":
    print(run())
