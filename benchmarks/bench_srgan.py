"""SRGAN evidence: does stage 2 improve what it starts from? Measured on trained checkpoints.

Reads the runs made by ``train.py`` (nothing is trained here):

* ``runs/demo`` -- ``python train.py --config demo --out runs/demo`` (SRResNet, then SRGAN);
* ``runs/srgan_long`` (optional) -- the longer CPU run of stage 2 (command in the section).

and writes a Markdown section with: the table bicubic / SRResNet / SRGAN x PSNR-Y, SSIM-Y,
LR-PSNR, NIQE on the demo's held-out photos, Set5 and Set14 (those present); per-image counts
of where SRGAN's NIQE is lower than SRResNet's; a crop figure (bicubic | SRResNet | SRGAN | HR,
the most detailed square of each Set5 image, ``benchmarks/figures/srgan_demo_crops.png``); and
the validation curves of the long run (``benchmarks/figures/srgan_long_curves.png``).

    .venv/bin/python benchmarks/run_all.py srgan
    .venv/bin/python benchmarks/bench_srgan.py [RUN_DIR [LONG_RUN_DIR]]
"""
import csv
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import evaluate   # noqa: E402
import figures    # noqa: E402
import report     # noqa: E402
import tables
from config import SHARED_DATA, get_config   # noqa: E402

RUN_DIR = ROOT / "runs" / "demo"
LONG_RUN_DIR = ROOT / "runs" / "srgan_long"
FIGURES = HERE / "figures"
METRICS = ("psnr", "ssim", "lr_psnr", "niqe")
CROP_SET = "Set5"
CROP_FRACTION = 0.3      # crop side as a fraction of the image's shorter side
CROP_ZOOM = 2            # nearest-neighbour magnification of the crops in the figure
LONG_COMMAND = ("python train.py --config demo --stage srgan --out runs/srgan_long "
                "--set stage2.init=runs/demo/srresnet.pth --set data.train_list=T91_BSD200 "
                "--set stage2.time_budget_s=1200 --set stage2.epochs=100 "
                "--set data.patches_per_image=10")


def _methods(run_dir):
    return {"bicubic": "bicubic", "SRResNet": str(run_dir / "srresnet.pth"),
            "SRGAN": str(run_dir / "srgan.pth")}


def _sets(cfg):
    roots = [cfg.data.root, str(SHARED_DATA / "benchmark")]
    found, _ = report.find_sets(["test", "Set5", "Set14"], roots)
    return found


def evaluate_run(run_dir, methods=None):
    """``{method: {set: evaluate.evaluate result with per_image}}`` for ``methods``
    (``{label: checkpoint or 'bicubic'}``, default the demo's three) on the demo's sets."""
    cfg = get_config("demo")
    methods = methods or _methods(run_dir)
    return {label: {name: evaluate.evaluate(str(spec), root, [name], metrics=METRICS,
                                            progress=False, per_image=True)[name]
                    for name, root in _sets(cfg).items()}
            for label, spec in methods.items()}


def results_table(results):
    lines = ["| set | method | " + " | ".join(tables.metric_header(m) for m in METRICS) + " |",
             "|---|---|" + "---:|" * len(METRICS)]
    for name in next(iter(results.values())):
        for label, by_set in results.items():
            cells = [tables.format_value(m, by_set[name].get(m)) for m in METRICS]
            lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def niqe_counts(results):
    """Per set: on how many images SRGAN's NIQE is lower than SRResNet's."""
    rows = []
    for name in results["SRGAN"]:
        pairs = [(a["niqe"], b["niqe"]) for a, b in zip(results["SRGAN"][name]["per_image"],
                                                        results["SRResNet"][name]["per_image"])
                 if a.get("niqe") is not None and b.get("niqe") is not None]
        better = sum(a < b for a, b in pairs)
        rows.append(f"{name}: SRGAN's NIQE lower than SRResNet's on {better} of {len(pairs)} images")
    return rows


def crop_figure(run_dir, path):
    """Bicubic | SRResNet | SRGAN | HR crops of every image of :data:`CROP_SET` -> PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = get_config("demo")
    data = report.open_test_set(CROP_SET, [str(SHARED_DATA / "benchmark"), cfg.data.root])
    methods, _ = report.load_methods({"SRResNet": run_dir / "srresnet.pth",
                                      "SRGAN": run_dir / "srgan.pth"}, bicubic=False)
    rows = []
    for i in range(len(data)):
        lr, hr, name = data[i]
        top, left, side = figures.zoom_region(hr, CROP_FRACTION)
        images = [("bicubic", evaluate.load_method("bicubic")(lr))]
        images += [(label, method(lr)) for label, method in methods.items()] + [("HR", hr)]
        rows.append((name, [(label, img[top:top + side, left:left + side]) for label, img in images]))
    fig, axes = plt.subplots(len(rows), 4, figsize=(4 * 2.6, len(rows) * 2.6), squeeze=False)
    for r, (name, crops) in enumerate(rows):
        for c, (label, crop) in enumerate(crops):
            ax = axes[r][c]
            ax.imshow(np.kron(crop, np.ones((CROP_ZOOM, CROP_ZOOM, 1), crop.dtype))
                      if crop.ndim == 3 else crop, cmap="gray", interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(label)
            if c == 0:
                ax.set_ylabel(name)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def read_log(path):
    with open(path) as f:
        return [{k: (float(v) if v not in ("", None) else None) for k, v in row.items()}
                for row in csv.DictReader(f)]


def curve_figure(log, path):
    """Validation PSNR-Y, LR-PSNR and NIQE of a stage-2 log against the generator step."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in log if r.get("val_niqe") is not None]
    steps = [r["step"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, key, label in zip(axes, ("val_psnr", "val_lr_psnr", "val_niqe"),
                              ("PSNR-Y (dB) ↑", "LR-PSNR (dB) ↑", "NIQE ↓")):
        ax.plot(steps, [r[key] for r in rows], marker="o")
        ax.set_xlabel("generator step")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def long_run_table(log):
    lines = ["| epoch | step | PSNR-Y ↑ | LR-PSNR ↑ | NIQE ↓ | D(real) | D(fake) | it/s |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in log:
        if r.get("val_niqe") is None:
            continue
        fmt = lambda v, d: "–" if v is None else f"{v:.{d}f}"
        lines.append(f"| {int(r['epoch'])} | {int(r['step'])} | {fmt(r['val_psnr'], 2)} | "
                     f"{fmt(r['val_lr_psnr'], 2)} | {fmt(r['val_niqe'], 3)} | "
                     f"{fmt(r.get('d_real'), 3)} | {fmt(r.get('d_fake'), 3)} | "
                     f"{fmt(r.get('it_per_s'), 2)} |")
    return "\n".join(lines)


def run(run_dir=RUN_DIR, long_dir=LONG_RUN_DIR):
    run_dir, long_dir = Path(run_dir), Path(long_dir)
    out = ["## SRGAN: stage 2 against the SRResNet it starts from", ""]
    if not (run_dir / "srgan.pth").is_file():
        return "\n".join(out + [f"No {run_dir}/srgan.pth: run `python train.py --config demo "
                                f"--out {run_dir.relative_to(ROOT)}` first."])
    results = evaluate_run(run_dir)
    out += [f"Checkpoints of `python train.py --config demo --out runs/demo` ({run_dir.name}); "
            "PSNR/SSIM on Y with 4 px shaved, LR-PSNR on RGB of the whole image "
            "(`imresize(SR, 1/4)` vs the LR input), NIQE with 4 px cropped.", "",
            results_table(results), ""]
    out += [f"* {line}" for line in niqe_counts(results)] + [""]
    fig = crop_figure(run_dir, FIGURES / "srgan_demo_crops.png")
    out += [f"![crops]({fig.relative_to(ROOT)})", "",
            f"Crops ({CROP_ZOOM}x nearest zoom) of the most detailed {CROP_FRACTION:.0%} square "
            f"of each {CROP_SET} image: `{fig.relative_to(ROOT)}`.", ""]
    if (long_dir / "srgan_log.csv").is_file():
        log = read_log(long_dir / "srgan_log.csv")
        curves = curve_figure(log, FIGURES / "srgan_long_curves.png")
        long_results = {"SRResNet": results["SRResNet"], "SRGAN (demo, 600 steps)": results["SRGAN"],
                        f"SRGAN (long run, {int(log[-1]['step'])} steps)":
                            evaluate_run(long_dir, {"SRGAN": long_dir / "srgan.pth"})["SRGAN"]}
        out += ["### A longer CPU run of stage 2", "", f"`{LONG_COMMAND}`", "",
                "On the 290 photos of T91 + BSD200 (`create_data_lists.py --from-folder "
                "../shared/data/train_sets/T91 ../shared/data/train_sets/BSD200 --name "
                "T91_BSD200`), for 20 minutes of wall time; the lr falls to 1e-5 halfway. "
                "The steps per second (it/s) show how busy the machine was: alone it runs "
                "about 3.7 steps/s. "
                "Validation on the demo's held-out photos after every epoch (epoch 0 = the "
                "SRResNet it starts from):", "", long_run_table(log), "",
                f"![curves]({curves.relative_to(ROOT)})", "", results_table(long_results), ""]
    return "\n".join(out)


if __name__ == "__main__":
    print(run(*sys.argv[1:3]))
