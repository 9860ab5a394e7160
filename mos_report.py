"""The MOS study's report files (``mos.py report``): ``mos.md``, the CSVs and ``mos.png`` of a
study database.

- the Markdown report: MOS per method and per image, the calibration anchors rated, the pairwise
  tests and the retired items (:func:`report_markdown`);
- the same numbers at full precision as CSV files (:func:`report_csvs`);
- the figure: MOS with its interval and the distribution of the scores (:func:`report_figure`);
- writing them all together or none (:func:`write_together`, :func:`write_report`).
"""
import contextlib
import csv
import io
import math
import os
from datetime import datetime, timezone
from pathlib import Path

import tables
import utils
from mos_db import RETIRED_CHANGED, RETIRED_MISSING, SCORES, load_ratings
from mos_images import ANCHOR_METHODS, ANCHOR_NAMES
from mos_stats import (CONFIDENCE, MIN_RATERS_FOR_TESTS, pairwise_tests, retired_summary,
                       summary)


def _fmt(value, digits=2):
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.{digits}f}"


P_FLOOR = 0.001   # smaller p-values are written "<0.001"


def _p(value):
    return "–" if value is None else f"<{P_FLOOR}" if value < P_FLOOR else f"{value:.3f}"


def _utc(unix_time):
    return datetime.fromtimestamp(unix_time, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _table(header, rows):
    """A Markdown table (``tables.markdown_table``) without its final newline."""
    return tables.markdown_table(header, rows).rstrip("\n")


def _plural(n, word):
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def anchor_note(by_method):
    """One sentence: which calibration anchors were rated, with how many ratings and raters
    (or that none was)."""
    rated = [a for a in ANCHOR_METHODS if a in by_method]
    if not rated:
        return ("No calibration anchor (nearest-neighbour upscale, HR image) was rated: the MOS "
                "values are not tied to the ends of the scale.")
    parts = [f"{ANCHOR_NAMES[a]} `{a}` ({_plural(by_method[a]['n'], 'rating')} by "
             f"{_plural(by_method[a]['raters'], 'rater')})" for a in rated]
    missing = [f"{ANCHOR_NAMES[a]} `{a}`" for a in ANCHOR_METHODS if a not in rated]
    return (f"Calibration anchors rated: {', '.join(parts)}"
            + (f"; not rated: {', '.join(missing)}" if missing else "") + ".")


def report_markdown(by_method, by_image, tests, raters, retired=()):
    """The report's Markdown: overall MOS table, per-image table, pairwise tests and the
    retired items (``retired``: ``mos_stats.retired_summary``); ``raters``: raters of the current
    items (int)."""
    pct = int(CONFIDENCE * 100)
    overall = _table(["method", "MOS", f"{pct}% CI", "ratings", "raters"]
                     + [str(s) for s in SCORES],
                     [[m, _fmt(s["mos"]), f"± {_fmt(s['ci'])}", s["n"], s["raters"]]
                      + s["counts"] for m, s in by_method.items()])
    methods = list(by_method)
    images = sorted({i for i, _ in by_image})
    per_image = _table(["image"] + methods, [
        [image] + [f"{_fmt(by_image[(image, m)]['mos'])} ± {_fmt(by_image[(image, m)]['ci'])} "
                   f"(n={by_image[(image, m)]['n']})" if (image, m) in by_image else "–"
                   for m in methods] for image in images])
    pairs = _table(["A", "B", "raters", "ratings", "mean A", "mean B", "A − B", "W", "p",
                    "p (Holm)"],
                   [[t["a"], t["b"], t["raters"], t["ratings"], _fmt(t["mean_a"]),
                     _fmt(t["mean_b"]), _fmt(t["diff"]), _fmt(t["w"], 1),
                     _p(t["p"]) if t["p"] is not None else
                     f"not tested ({t['raters']} < {MIN_RATERS_FOR_TESTS} raters)",
                     _p(t["p_holm"])] for t in tests])
    if not any(t["p"] is not None for t in tests):
        pairs += (f"\n\nNo pair is tested: no two methods were rated by {MIN_RATERS_FOR_TESTS} "
                  f"or more of the same raters ({_plural(raters, 'rater')} in all). The MOS "
                  f"above describe these raters only.")
    n_retired = sum(r["n"] for r in retired)
    retired_table = _table(
        ["image", "method", "retired", "why", "MOS", "ratings", "raters"],
        [[r["image"], r["method"], _utc(r["retired"]), r["why"], _fmt(r["mos"]), r["n"],
          r["raters"]] for r in retired]) if retired else "None: every rated item is current."
    return "\n\n".join([
        "# Mean opinion score (MOS)",
        f"{_plural(sum(s['n'] for s in by_method.values()), 'rating')} by "
        f"{_plural(raters, 'rater')} of {_plural(len(images), 'image')}; scores 1 (bad) .. 5 "
        f"(excellent), methods hidden from the raters, each rater in their own random order (MOS "
        f"protocol of Ledig et al., CVPR 2017). {anchor_note(by_method)}"
        + (f" Not counted here: {_plural(n_retired, 'rating')} of "
           f"{_plural(len(retired), 'retired item')} (see Retired items)." if retired else ""),
        f"## Per method\n\nMOS ± half width of the {pct}% Student-t confidence interval over the "
        f"ratings; \"ratings\" and \"raters\" say how many scores and how many people each MOS "
        f"rests on. The interval treats the ratings as independent, which the ratings of one "
        f"rater are not: with few raters it is too narrow. The last columns count each "
        f"score.\n\n{overall}",
        f"## Per image\n\nMOS ± half width of the {pct}% interval (n = ratings, one per "
        f"rater).\n\n{per_image}",
        f"## Pairwise tests\n\nTwo-sided Wilcoxon signed-rank test on the raters' own mean "
        f"scores: each rater who rated both A and B gives one pair (their mean of A and of B "
        f"over the images they rated with both), so a rater counts once, not once per rating. "
        f"Rank-based (ordinal scores, no normality assumed); zero differences left out. Run "
        f"only when at least {MIN_RATERS_FOR_TESTS} raters rated both methods; p (Holm) is "
        f"adjusted for the number of pairs tested. \"ratings\": the ratings the raters' means "
        f"rest on.\n\n{pairs}",
        f"## Retired items\n\nItems taken out of the study after they were rated, because "
        f"their file was deleted or left out of the study (`{RETIRED_MISSING}`) or changed "
        f"(`{RETIRED_CHANGED}`: the new content is a new item); their ratings are kept here and "
        f"left out of everything above.\n\n{retired_table}",
    ]) + "\n"


def _csv(header, rows):
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def report_csvs(by_method, by_image, tests, retired=()):
    """``{file name: CSV text}``: per method, per image, pairwise tests (p, w, p_holm empty when
    not tested), retired items (full precision)."""
    counts = [f"n_{s}" for s in SCORES]
    test_keys = ("a", "b", "raters", "ratings", "mean_a", "mean_b", "diff", "w", "p", "p_holm")
    return {
        "mos_methods.csv": _csv(["method", "mos", "ci95", "n", "raters"] + counts,
                                [[m, s["mos"], s["ci"], s["n"], s["raters"]] + s["counts"]
                                 for m, s in by_method.items()]),
        "mos_images.csv": _csv(["image", "method", "mos", "ci95", "n", "raters"] + counts,
                               [[i, m, s["mos"], s["ci"], s["n"], s["raters"]] + s["counts"]
                                for (i, m), s in by_image.items()]),
        "mos_tests.csv": _csv(list(test_keys), [["" if t[k] is None else t[k] for k in test_keys]
                                                for t in tests]),
        "mos_retired.csv": _csv(["image", "method", "retired_utc", "why", "mos", "ci95", "n",
                                 "raters"] + counts,
                                [[r["image"], r["method"], _utc(r["retired"]), r["why"], r["mos"],
                                  r["ci"], r["n"], r["raters"]] + r["counts"] for r in retired]),
    }


FIGURE_SIZE = (10, 4)
FIGURE_DPI = 120
SCORE_COLOURS = ("#d7191c", "#fdae61", "#ffffbf", "#a6d96a", "#1a9641")
SCORE_LABELS = {1: "bad", 2: "poor", 3: "fair", 4: "good", 5: "excellent"}


def report_figure(by_method, raters):
    """The figure as PNG bytes: MOS with its confidence interval per method (left) and the
    distribution of the scores per method as stacked shares (right), as in the SRGAN paper's
    figures; ``raters`` (int) goes in the title."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(by_method)
    x = range(len(methods))
    fig, (left, right) = plt.subplots(1, 2, figsize=FIGURE_SIZE)
    try:
        left.errorbar(x, [by_method[m]["mos"] for m in methods],
                      yerr=[0 if math.isnan(by_method[m]["ci"]) else by_method[m]["ci"]
                            for m in methods], fmt="o", capsize=5)
        left.set(xticks=list(x), xticklabels=methods, ylim=(1, 5), ylabel="MOS",
                 title=f"MOS with {int(CONFIDENCE * 100)}% CI ({_plural(raters, 'rater')})")
        left.grid(axis="y", alpha=0.3)
        bottom = [0.0] * len(methods)
        for k, score in enumerate(SCORES):
            share = [by_method[m]["counts"][k] / by_method[m]["n"] for m in methods]
            right.bar(x, share, bottom=bottom, color=SCORE_COLOURS[k], edgecolor="grey",
                      label=f"{score} {SCORE_LABELS[score]}")
            bottom = [b + s for b, s in zip(bottom, share)]
        right.set(xticks=list(x), xticklabels=methods, ylim=(0, 1), ylabel="share of ratings",
                  title="Distribution of scores")
        right.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=FIGURE_DPI)
    finally:
        plt.close(fig)
    return buf.getvalue()


def write_together(files, what="report"):
    """Write ``{path: bytes}`` so that a failure (a full disk, no permission) leaves all the
    previous files as they were: each file is written and fsynced to a temporary name beside it
    (:func:`utils.atomic_write`) and only when every one is on disk are they renamed over the old
    ones (renames need no space). A failure -> ``utils.WriteError`` naming the file, and no
    temporary file is left."""
    with contextlib.ExitStack() as stack:
        for path, data in files.items():
            f = stack.enter_context(utils.atomic_write(path, "wb", what=what))
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return list(files)


def write_report(db_path, out_dir):
    """Write ``mos.md``, the CSVs and ``mos.png`` of the study ``db_path`` into ``out_dir``,
    all rendered in memory first and then replaced together (:func:`write_together`); returns
    the paths."""
    ratings = load_ratings(db_path)
    current = [r for r in ratings if r.retired is None]
    if not current:
        raise ValueError(f"--db {db_path}: no ratings of current items yet (only "
                         f"{_plural(len(ratings), 'rating')} of retired items)")
    by_method, by_image = summary(current)
    tests = pairwise_tests(current)
    retired = retired_summary(ratings)
    raters = len({r.rater for r in current})
    texts = {"mos.md": report_markdown(by_method, by_image, tests, raters, retired)}
    texts.update(report_csvs(by_method, by_image, tests, retired))
    files = {Path(out_dir) / name: text.encode("utf-8") for name, text in texts.items()}
    files[Path(out_dir) / "mos.png"] = report_figure(by_method, raters)
    return write_together(files)


