"""Results tables for the notebooks and the methods and test sets they measure.

- Run tables: the configuration and the files a training run wrote (Markdown).
- Published numbers: the x4 PSNR / SSIM of the literature and their source.
- Methods: which checkpoints to load (the shipped reference models for missing ones), their
  labels, image-file tags and recipe, loading them, the table of where each comes from.
- Test sets: finding and opening them under the notebooks' ``data_roots``, notes on what is
  missing.
- Evaluation: every metric of every method on every set (LPIPS model loading, notes on the
  metrics not computed) and the results tables (Markdown, CSV, the two files).
- Side-by-side comparisons: super-resolving a set's images with every method, saving the SR
  images and their per-image metrics (:func:`compare_on_set`), the per-image table.
- After training: the tables ``train.py`` prints, bicubic and the trained checkpoints on
  ``cfg.train.eval_sets`` (:func:`report_training`), and where each checkpoint stopped
  (:func:`print_provenance`).

The notebooks (``train.ipynb``, ``test.ipynb``, ``super_resolution.ipynb``) call these
functions and only display what they return; their figures are drawn by ``figures.py``. The
metrics themselves come from ``evaluate.py`` / ``metrics.py``, the table cells from
``tables.py`` and the images from ``tiling.py`` (through ``evaluate.SRMethod``).

Conventions: images are uint8 numpy arrays ``(H,W)`` (gray) or ``(H,W,3)`` (RGB); a *method*
is an ``evaluate.SRMethod`` (bicubic or a generator: ``lr -> sr``), keyed by a display label;
results are ``{method label: {set: {"psnr": float dB, "ssim": float, "psnr_rgb": dB,
"lr_psnr": dB, "niqe": float, "lpips": float, "images": int, ...}}}``, the per-set dicts of
``evaluate.evaluate`` (only the metrics computed; see ``metrics.METRICS``).
"""
import csv
import io
import re
from pathlib import Path

import numpy as np

import checkpoint
import config
import datasets
import evaluate
import run_clock
import runtime
import tables
import utils
from metrics import METRICS
from progress import progress_bar

SCALE = config.get_config().scale
"""Upscaling factor of every table, method and image here: the configuration's (x4, the
paper's)."""

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

BYTES_PER_MB = 2 ** 20
"""Bytes in a megabyte of :func:`files_table` (MiB)."""


# ----------------------------------------------------------------------------------------------
# Markdown helpers
# ----------------------------------------------------------------------------------------------

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
    return tables.markdown_table(["key", "value"], [(k, repr(v)) for k, v in flatten(cfg)])


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
                     f"{p.stat().st_size / BYTES_PER_MB:.2f}" if exists else tables.NO_VALUE))
    return tables.markdown_table(["file", "exists", "MB"], rows)


# ----------------------------------------------------------------------------------------------
# Methods and test sets
# ----------------------------------------------------------------------------------------------

REFERENCE_SOURCE = "reference"
"""The source named in the labels of the shipped reference models (``config.REFERENCE_WEIGHTS``,
weights/README.md): "SRGAN (reference)", never the paper's model."""

BICUBIC_LABEL = "Bicubic"
"""Table label of the bicubic baseline (MATLAB-exact ``imresize``)."""


def reference_fallback(checkpoints, reference=None):
    """Put the shipped reference model in for each missing checkpoint that has one.

    ``checkpoints``: ``{label: path}`` (a notebook's parameter); ``reference``: ``{label: path}``
    of the stand-ins, default ``config.REFERENCE_WEIGHTS`` (SRResNet and SRGAN). Returns
    ``(checkpoints, note)``: a new dict in the same order where each label of ``reference``
    whose file does not exist maps to its reference file (when that exists), and one line
    saying which files were missing and which reference models stand in (with the labels they
    get, :data:`REFERENCE_SOURCE`), or None when nothing was replaced.
    """
    reference = config.REFERENCE_WEIGHTS if reference is None else reference
    out, replaced = {}, []
    for label, path in checkpoints.items():
        stand_in = reference.get(label)
        if (not path or not Path(path).is_file()) and stand_in and Path(stand_in).is_file():
            out[label] = str(stand_in)
            replaced.append((label, path, stand_in))
        else:
            out[label] = path
    if not replaced:
        return out, None
    note = ("not trained yet: " + ", ".join(f"{label} ({path})" for label, path, _ in replaced)
            + "; using the shipped reference models instead, labelled "
            + ", ".join(f"'{method_label(label, REFERENCE_SOURCE)}' ({Path(ref).name})"
                        for label, _, ref in replaced)
            + " (a quarter of the paper's SRResNet, trained on a CPU: weights/README.md)")
    return out, note


def source_of(path, ckpt):
    """The source named in a checkpoint's labels: :data:`REFERENCE_SOURCE` for a file of
    ``config.REFERENCE_WEIGHTS``, else the recipe that made it (``checkpoint.recipe_of``: 'paper',
    'demo', 'smoke', 'paper srgan-vgg22', ..., 'custom'). ``path``: str or Path; ``ckpt``: its
    dict (``checkpoint.load_checkpoint``)."""
    shipped = {Path(p).resolve() for p in config.REFERENCE_WEIGHTS.values()}
    if Path(path).resolve() in shipped:
        return REFERENCE_SOURCE
    return checkpoint.recipe_of(ckpt)


def method_label(label, source):
    """A table / figure label naming where a model comes from: ``"SRGAN (demo)"``."""
    return f"{label} ({source})"


def file_tag(label):
    """``label`` as the method part of an image file name ``<image>_<tag>.png``: lower case,
    each run of characters other than letters and digits as one ``-`` ("SRGAN best" ->
    "srgan-best"); never an underscore, which ``mos_images.scan_images`` reads as the separator."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "method"


def load_methods(checkpoints, device="cpu", bicubic=True):
    """Load the generators of ``checkpoints`` (``{label: path}``) whose files exist.

    Returns ``(methods, missing)``: ``methods`` = ``{display label: evaluate.SRMethod}`` in the
    given order, preceded by :data:`BICUBIC_LABEL` (MATLAB-exact ``imresize``) when ``bicubic``;
    a checkpoint's display label names its source (:func:`method_label` of :func:`source_of`,
    e.g. "SRGAN (demo)", "SRGAN (reference)") and is the method's ``name``; its ``tag``
    (:func:`file_tag` of the given label) names its image files and ``path`` is its file.
    ``missing`` = ``{label: path}`` of the files that do not exist. A file that exists but is
    not a valid checkpoint raises the ValueError of ``checkpoint.load_generator`` (naming the file).
    See :func:`reference_fallback` for the stand-ins of missing SRResNet / SRGAN files.
    """

    methods, missing = {}, {}
    if bicubic:
        methods[BICUBIC_LABEL] = evaluate.SRMethod(BICUBIC_LABEL, SCALE,
                                                   tag=file_tag(evaluate.BICUBIC))
    for label, path in checkpoints.items():
        if path and Path(path).is_file():
            method = evaluate.load_method(str(path), device=device, scale=SCALE)
            method.name = method_label(label, source_of(path, method.checkpoint))
            method.tag = file_tag(label)
            methods[method.name] = method
        else:
            missing[label] = str(path)
    return methods, missing


def method_files(methods):
    """``{label: file}`` of the methods of :func:`load_methods` loaded from a file (the "file"
    column of the results tables)."""
    return {label: m.path for label, m in methods.items() if getattr(m, "path", None)}


def methods_markdown(methods):
    """A Markdown table of where each loaded model comes from: method, file, recipe
    (:func:`source_of`), stage, epoch and step of the checkpoint, and whether the weights are the
    EMA average. ``methods``: ``{label: evaluate.SRMethod}`` (bicubic is left out)."""
    rows = []
    for label, m in methods.items():
        ckpt = m.checkpoint
        if ckpt is None:
            continue
        exported = ckpt.get("exported_from") or {}
        ema = bool(ckpt.get("generator_ema")) or bool(exported.get("ema"))
        rows.append([label, m.path or tables.NO_VALUE, source_of(m.path, ckpt),
                     ckpt.get("stage") or tables.NO_VALUE, ckpt.get("epoch", tables.NO_VALUE),
                     f"{ckpt.get('step') or 0:,}", "EMA" if ema else "trained"])
    return tables.markdown_table(["method", "file", "recipe", "stage", "epoch", "step", "weights"], rows)


def _searched(name, roots):
    """The folders looked in for the set ``name`` under ``roots`` (for messages)."""
    return f"<root>/{name}/HR or <root>/benchmark/{name}/HR, root in data_roots {list(map(str, roots))}"


def find_sets(names, roots, scale=SCALE, required=False):
    """Locate test sets: for each name the first root of ``roots`` where
    ``datasets.find_test_set`` finds it. Returns ``(found {name: root}, missing [names])``.
    With ``required``, finding none of them raises FileNotFoundError (one line naming the
    roots searched and the parameter to set, ``data_roots``)."""

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
    if required and not found:
        raise FileNotFoundError(
            f"none of the test sets {list(names)} found ({_searched('<set>', roots)}): set "
            f"data_roots to the folders that hold them (after the README's first command: "
            f"data/demo for the set 'test', ../shared/data/benchmark for Set5 / Set14), or "
            f"download them with `python create_data_lists.py --download`")
    return found, missing


def open_test_set(name, roots, scale=SCALE):
    """``datasets.TestDataset`` of the set ``name`` in the first of ``roots`` holding it.
    Raises FileNotFoundError (one line naming the set, the roots searched and the parameter to
    set, ``data_roots``) when none does."""

    found, _ = find_sets([name], roots, scale)
    if name not in found:
        raise FileNotFoundError(
            f"test set {name!r} not found ({_searched(name, roots)}): set data_roots to the "
            f"folder that holds it (e.g. ../shared/data/benchmark for Set5 / Set14, data/demo "
            f"for the demo's set 'test'), or download it with "
            f"`python create_data_lists.py --download`")
    return datasets.TestDataset(*datasets.find_test_set(found[name], name, scale), scale)


def missing_notes(missing_methods=None, missing_sets=(), roots=None):
    """Lines naming what was not evaluated: checkpoints ``{label: path}`` and set names (with
    the ``roots`` searched, when given)."""
    notes = [f"{label}: no checkpoint at {path} (not evaluated)"
             for label, path in (missing_methods or {}).items()]
    where = f" under data_roots {list(map(str, roots))}" if roots is not None else ""
    notes += [f"{name}: test set not found{where} (not evaluated)" for name in missing_sets]
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
    ``{name: root}`` (from :func:`find_sets`); ``metrics``: names of ``METRICS``, None =
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

METRICS_LEGEND = (
    f"PSNR / SSIM: Y channel of MATLAB rgb2ycbcr, {SCALE} px shaved (RCAN protocol); "
    f"PSNR-RGB: all RGB values, {SCALE} px shaved; LR-PSNR: MATLAB-bicubic downscaled SR vs the "
    f"LR input, whole image (NTIRE 2021 required >= 45 dB); NIQE: no-reference, {SCALE} px "
    f"cropped (PIRM 2018 / BasicSR); LPIPS v0.1 to the HR image, {SCALE} px shaved. "
    "↑ higher is better, ↓ lower is better.")
"""What each column of the results tables means."""


def _metrics_of(results, published=None):
    """Metrics with a value in ``results`` (any method, any set), in ``METRICS`` order;
    PSNR and SSIM always when ``published`` rows are shown."""

    present = {m for per_set in results.values() for r in per_set.values() for m in r
               if m in METRICS}
    if published:
        present |= {"psnr", "ssim"}
    return [m for m in METRICS if m in present]


def table_rows(results, sets, published=PUBLISHED_X4, files=None):
    """Rows of the combined table: ``(method, source, file, {set: {metric: value} or None})``,
    first ``results`` (source 'this run', file from ``files`` = ``{label: path}``, see
    :func:`method_files`, else :data:`NO_VALUE`), then the ``published`` methods that have a
    number on one of ``sets`` (source 'published', file :data:`NO_VALUE`; PSNR and SSIM only,
    SSIM None where not published)."""
    rows = []
    for label, per_set in results.items():
        rows.append((label, "this run", (files or {}).get(label) or tables.NO_VALUE,
                     {s: per_set.get(s) for s in sets}))
    for label, per_set in (published or {}).items():
        if any(s in per_set for s in sets):
            rows.append((PUBLISHED_PREFIX + label, "published", tables.NO_VALUE,
                         {s: dict(zip(("psnr", "ssim"), per_set[s])) if s in per_set else None
                          for s in sets}))
    return rows


def results_markdown(results, sets, published=PUBLISHED_X4, files=None):
    """The results as one Markdown table: a block of rows per set (this run's methods, then the
    published ones below them), a column per metric with the better direction in its header
    (``PSNR (dB) ↑`` ... ``NIQE ↓``, ``LPIPS ↓``); ``–`` where there is no number. With
    ``files`` (``{label: path}``, :func:`method_files`) a ``file`` column after the method says
    which checkpoint each row measured."""

    metrics = _metrics_of(results, published)
    rows = []
    for s in sets:
        for label, _, file, cells in table_rows(results, [s], published, files):
            if cells[s] is not None or label in results:
                rows.append([s, label] + ([file] if files is not None else [])
                            + [tables.format_value(m, (cells[s] or {}).get(m)) for m in metrics])
    header = ["set", "method"] + (["file"] if files is not None else [])
    return tables.markdown_table(header + [tables.metric_header(m) for m in metrics], rows)


def results_csv(results, sets, published=PUBLISHED_X4, files=None):
    """The same numbers as CSV text, one row per method: ``method, source, file`` (the
    checkpoint of ``files``, empty for bicubic and the published rows) then ``<set>_<metric>``
    for every set and every metric of ``METRICS`` (empty cells where there is no
    number)."""

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["method", "source", "file"]
                    + [f"{s}_{m}" for s in sets for m in METRICS])
    for label, source, file, cells in table_rows(results, sets, published, files):
        writer.writerow([label, source, "" if file == tables.NO_VALUE else file]
                        + [tables.csv_value(m, (cells[s] or {}).get(m))
                           for s in sets for m in METRICS])
    return out.getvalue()


def write_results(results, sets, out_dir, stem="results", published=PUBLISHED_X4, notes=(),
                  files=None):
    """Write ``out_dir/<stem>.csv`` and ``out_dir/<stem>.md`` (atomically; ``out_dir`` is
    created when missing). The Markdown file holds the table (with the ``file`` column of
    ``files``), what the metrics are, the source of the published numbers and ``notes`` (lines,
    e.g. the missing sets/checkpoints and the metrics not computed). Returns
    ``(csv_path, md_path)``."""
    out_dir = Path(out_dir)
    csv_path, md_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.md"
    markdown = (f"## x{SCALE} results\n\n"
                + results_markdown(results, sets, published, files)
                + f"\n{METRICS_LEGEND}\n\nPublished numbers: {PUBLISHED_SOURCE}\n")
    if notes:
        markdown += "\n" + "".join(f"- {n}\n" for n in notes)
    with utils.atomic_write(csv_path, "w") as f:
        f.write(results_csv(results, sets, published, files))
    with utils.atomic_write(md_path, "w") as f:
        f.write(markdown)
    return csv_path, md_path


# ----------------------------------------------------------------------------------------------
# Side-by-side comparisons: the SR images and their per-image metrics (drawn by figures.py)
# ----------------------------------------------------------------------------------------------

COMPARE_METRICS = ("psnr", "ssim", "lpips", "niqe")
"""Per-image metrics of :func:`compare_on_set` (LPIPS when a model is given)."""


def compare_on_set(methods, dataset, out_dir, progress=True, lpips_model=None):
    """Super-resolve every image of ``dataset`` with every method, save the SR images and
    measure them.

    Args:
        methods: ``{label: evaluate.SRMethod}`` (from :func:`load_methods`): ``lr -> sr``.
        dataset: a ``datasets.TestDataset`` (items ``(lr, hr, name)``, uint8).
        out_dir: where ``<image>_<tag>.png`` is written (the method's ``tag``, see
            :func:`file_tag`; e.g. ``baby_srgan.png``), atomically; created when missing.
        lpips_model: a ``metrics.LPIPS`` (from :func:`load_lpips`); None -> no LPIPS.

    Returns a list (one per image) of dicts: ``name``; ``lr`` and ``hr`` (uint8 ``(h,w,3)`` and
    ``(SCALE*h,SCALE*w,3)``, or gray ``(h,w)`` / ``(H,W)``); ``sr`` = ``{label: image}`` (as
    ``hr``), in the order of ``methods``; ``metrics`` = ``{label: {"psnr", "ssim", "lpips",
    "niqe"}}`` (those computed; None for an image too small for NIQE / LPIPS); ``hr_niqe`` (float
    or None); ``unavailable`` = ``{metric: reason}`` of :data:`COMPARE_METRICS` not computed;
    ``files`` = the PNGs (Paths). ``figures.comparison_figure`` draws an item,
    :func:`comparison_markdown` tabulates them.
    """
    unavailable = {}
    if lpips_model is None:
        unavailable["lpips"] = "no LPIPS model (see report.load_lpips)"
    reason = evaluate.niqe_unavailable_reason()
    if reason:
        unavailable["niqe"] = reason
    metrics = [m for m in COMPARE_METRICS if m not in unavailable]
    out_dir = Path(out_dir)
    items = []
    for i in progress_bar(range(len(dataset)), lines=evaluate.SET_PROGRESS_LINES, desc="images",
                          unit="img", disable=not progress, leave=False):
        lr, hr, name = dataset[i]
        srs, scores, files = {}, {}, []
        for label, method in methods.items():
            sr = method(lr)
            srs[label] = sr
            scores[label], _ = evaluate.score_image(sr, hr, lr, SCALE, metrics, lpips_model)
            path = out_dir / f"{name}_{getattr(method, 'tag', None) or file_tag(label)}.png"
            utils.save_image(path, sr)
            files.append(path)
        hr_niqe = None
        if "niqe" in metrics:
            hr_niqe = evaluate.score_image(hr, hr, lr, SCALE, ["niqe"])[0]["niqe"]
        items.append({"name": name, "lr": lr, "hr": hr, "sr": srs, "metrics": scores,
                      "hr_niqe": hr_niqe, "unavailable": unavailable, "files": files})
    return items


def _mean(values):
    """Mean of the values that are not None (floats) -> float, or None when there is none."""
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def comparison_markdown(items):
    """Per-image metrics of :func:`compare_on_set` items as a Markdown table: rows = images
    and their mean; a column per method with cells ``PSNR / SSIM / LPIPS / NIQE`` (those
    computed; the header says which, with the better direction), and the HR image's NIQE."""

    if not items:
        return tables.markdown_table(["image"], [])
    labels = list(items[0]["metrics"])
    metrics = [m for m in COMPARE_METRICS if any(m in it["metrics"][label]
                                                  for it in items for label in labels)]
    what = " / ".join(tables.metric_header(m) for m in metrics)
    has_niqe = "niqe" in metrics

    def cells(scores_of, hr_niqe):
        row = [" / ".join(tables.format_value(m, scores_of(label).get(m)) for m in metrics)
               for label in labels]
        return row + ([tables.format_value("niqe", hr_niqe)] if has_niqe else [])

    rows = [[it["name"]] + cells(lambda label, it=it: it["metrics"][label], it["hr_niqe"])
            for it in items]
    mean = {label: {m: _mean([it["metrics"][label].get(m) for it in items]) for m in metrics}
            for label in labels}
    rows.append(["mean"] + cells(lambda label: mean[label],
                                 _mean([it["hr_niqe"] for it in items])))
    header = ["image"] + [f"{label}: {what}" for label in labels]
    return tables.markdown_table(header + ([f"HR: {tables.metric_header('niqe')}"] if has_niqe
                                    else []), rows)




# ----------------------------------------------------------------------------------------------
# The tables train.py prints after training
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


def stage_label(name, preset):
    """The label of a stage's checkpoint ``name`` trained with ``preset``, e.g. "SRGAN (demo)":
    a result of a reduced preset is never read as the paper's model."""
    return method_label(METHOD_NAMES.get(name, name), preset)


def print_provenance(files):
    """After the tables: the checkpoint file of each row (``{label: path}``) and, for a stage
    that its time budget stopped early, where it stopped (``run_clock.budget_note``)."""
    for label, path in files.items():
        if not Path(path).is_file():
            continue
        clock = checkpoint.load_checkpoint(path).get("clock") or {}
        note = run_clock.budget_note(label, clock)
        print(f"{label}: {path}, {clock.get('step', 0):,} steps"
              + (f"; {note}" if note else ""), flush=True)


def report_training(cfg, checkpoints, progress=False):
    """Print one table per evaluation set: bicubic and each checkpoint (``{label: path}``) x
    PSNR-Y, SSIM-Y, LR-PSNR, NIQE (and LPIPS when available), measured by ``evaluate.evaluate``
    on ``cfg.train.eval_sets`` (each in the first of :func:`eval_roots` that has it; missing
    sets are named and skipped). Returns ``{label: {set: scores}}``, or None when nothing is
    configured or found."""
    roots = eval_roots(cfg)
    found, missing = find_sets(list(cfg.train.get("eval_sets") or []), roots, cfg.scale)
    for name in missing:
        print(f"evaluation set {name!r} not found under {roots}: skipped", flush=True)
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
        print(tables.markdown_table(header, rows, right=range(1, len(header))), end="")
    for m, reason in unavailable.items():
        if m in REPORT_METRICS:
            print(f"{METRICS[m].label} not computed: {reason.splitlines()[0]}")
    return results
