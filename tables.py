"""Results tables: the one formatter of metric values and Markdown tables, for the terminal
(train.py, evaluate.py), the notebooks and the report files (report.py, mos.py), and CSV cells.

A table cell of a metric shows its ``decimals`` of :data:`metrics.METRICS`, a CSV cell its
``csv_decimals``; a number that does not exist is :data:`NO_VALUE` (an empty CSV cell).
"""
import math

from metrics import METRICS

NO_VALUE = "–"
"""Table cell of a number that does not exist (metric not computed, set not evaluated, not
published)."""

ARROWS = {"higher": "↑", "lower": "↓"}
"""Header arrow of each better direction of :data:`metrics.METRICS`."""


def metric_header(metric):
    """Column header of ``metric`` with the arrow of its better direction, e.g. ``'NIQE ↓'``."""
    return f"{METRICS[metric].label} {ARROWS[METRICS[metric].better]}"


def format_value(metric, value):
    """Table cell of one value (float or None): the metric's ``decimals``, ``inf``, or
    :data:`NO_VALUE` for None."""
    if value is None:
        return NO_VALUE
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{METRICS[metric].decimals}f}"


def csv_value(metric, value):
    """CSV cell of one value: the metric's ``csv_decimals``, ``inf``, or empty for None."""
    if value is None:
        return ""
    return "inf" if value == float("inf") else f"{value:.{METRICS[metric].csv_decimals}f}"


def markdown_table(header, rows, right=()):
    """A GitHub Markdown table as text ending in a newline.

    Args:
        header: list of str; rows: lists of cells (``str()``-ed; ``|`` escaped, newlines made
            spaces).
        right: indexes of the right-aligned (numeric) columns; () = none.
    """
    def cell(v):
        return str(v).replace("|", "\\|").replace("\n", " ")

    def rule(i):
        return "---:" if i in right else "---"

    lines = ["| " + " | ".join(cell(h) for h in header) + " |",
             "|" + "|".join(rule(i) for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
