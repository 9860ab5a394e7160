"""Results tables and figures for the notebooks: config and results tables (Markdown/CSV),
published reference numbers, training curves, and side-by-side SR comparisons.

The notebooks (``train.ipynb``, ``test.ipynb``, ``super_resolution.ipynb``) call these
functions and only display what they return; the metrics themselves come from ``evaluate.py``
/ ``utils.py`` and the images from ``super_resolve.py``.

Conventions: images are uint8 numpy arrays ``(H,W)`` (gray) or ``(H,W,3)`` (RGB); a *method*
is an ``evaluate.SRMethod`` (bicubic or a generator: ``lr -> sr``), keyed by a display label;
results are ``{method label: {set: {"psnr": float dB, "ssim": float, "psnr_rgb": dB,
"lr_psnr": dB, "niqe": float, "lpips": float, "images": int, ...}}}``, the per-set dicts of
``evaluate.evaluate`` (only the metrics computed; see ``evaluate.METRICS`` / ``DIRECTION``).
"""
import csv
import io
from pathlib import Path

import numpy as np

import datasets
import evaluate
import utils

SCALE = 4
"""Upscaling factor of every table and figure here (the project is x4)."""

PUBLISHED_SOURCE = (
    "x4 PSNR (dB) / SSIM on the Y channel, RCAN protocol (MATLAB rgb2ycbcr Y, 4 px shaved): "
    "Bicubic, SRCNN, VDSR and EDSR as tabulated in the comparison tables of EDSR (Lim et al., "
    "CVPRW 2017) and RCAN (Zhang et al., ECCV 2018), copied from ../shared/data/README.md. "
    "FSRCNN as tabulated by LapSRN (Lai et al., CVPR 2017, Table 4; SSIM to 3 decimals; the "
    "FSRCNN paper itself reports 30.71 / 27.59 dB PSNR on Set5 / Set14). "
    "Bicubic / SRResNet / SRGAN (VGG54) (SRGAN paper) from Table 2 of the SRGAN paper (Ledig "
    "et al., CVPR 2017): PSNR only, because that paper's SSIM (daala) is not comparable. "
    "The course's transposed-convolution network has no published number.")
"""Where :data:`PUBLISHED_X4` comes from."""

PUBLISHED_X4 = {
    "Bicubic": {"Set5": (28.42, 0.8104), "Set14": (26.00, 0.7027), "B100": (25.96, 0.6675),
                "Urban100": (23.14, 0.6577), "Manga109": (24.89, 0.7866)},
    "SRCNN": {"Set5": (30.48, 0.8628), "Set14": (27.50, 0.7513), "B100": (26.90, 0.7101),
              "Urban100": (24.52, 0.7221), "Manga109": (27.58, 0.8555)},
    "FSRCNN": {"Set5": (30.72, 0.866), "Set14": (27.61, 0.755), "B100": (26.98, 0.715),
               "Urban100": (24.62, 0.728)},
    "VDSR": {"Set5": (31.35, 0.8838), "Set14": (28.01, 0.7674), "B100": (27.29, 0.7251),
             "Urban100": (25.18, 0.7524)},
    "EDSR": {"Set5": (32.46, 0.8968), "Set14": (28.80, 0.7876), "B100": (27.71, 0.7420),
             "Urban100": (26.64, 0.8033), "Manga109": (31.02, 0.9148)},
    "Bicubic (SRGAN paper)": {"Set5": (28.43, None), "Set14": (25.99, None), "B100": (25.94, None)},
    "SRResNet (SRGAN paper)": {"Set5": (32.05, None), "Set14": (28.49, None), "B100": (27.58, None)},
    "SRGAN (SRGAN paper)": {"Set5": (29.40, None), "Set14": (26.02, None), "B100": (25.16, None)},
}
"""Published x4 results ``{method: {set: (psnr dB, ssim or None)}}``; see :data:`PUBLISHED_SOURCE`."""

PUBLISHED_PREFIX = "published: "
"""Put before a published method's name in the combined results table."""

MISSING = "–"
"""Table cell of a number that does not exist (set not evaluated / not published)."""

ZOOM_FRACTION = 0.25
"""Side of the zoomed region, as a fraction of the image's shorter side."""

INSET_FRACTION = 0.42
"""Side of the zoom inset, as a fraction of the panel."""

PANEL_INCHES = 3.2
"""Width of one image panel of a comparison figure, inches."""

TITLE_INCHES = 0.8
"""Height added to a comparison figure for the two-line panel titles, inches."""

CURVE_PANEL_INCHES = (3.6, 3.0)
"""Width and height of one panel of a training-curve figure, inches."""

BYTES_PER_MB = 2 ** 20


# ----------------------------------------------------------------------------------------------
# Markdown helpers
# ----------------------------------------------------------------------------------------------

def markdown_table(header, rows):
    """A GitHub Markdown table; ``header`` a list of str, ``rows`` lists of cells (str()-ed,
    ``|`` escaped)."""
    def cell(v):
        return str(v).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(cell(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def flatten(cfg, prefix=""):
    """Nested dicts -> list of ``(dotted key, value)`` in insertion order."""
    items = []
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            items += flatten(value, name + ".")
        else:
            items.append((name, value))
    return items


def config_table(cfg):
    """The config (an EasyDict/dict) as a two-column Markdown table ``key | value``."""
    return markdown_table(["key", "value"], [(k, repr(v)) for k, v in flatten(cfg)])


def run_files(run_dir):
    """The checkpoints (``*.pth``) and training logs (``*_log.csv``) in ``run_dir``, sorted."""
    run_dir = Path(run_dir)
    return sorted(run_dir.glob("*.pth")) + sorted(run_dir.glob("*_log.csv"))


def files_table(paths):
    """Markdown table of files: path, whether it exists, size in MB."""
    rows = []
    for p in map(Path, paths):
        exists = p.is_file()
        rows.append((str(p), "yes" if exists else "no",
                     f"{p.stat().st_size / BYTES_PER_MB:.2f}" if exists else MISSING))
    return markdown_table(["file", "exists", "MB"], rows)


# ----------------------------------------------------------------------------------------------
# Training curves
# ----------------------------------------------------------------------------------------------

HISTORY_PANELS = (
    ("content loss (generator)", ("content_loss",)),
    ("adversarial loss (generator)", ("adv_loss",)),
    ("discriminator loss", ("d_loss",)),
    ("mean D(x)", ("d_real", "d_fake")),
    ("validation PSNR-Y (dB) ↑", ("val_psnr",)),
    ("validation LR-PSNR (dB) ↑", ("val_lr_psnr",)),
    ("validation NIQE ↓", ("val_niqe",)),
)
"""Panels of :func:`plot_history`: title and the history keys drawn in it; a panel whose keys
have no value in the history (e.g. the D panels of stage 1) is left out."""

HISTORY_LABELS = {"d_real": "D(real)", "d_fake": "D(fake)"}
"""Legend names of history keys (others use the key)."""


def load_history(path):
    """Read a ``<name>_log.csv`` written by ``train.py`` -> list of per-epoch dicts (numbers as
    float/int, empty cells as None)."""
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            rows.append({k: (None if v in ("", None) else
                             int(v) if k in ("epoch", "step") else float(v)) for k, v in row.items()})
    return rows


def plot_history(history, title=""):
    """A figure of a stage's per-epoch history (list of dicts from ``train.run_stage`` or
    :func:`load_history`): generator content / adversarial loss, discriminator loss, mean
    D(real) / D(fake), validation PSNR, LR-PSNR and NIQE (stage 2), each against the epoch
    (stage 2's epoch 0 is the generator it starts from). Returns the Figure."""
    import matplotlib.pyplot as plt

    if not history:
        raise ValueError(f"plot_history: empty history{' of ' + title if title else ''}")
    epochs = [row["epoch"] for row in history]
    panels = [(name, keys) for name, keys in HISTORY_PANELS
              if any(row.get(k) is not None for row in history for k in keys)]
    width, height = CURVE_PANEL_INCHES
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), height), squeeze=False)
    for ax, (name, keys) in zip(axes[0], panels):
        for key in keys:
            values = [np.nan if row.get(key) is None else row[key] for row in history]
            ax.plot(epochs, values, marker="o", label=HISTORY_LABELS.get(key, key))
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------
# Methods and test sets
# ----------------------------------------------------------------------------------------------

def load_methods(checkpoints, device="cpu", bicubic=True):
    """Load the generators of ``checkpoints`` (``{label: path}``) whose files exist.

    Returns ``(methods, missing)``: ``methods`` = ``{label: evaluate.SRMethod}`` in the given
    order, preceded by ``"Bicubic"`` (MATLAB-exact ``imresize``) when ``bicubic``; ``missing`` =
    ``{label: path}`` of the files that do not exist. A file that exists but is not a valid
    checkpoint raises the ValueError of ``models.load_generator`` (naming the file).
    """

    methods = {"Bicubic": evaluate.load_method(evaluate.BICUBIC, scale=SCALE)} if bicubic else {}
    missing = {}
    for label, path in checkpoints.items():
        if path and Path(path).is_file():
            methods[label] = evaluate.load_method(str(path), device=device, scale=SCALE)
            methods[label].name = label
        else:
            missing[label] = str(path)
    return methods, missing


def find_sets(names, roots, scale=SCALE):
    """Locate test sets: for each name the first root of ``roots`` where
    ``datasets.find_test_set`` finds it. Returns ``(found {name: root}, missing [names])``."""

    found, missing = {}, []
    for name in names:
        for root in roots:
            try:
                datasets.find_test_set(root, name, scale)
            except FileNotFoundError:
                continue
            found[name] = str(root)
            break
        else:
            missing.append(name)
    return found, missing


def open_test_set(name, roots, scale=SCALE):
    """``datasets.TestDataset`` of the set ``name`` in the first of ``roots`` holding it.
    Raises FileNotFoundError naming the set and the roots when none does."""

    found, _ = find_sets([name], roots, scale)
    if name not in found:
        raise FileNotFoundError(f"test set {name!r} not found under any of {list(map(str, roots))}")
    return datasets.TestDataset(*datasets.find_test_set(found[name], name, scale), scale)


def missing_notes(missing_methods=None, missing_sets=()):
    """Lines naming what was not evaluated: checkpoints ``{label: path}`` and set names."""
    notes = [f"{label}: no checkpoint at {path} (not evaluated)"
             for label, path in (missing_methods or {}).items()]
    notes += [f"{name}: test set not found (not evaluated)" for name in missing_sets]
    return notes


def load_lpips(net="alex", backbone_weights=None, linear_weights=None, device="cpu"):
    """The LPIPS model for the notebooks: ``(model, None)``, or ``(None, reason)`` when its
    weights cannot be had (offline, not in the torch.hub cache). Files given by path must work
    (FileNotFoundError / ValueError otherwise). See ``evaluate.load_lpips``."""

    try:
        return evaluate.load_lpips(net, backbone_weights, linear_weights, device), None
    except RuntimeError as e:
        return None, f"LPIPS not computed: {e}"


def evaluate_methods(methods, sets, device="cpu", progress=True, metrics=None, lpips_model=None,
                     lpips_net="alex", lpips_backbone=None, lpips_weights=None):
    """Every metric of every method on every set, measured by ``evaluate.evaluate_set``.

    ``methods``: ``{label: SRMethod | 'bicubic' | nn.Module | checkpoint path}``; ``sets``:
    ``{name: root}`` (from :func:`find_sets`); ``metrics``: names of ``evaluate.METRICS``, None =
    all that can run here (decided once, see ``evaluate.prepare_metrics``, with the LPIPS
    arguments). Returns ``{label: {set: result}}``, each result the per-set dict of
    ``evaluate.evaluate`` (``"psnr"``, ``"ssim"``, ..., ``"images"``, optional ``"unavailable"``
    / ``"skipped"``).
    """

    metrics, lpips_model, unavailable = evaluate.prepare_metrics(
        metrics, device, lpips_model, lpips_net, lpips_backbone, lpips_weights)
    results = {}
    for label, method in methods.items():
        if not isinstance(method, evaluate.SRMethod):
            method = evaluate.load_method(method, device, SCALE)
        results[label] = {name: evaluate.evaluate_set(method, root, name, SCALE, metrics,
                                                      lpips_model, unavailable, progress)
                          for name, root in sets.items()}
    return results


def metric_notes(results):
    """Lines naming the metrics not computed (once per reason) and the images left out of a
    mean, over every method of :func:`evaluate_methods` ``results``."""

    notes = []
    for label, per_set in results.items():
        notes += [n for n in evaluate.result_notes(per_set, prefix=f"{label}, ") if n not in notes]
    return notes


# ----------------------------------------------------------------------------------------------
# Results tables
# ----------------------------------------------------------------------------------------------

CSV_DECIMALS = {"psnr": 4, "ssim": 6, "psnr_rgb": 4, "lr_psnr": 4, "niqe": 4, "lpips": 6}
"""Decimals of each metric in ``results.csv``."""

METRICS_LEGEND = (
    f"PSNR / SSIM: Y channel of MATLAB rgb2ycbcr, {SCALE} px shaved (RCAN protocol); "
    f"PSNR-RGB: all RGB values, {SCALE} px shaved; LR-PSNR: MATLAB-bicubic downscaled SR vs the "
    f"LR input, whole image (NTIRE 2021 required >= 45 dB); NIQE: no-reference, {SCALE} px "
    f"cropped (PIRM 2018 / BasicSR); LPIPS v0.1 to the HR image, {SCALE} px shaved. "
    "↑ higher is better, ↓ lower is better.")
"""What each column of the results tables means."""


def _metrics_of(results, published=None):
    """Metrics with a value in ``results`` (any method, any set), in ``evaluate.METRICS`` order;
    PSNR and SSIM always when ``published`` rows are shown."""

    present = {m for per_set in results.values() for r in per_set.values() for m in r
               if m in evaluate.METRICS}
    if published:
        present |= {"psnr", "ssim"}
    return [m for m in evaluate.METRICS if m in present]


def table_rows(results, sets, published=PUBLISHED_X4):
    """Rows of the combined table: ``(method, source, {set: {metric: value} or None})``, first
    ``results`` (source 'this run'), then the ``published`` methods that have a number on one
    of ``sets`` (source 'published'; PSNR and SSIM only, SSIM None where not published)."""
    rows = []
    for label, per_set in results.items():
        rows.append((label, "this run", {s: per_set.get(s) for s in sets}))
    for label, per_set in (published or {}).items():
        if any(s in per_set for s in sets):
            rows.append((PUBLISHED_PREFIX + label, "published",
                         {s: dict(zip(("psnr", "ssim"), per_set[s])) if s in per_set else None
                          for s in sets}))
    return rows


def results_markdown(results, sets, published=PUBLISHED_X4):
    """The results as one Markdown table: a block of rows per set (this run's methods, then the
    published ones below them), a column per metric with the better direction in its header
    (``PSNR (dB) ↑`` ... ``NIQE ↓``, ``LPIPS ↓``); ``–`` where there is no number."""

    metrics = _metrics_of(results, published)
    rows = []
    for s in sets:
        for label, _, cells in table_rows(results, [s], published):
            if cells[s] is not None or label in results:
                rows.append([s, label] + [evaluate.format_value(m, (cells[s] or {}).get(m))
                                          for m in metrics])
    return markdown_table(["set", "method"] + [evaluate.metric_header(m) for m in metrics], rows)


def _csv_value(metric, value):
    if value is None:
        return ""
    return "inf" if value == float("inf") else f"{value:.{CSV_DECIMALS[metric]}f}"


def results_csv(results, sets, published=PUBLISHED_X4):
    """The same numbers as CSV text, one row per method: ``method, source`` then
    ``<set>_<metric>`` for every set and every metric of ``evaluate.METRICS`` (empty cells
    where there is no number)."""

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["method", "source"] + [f"{s}_{m}" for s in sets for m in evaluate.METRICS])
    for label, source, cells in table_rows(results, sets, published):
        writer.writerow([label, source] + [_csv_value(m, (cells[s] or {}).get(m))
                                           for s in sets for m in evaluate.METRICS])
    return out.getvalue()


def write_results(results, sets, out_dir, stem="results", published=PUBLISHED_X4, notes=()):
    """Write ``out_dir/<stem>.csv`` and ``out_dir/<stem>.md`` (atomically). The Markdown file
    holds the table, what the metrics are, the source of the published numbers and ``notes``
    (lines, e.g. the missing sets/checkpoints and the metrics not computed). Returns
    ``(csv_path, md_path)``."""
    out_dir = Path(out_dir)
    csv_path, md_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.md"
    markdown = (f"## x{SCALE} results\n\n"
                + results_markdown(results, sets, published)
                + f"\n{METRICS_LEGEND}\n\nPublished numbers: {PUBLISHED_SOURCE}\n")
    if notes:
        markdown += "\n" + "".join(f"- {n}\n" for n in notes)
    with utils.atomic_write(csv_path, "w") as f:
        f.write(results_csv(results, sets, published))
    with utils.atomic_write(md_path, "w") as f:
        f.write(markdown)
    return csv_path, md_path


# ----------------------------------------------------------------------------------------------
# Side-by-side comparisons
# ----------------------------------------------------------------------------------------------

def nearest_upsample(img, scale=SCALE):
    """uint8 ``(h,w[,C])`` -> ``(scale*h, scale*w[,C])`` by pixel repetition (shows the LR pixels)."""
    return np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)


def zoom_region(img, fraction=ZOOM_FRACTION):
    """The square of side ``fraction * min(H,W)`` with the most detail (largest sum of gradient
    magnitude of the gray/mean image) -> ``(top, left, side)`` in pixels."""
    gray = img.astype(np.float64)
    if gray.ndim == 3:
        gray = gray.mean(axis=2)
    h, w = gray.shape
    side = max(1, int(round(fraction * min(h, w))))
    gy, gx = np.gradient(gray)
    energy = np.hypot(gx, gy)
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = (integral[side:, side:] - integral[:-side, side:]
            - integral[side:, :-side] + integral[:-side, :-side])
    top, left = np.unravel_index(np.argmax(sums), sums.shape)
    return int(top), int(left), side


COMPARE_METRICS = ("psnr", "ssim", "lpips", "niqe")
"""Per-image metrics of :func:`compare_on_set` (LPIPS when a model is given)."""

TITLE_METRICS = ("psnr", "lpips", "niqe")
"""Metrics in the panel titles of :func:`comparison_figure` (PSNR shown as ``xx.xx dB``)."""


def _title(label, scores):
    """Panel title: the label, then PSNR / LPIPS / NIQE (those computed) on a second line."""

    parts = []
    for m in TITLE_METRICS:
        if scores.get(m) is not None:
            value = evaluate.format_value(m, scores[m])
            parts.append(f"{value} dB" if m == "psnr" else f"{evaluate.METRIC_LABELS[m]} {value}")
    return f"{label}\n" + " / ".join(parts) if parts else label


def compare_on_set(methods, dataset, out_dir, progress=True, lpips_model=None):
    """Super-resolve every image of ``dataset`` with every method, save the SR images and
    measure them.

    Args:
        methods: ``{label: evaluate.SRMethod}`` (from :func:`load_methods`): ``lr -> sr``.
        dataset: a ``datasets.TestDataset`` (items ``(lr, hr, name)``, uint8).
        out_dir: where ``<image>_<method>.png`` is written (method = label lower-cased, spaces
            -> ``_``), atomically.
        lpips_model: a ``models.LPIPS`` (from :func:`load_lpips`); None -> no LPIPS.

    Returns a list (one per image) of dicts: ``name``; ``panels`` = list of ``(title, image)``:
    LR (nearest-upsampled to the HR size), every method with its PSNR / LPIPS / NIQE, HR with
    its own NIQE; ``metrics`` = ``{label: {"psnr", "ssim", "lpips", "niqe"}}`` (those computed;
    None for an image too small for NIQE / LPIPS); ``hr_niqe`` (float or None); ``unavailable``
    = ``{metric: reason}`` of :data:`COMPARE_METRICS` not computed; ``region`` =
    :func:`zoom_region` of the HR; ``files`` = the PNGs.
    """
    from tqdm.auto import tqdm

    unavailable = {}
    if lpips_model is None:
        unavailable["lpips"] = "no LPIPS model (see report.load_lpips)"
    reason = evaluate.niqe_unavailable_reason()
    if reason:
        unavailable["niqe"] = reason
    metrics = [m for m in COMPARE_METRICS if m not in unavailable]
    out_dir = Path(out_dir)
    items = []
    for i in tqdm(range(len(dataset)), desc="images", disable=not progress, leave=False):
        lr, hr, name = dataset[i]
        panels, scores, files = [("LR (nearest)", nearest_upsample(lr))], {}, []
        for label, method in methods.items():
            sr = method(lr)
            scores[label], _ = evaluate.score_image(sr, hr, lr, SCALE, metrics, lpips_model)
            panels.append((_title(label, scores[label]), sr))
            path = out_dir / f"{name}_{label.lower().replace(' ', '_')}.png"
            utils.save_image(path, sr)
            files.append(path)
        hr_niqe = None
        if "niqe" in metrics:
            hr_niqe = evaluate.score_image(hr, hr, lr, SCALE, ["niqe"])[0]["niqe"]
        panels.append((_title("HR", {"niqe": hr_niqe}), hr))
        items.append({"name": name, "panels": panels, "metrics": scores, "hr_niqe": hr_niqe,
                      "unavailable": unavailable, "region": zoom_region(hr), "files": files})
    return items


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def comparison_markdown(items):
    """Per-image metrics of :func:`compare_on_set` items as a Markdown table: rows = images
    and their mean; a column per method with cells ``PSNR / SSIM / LPIPS / NIQE`` (those
    computed; the header says which, with the better direction), and the HR image's NIQE."""

    if not items:
        return markdown_table(["image"], [])
    labels = list(items[0]["metrics"])
    metrics = [m for m in COMPARE_METRICS if any(m in it["metrics"][label]
                                                  for it in items for label in labels)]
    what = " / ".join(evaluate.metric_header(m) for m in metrics)
    has_niqe = "niqe" in metrics

    def cells(scores_of, hr_niqe):
        row = [" / ".join(evaluate.format_value(m, scores_of(label).get(m)) for m in metrics)
               for label in labels]
        return row + ([evaluate.format_value("niqe", hr_niqe)] if has_niqe else [])

    rows = [[it["name"]] + cells(lambda label, it=it: it["metrics"][label], it["hr_niqe"])
            for it in items]
    mean = {label: {m: _mean([it["metrics"][label].get(m) for it in items]) for m in metrics}
            for label in labels}
    rows.append(["mean"] + cells(lambda label: mean[label],
                                 _mean([it["hr_niqe"] for it in items])))
    header = ["image"] + [f"{label}: {what}" for label in labels]
    return markdown_table(header + ([f"HR: {evaluate.metric_header('niqe')}"] if has_niqe
                                    else []), rows)


def comparison_figure(item):
    """One row of panels (LR nearest | methods | HR) of a :func:`compare_on_set` item, titles
    with PSNR / LPIPS / NIQE (the HR: its NIQE), each panel with a zoomed inset of the same
    region (placed in the corner farthest from it) and the region outlined. Returns the
    Figure."""
    import matplotlib.pyplot as plt

    panels = item["panels"]
    top, left, side = item["region"]
    h, w = panels[-1][1].shape[:2]
    fig, axes = plt.subplots(1, len(panels), squeeze=False,
                             figsize=(PANEL_INCHES * len(panels), PANEL_INCHES * h / w + TITLE_INCHES))
    # inset corner opposite to the region's centre (axes fractions; y up)
    below = top + side / 2 > h / 2
    right = left + side / 2 > w / 2
    x0 = 0.0 if right else 1.0 - INSET_FRACTION
    y0 = 1.0 - INSET_FRACTION if below else 0.0
    for ax, (title, img) in zip(axes[0], panels):
        kw = {"cmap": "gray", "vmin": 0, "vmax": 255} if img.ndim == 2 else {}
        ax.imshow(img, interpolation="nearest", **kw)
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
        inset = ax.inset_axes([x0, y0, INSET_FRACTION, INSET_FRACTION])
        inset.imshow(img, interpolation="nearest", **kw)
        inset.set_xlim(left - 0.5, left + side - 0.5)
        inset.set_ylim(top + side - 0.5, top - 0.5)
        inset.set_xticks([])
        inset.set_yticks([])
        ax.indicate_inset_zoom(inset, edgecolor="yellow")
    fig.suptitle(item["name"])
    fig.tight_layout()
    return fig
