"""Matplotlib figures for the notebooks and the report: training curves and side-by-side SR
comparisons.

- Training curves: reading a stage's per-epoch log (``<name>_log.csv`` of ``train.py``,
  :func:`load_history`), where each epoch is drawn and which last epoch is partial
  (:func:`epoch_positions`), the figure of a history (:func:`plot_history`: losses, mean
  D(real) / D(fake), validation PSNR-Y / LR-PSNR / NIQE, the bicubic reference level) and of a
  trained stage of a run folder, titled with its checkpoint, recipe, loss and steps
  (:func:`stage_figure`).
- Side-by-side comparisons: the most detailed square of an image (:func:`zoom_region`), the
  titled panels LR | methods | HR of an item of ``report.compare_on_set``
  (:func:`comparison_panels`: metrics in the titles) and their figure, one row with a zoomed
  inset in each panel (:func:`comparison_figure`).

The numbers come from ``report.py`` (per-image metrics, checkpoint recipes) and ``tables.py``
(how a value is written); this module only draws. Images are uint8 numpy arrays ``(H,W)``
(gray) or ``(H,W,3)`` (RGB). matplotlib is imported inside the functions that draw, so that
importing this module does not load it.
"""
import csv
import math
import textwrap
from pathlib import Path

import numpy as np

import checkpoint
import report
import tables
import utils
from metrics import METRICS

# ----------------------------------------------------------------------------------------------
# Training curves
# ----------------------------------------------------------------------------------------------

CURVE_PANEL_INCHES = (2.5, 2.3)
"""Width and height of one panel of a training-curve figure, inches: four panels side by side
make :data:`CURVE_FIGURE_MAX_INCHES`."""

CURVE_PANELS_PER_ROW = 4
"""Panels per row of a training-curve figure (stage 2's seven: two rows of four)."""

CURVE_FIGURE_MAX_INCHES = 10.0
"""Widest training-curve figure, inches. Shrunk to a report page's text width (6-7 in, about
65%), its :data:`CURVE_FONT_SIZE` text prints at about 7 pt."""

CURVE_MAX_TICKS = 5
"""At most this many ticks (+1) on an axis of a training-curve panel: whole epochs, readable at
:data:`CURVE_FONT_SIZE`."""

TITLE_CHARS_PER_INCH = 8
"""Characters of a training-curve figure's title per inch of figure width (at
:data:`CURVE_FONT_SIZE` + 1 pt); a longer title is wrapped."""

CURVE_FONT_SIZE = 11
"""Font size (pt) of the tick labels, axis labels and panel titles of a training-curve figure;
legends one point smaller, the figure title one point larger."""

CURVE_TITLE_INCHES = 0.5
"""Height added to a training-curve figure for each line of its title, inches."""

CURVE_LEGEND_ROW_INCHES = 0.45
"""Height of one row of the legend under the panels (when no grid cell is spare), inches: its
entries take two lines."""

REFERENCE_LINES = {"val_psnr": "PSNR-Y {:.2f} dB", "val_niqe": "NIQE {:.2f}"}
"""History keys whose panels get the bicubic reference line (:func:`plot_history`), with how the
figure's legend states its level: validation PSNR-Y and NIQE. LR-PSNR is left out: bicubic lies
about 10 dB below any trained generator there, and its line would flatten the curve."""

REFERENCE_COLOR = "0.45"
"""Colour of the bicubic reference lines (a mid grey)."""

PARTIAL_EPOCH_LABEL = "partial epoch"
"""Legend of the hollow last point of a stage stopped inside an epoch (by its time budget)."""

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

CURVE_X_MARGIN = 0.4
"""Space left and right of the first and last epoch of a training-curve panel, in epochs: every
panel of a figure spans the same epochs, and a single epoch still gets whole-number ticks."""


def load_history(path):
    """Read a ``<name>_log.csv`` written by ``train.py`` -> list of per-epoch dicts (numbers as
    float/int, empty cells as None)."""
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            rows.append({k: (None if v in ("", None) else
                             int(v) if k in ("epoch", "step") else float(v)) for k, v in row.items()})
    return rows


def epoch_positions(history, steps_per_epoch=None):
    """Where each row of a stage's history is drawn, and which row is a partial epoch.

    ``history``: per-epoch dicts with ``epoch`` (int >= 0) and, when logged, ``step`` (int, the
    stage's steps done). ``steps_per_epoch``: int > 0, or None to take the most steps any earlier
    row added per epoch (unknown with a single trained epoch). A last row that added fewer steps
    than its epochs should have (a stage stopped by its time budget) is partial: it is placed at
    the previous epoch plus the fraction it ran. Returns ``(x, partial)``: a list of floats (the
    epochs), and ``None`` or ``(index, steps run, steps of a full epoch)`` of the partial row.
    """
    x = [float(row["epoch"]) for row in history]
    rows = [(row["epoch"], row.get("step")) for row in history]
    if len(rows) < 1 or any(step is None for _, step in rows):
        return x, None
    previous = [(0, 0)] + rows[:-1]
    spans = [(epoch - e0, step - s0) for (epoch, step), (e0, s0) in zip(rows, previous)]
    if steps_per_epoch is None:
        per_epoch = [steps / epochs for epochs, steps in spans[:-1] if epochs > 0]
        steps_per_epoch = max(per_epoch) if per_epoch else None
    elif steps_per_epoch <= 0:
        raise ValueError(f"steps_per_epoch={steps_per_epoch}: must be a positive number of steps")
    epochs, steps = spans[-1]
    if not steps_per_epoch or epochs <= 0 or steps >= epochs * steps_per_epoch:
        return x, None
    last = len(rows) - 1
    x[last] = previous[last][0] + steps / steps_per_epoch
    return x, (last, steps, int(round(steps_per_epoch)))


def _wrap_title(title, chars):
    """``title`` in lines of at most ``chars`` characters (int > 0), broken after its first
    ``": "`` first (file and recipe, then what it trained with), then between words (a path is
    never cut)."""
    if len(title) <= chars:
        return title
    head, sep, tail = title.partition(": ")
    parts = [head + sep.rstrip(), tail] if sep else [title]
    return "\n".join(textwrap.fill(part, chars, break_long_words=False, break_on_hyphens=False)
                     for part in parts if part)


def _plain_ticks(ax, x):
    """Tick labels as plain numbers (no ``+2.949e1`` offset, no scientific notation) and whole
    epochs on the x axis (every one of the epochs ``x`` when they are few)."""
    from matplotlib.ticker import FixedLocator, MaxNLocator, ScalarFormatter

    formatter = ScalarFormatter(useOffset=False)
    formatter.set_scientific(False)
    ax.yaxis.set_major_formatter(formatter)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=CURVE_MAX_TICKS))
    epochs = range(math.ceil(min(x)), math.floor(max(x)) + 1)
    ax.xaxis.set_major_locator(FixedLocator(epochs) if len(epochs) <= CURVE_MAX_TICKS + 1
                               else MaxNLocator(nbins=CURVE_MAX_TICKS, integer=True))


def plot_history(history, title="", steps_per_epoch=None, reference=None):
    """A figure of a stage's per-epoch history (list of dicts from ``train.run_stage`` or
    :func:`load_history`): generator content / adversarial loss, discriminator loss, mean
    D(real) / D(fake), validation PSNR, LR-PSNR and NIQE (stage 2), each against the epoch
    (stage 2's epoch 0 is the generator it starts from), at most :data:`CURVE_PANELS_PER_ROW`
    panels a row (stage 2: 2 x 4, :data:`CURVE_FIGURE_MAX_INCHES` wide), tick labels as plain
    numbers.

    ``steps_per_epoch`` (int > 0 or None): see :func:`epoch_positions`; a partial last epoch is
    drawn hollow at its fraction of an epoch, joined by a dashed line, and named in the legend
    under the panels. ``reference``: ``{history key: value}`` of the bicubic baseline on the
    same validation set (e.g. ``evaluate.bicubic_validation``); those of :data:`REFERENCE_LINES`
    with a value are drawn as a dotted line, their levels stated in the legend. The legend of
    the figure (partial epoch, bicubic) sits in the spare grid cell, else under the panels.
    Returns the Figure.
    """
    import matplotlib.pyplot as plt

    if not history:
        raise ValueError(f"plot_history: empty history{' of ' + title if title else ''}")
    with plt.rc_context({"font.size": CURVE_FONT_SIZE, "axes.titlesize": CURVE_FONT_SIZE,
                         "legend.fontsize": CURVE_FONT_SIZE - 1,
                         "figure.titlesize": CURVE_FONT_SIZE + 1}):
        return _plot_history(history, title, steps_per_epoch, reference)


def _legend_handles(partial, reference):
    """Entries of a training-curve figure's own legend: full and partial epoch (when ``partial``,
    the ``(index, steps run, steps of a full epoch)`` of :func:`epoch_positions`, is not None)
    and the bicubic level of every key of ``reference`` (``{history key: value}``, already
    restricted to :data:`REFERENCE_LINES` keys drawn in a panel). Returns a list of Line2D."""
    from matplotlib.lines import Line2D

    handles = []
    if partial is not None:
        _, steps, per_epoch = partial
        handles += [Line2D([], [], marker="o", color="0.3", label="epoch"),
                    Line2D([], [], marker="o", color="0.3", linestyle="--",
                           markerfacecolor="white",
                           label=f"{PARTIAL_EPOCH_LABEL}\n({steps:,} of {per_epoch:,} steps)")]
    if reference:
        levels = ", ".join(REFERENCE_LINES[k].format(v) for k, v in reference.items())
        handles.append(Line2D([], [], color=REFERENCE_COLOR, linestyle=":",
                              label=f"bicubic, validation set\n({levels})"))
    return handles


def _draw_panel(ax, name, keys, history, x, partial, reference):
    """One panel titled ``name``: a curve per history key of ``keys`` against the epochs ``x``
    (floats, :func:`epoch_positions`), the ``partial`` last epoch (or None) hollow and dashed,
    the dotted bicubic level of the keys in ``reference``; a legend when ``keys`` are several."""
    full = [i for i in range(len(history)) if partial is None or i != partial[0]]
    for key in keys:
        values = [np.nan if row.get(key) is None else row[key] for row in history]
        (line,) = ax.plot([x[i] for i in full], [values[i] for i in full], marker="o",
                          markersize=4, label=HISTORY_LABELS.get(key, key))
        if partial is not None:
            i = partial[0]
            ax.plot(x[i - 1:i + 1], values[i - 1:i + 1], linestyle="--", color=line.get_color())
            ax.plot([x[i]], [values[i]], marker="o", markersize=6, linestyle="none",
                    markerfacecolor="white", markeredgecolor=line.get_color())
        if key in reference:
            ax.axhline(reference[key], color=REFERENCE_COLOR, linestyle=":", linewidth=1.5)
    ax.set_title(name)
    ax.set_xlabel("epoch")
    ax.set_xlim(min(x) - CURVE_X_MARGIN, max(x) + CURVE_X_MARGIN)
    ax.grid(alpha=0.3)
    _plain_ticks(ax, x)
    if len(keys) > 1:
        ax.legend()


def _plot_history(history, title, steps_per_epoch, reference):
    """The body of :func:`plot_history` (inside its font settings): which panels and reference
    lines, the grid and figure size, then the panels and the figure's legend."""
    import matplotlib.pyplot as plt

    x, partial = epoch_positions(history, steps_per_epoch)
    panels = [(name, keys) for name, keys in HISTORY_PANELS
              if any(row.get(k) is not None for row in history for k in keys)]
    reference = {k: v for k, v in (reference or {}).items()
                 if v is not None and k in REFERENCE_LINES
                 and any(k in keys for _, keys in panels)}
    handles = _legend_handles(partial, reference)
    cols = min(len(panels), CURVE_PANELS_PER_ROW)
    rows = math.ceil(len(panels) / cols)
    width, height = CURVE_PANEL_INCHES
    legend_cols = min(len(handles), cols)
    legend_row = (CURVE_LEGEND_ROW_INCHES * math.ceil(len(handles) / legend_cols)
                  if handles and rows * cols == len(panels) else 0.0)
    fig_width = min(CURVE_FIGURE_MAX_INCHES, width * cols)
    title = _wrap_title(title or "", int(fig_width * TITLE_CHARS_PER_INCH))
    fig_height = height * rows + CURVE_TITLE_INCHES * (1 + title.count("\n")) + legend_row
    fig, axes = plt.subplots(rows, cols, squeeze=False, figsize=(fig_width, fig_height))
    spare = list(axes.flat[len(panels):])      # unused grid cells: the first holds the legend
    for ax in spare:
        ax.set_axis_off()
    for ax, (name, keys) in zip(axes.flat, panels):
        _draw_panel(ax, name, keys, history, x, partial, reference)
    if handles and spare:
        spare[0].legend(handles=handles, loc="center", frameon=False)
    elif handles:
        fig.legend(handles=handles, loc="lower center", ncol=legend_cols, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, legend_row / fig_height, 1, 1))
    return fig


def _loss_description(settings, stage2):
    """What a stage trained with, from a checkpoint's recorded settings: ``"L1 loss"`` or
    ``"VGG22 content + 0.001 x adversarial loss"``."""
    if not stage2:
        return f"{str(settings.get('stage1', {}).get('loss', '?')).upper()} loss"
    s2, vgg = settings.get("stage2", {}), settings.get("vgg", {})
    content = s2.get("content_loss", "?")
    if content == "vgg" and "i" in vgg:
        content = f"VGG{vgg['i']}{vgg['j']}"
    return f"{str(content).upper()} content + {s2.get('adv_weight', '?'):g} x adversarial loss"


def stage_figure(run_dir, name, reference=None):
    """The training curves of the stage ``name`` (``'srresnet'``, ``'srgan'`` ...) of the run in
    ``run_dir`` (a folder written by ``train.py`` / ``train.run_stage``): :func:`plot_history` of
    ``<name>_log.csv``, with the steps of a full epoch from the checkpoint ``<name>.pth`` (its
    clock's planned steps / its stage's epochs: a partial last epoch is drawn as such) and a
    title naming the file, its recipe (``report.source_of``: ``demo``, ``paper``, ``reference``
    ...), the loss and the steps trained. ``reference``: bicubic validation scores, see
    :func:`plot_history`. Raises FileNotFoundError naming a missing log or checkpoint."""
    run_dir = Path(run_dir)
    ckpt_path, log_path = run_dir / f"{name}.pth", run_dir / f"{name}_log.csv"
    for path in (log_path, ckpt_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: train the stage {name!r} into {run_dir} "
                                    f"first (train.run_stage / train.py --out {run_dir})")
    ckpt = checkpoint.load_checkpoint(ckpt_path)
    settings = checkpoint.recorded_settings(ckpt)
    stage2 = ckpt.get("stage") == settings.get("stage2", {}).get("name")
    epochs = settings.get("stage2" if stage2 else "stage1", {}).get("epochs")
    total = (ckpt.get("clock") or {}).get("total_steps")
    steps_per_epoch = total / epochs if total and epochs else None
    title = (f"{ckpt_path} ({report.source_of(ckpt_path, ckpt)} recipe): "
             f"{_loss_description(settings, stage2)}, {ckpt.get('step') or 0:,} steps")
    return plot_history(load_history(log_path), title, steps_per_epoch, reference)


# ----------------------------------------------------------------------------------------------
# Side-by-side comparisons
# ----------------------------------------------------------------------------------------------

ZOOM_FRACTION = 0.25
"""Side of the zoomed region, as a fraction of the image's shorter side."""

INSET_FRACTION = 0.42
"""Side of the zoom inset, as a fraction of the panel."""

PANEL_INCHES = 3.2
"""Width of one image panel of a comparison figure, inches."""

TITLE_INCHES = 0.8
"""Height added to a comparison figure for the two-line panel titles, inches."""

TITLE_METRICS = ("psnr", "lpips", "niqe")
"""Metrics in the panel titles of :func:`comparison_figure` (PSNR shown as ``xx.xx dB``)."""


def zoom_region(img, fraction=ZOOM_FRACTION):
    """The square of side ``fraction * min(H,W)`` with the most detail (largest sum of gradient
    magnitude of the gray/mean image) -> ``(top, left, side)`` in pixels. ``img``: uint8
    ``(H,W)`` or ``(H,W,3)``; ``fraction``: in (0, 1]."""
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


def _title(label, scores):
    """Panel title: the label, then PSNR / LPIPS / NIQE (those computed) on a second line.
    ``scores``: ``{metric: float or None}``."""

    parts = []
    for m in TITLE_METRICS:
        if scores.get(m) is not None:
            value = tables.format_value(m, scores[m])
            parts.append(f"{value} dB" if m == "psnr" else f"{METRICS[m].label} {value}")
    return f"{label}\n" + " / ".join(parts) if parts else label


def comparison_panels(item):
    """The panels of :func:`comparison_figure` for an item of ``report.compare_on_set``: a list
    of ``(title, image)``, uint8 images at the HR size: the LR nearest-upsampled by
    ``report.SCALE``, every method's SR with its PSNR / LPIPS / NIQE, the HR with its own
    NIQE."""
    panels = [("LR (nearest)", utils.nearest_upsample(item["lr"], report.SCALE))]
    panels += [(_title(label, item["metrics"][label]), sr) for label, sr in item["sr"].items()]
    panels.append((_title("HR", {"niqe": item["hr_niqe"]}), item["hr"]))
    return panels


def comparison_figure(item):
    """One row of panels (:func:`comparison_panels`: LR nearest | methods | HR) of an item of
    ``report.compare_on_set``, titles with PSNR / LPIPS / NIQE (the HR: its NIQE), each panel
    with a zoomed inset of the same region (:func:`zoom_region` of the HR, the inset placed in
    the corner farthest from it) and the region outlined. Returns the Figure."""
    import matplotlib.pyplot as plt

    panels = comparison_panels(item)
    top, left, side = zoom_region(item["hr"])
    h, w = item["hr"].shape[:2]
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
