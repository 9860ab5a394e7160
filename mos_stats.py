"""The MOS study's statistics (``mos.py report``), computed from the ratings
(``mos_db.load_ratings``) with nothing written.

- the MOS of each method and of each (image, method), with its Student-t confidence interval
  and the counts of raters, ratings and each score (:func:`mean_ci`, :func:`summary`), and
  the same per retired item (:func:`retired_summary`); methods in table order
  (:func:`method_order`);
- the significance tests between methods: a Wilcoxon signed-rank test on per-rater means for
  each pair rated by enough raters (:func:`pairwise_tests`), Holm-adjusted (:func:`holm`).
"""
import math
from itertools import combinations

from mos_db import SCORES

CONFIDENCE = 0.95
"""The level of the MOS confidence intervals (a fraction in (0, 1))."""
MIN_RATERS_FOR_TESTS = 5
"""The fewest raters (who rated both methods) a significance test between two methods is run on:
below that a p-value would rest on too few people to say anything about raters in general."""


def mean_ci(scores, confidence=CONFIDENCE):
    """``(mean, half_width, n)``: the mean of ``scores`` and the half width of its Student-t
    confidence interval, ``t_{(1+c)/2, n-1} * s / sqrt(n)`` (s: sample standard deviation);
    half width NaN for a single score."""
    from scipy import stats

    n = len(scores)
    mean = sum(scores) / n
    if n < 2:
        return mean, math.nan, n
    sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1))
    return mean, stats.t.ppf((1 + confidence) / 2, n - 1) * sd / math.sqrt(n), n


def method_order(methods):
    """Methods in table order: the nearest anchor, the SR methods by name, the HR anchor."""
    rank = {"nearest": 0, "hr": 2}
    return sorted(methods, key=lambda m: (rank.get(m, 1), m))


def _stats_of(entries):
    """``{"mos", "ci", "n", "raters", "counts"}`` of ``[(rater, score)]``."""
    scores = [s for _, s in entries]
    mean, half, n = mean_ci(scores)
    return {"mos": mean, "ci": half, "n": n, "raters": len({r for r, _ in entries}),
            "counts": [scores.count(s) for s in SCORES]}


def summary(rows):
    """Per method, and per (image, method), of ``rows`` (``(rater, image, method, score, ...)``):
    ``{"mos", "ci", "n" (ratings), "raters", "counts"}`` (counts of each score 1..5). Returns
    ``(by_method, by_image)``."""
    per_method, per_image = {}, {}
    for rater, image, method, score, *_ in rows:
        per_method.setdefault(method, []).append((rater, score))
        per_image.setdefault((image, method), []).append((rater, score))
    return ({m: _stats_of(per_method[m]) for m in method_order(per_method)},
            {k: _stats_of(v) for k, v in sorted(per_image.items())})


def retired_summary(ratings):
    """The ratings of retired items, per item: ``[{"image", "method", "why", "retired" (unix
    time), "mos", "ci", "n", "raters", "counts"}]`` in order of retirement."""
    per_item = {}
    for r in ratings:
        if r.retired is not None:
            per_item.setdefault((r.retired, r.image, r.method, r.why), []).append(
                (r.rater, r.score))
    return [{"image": image, "method": method, "why": why, "retired": when, **_stats_of(v)}
            for (when, image, method, why), v in sorted(per_item.items())]


def holm(pvalues):
    """Holm-Bonferroni adjusted p-values (same order as ``pvalues``)."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def pairwise_tests(rows, min_raters=MIN_RATERS_FOR_TESTS):
    """A two-sided Wilcoxon signed-rank test between every pair of methods, at the rater level.

    Why this test: the ratings of one rater are not independent of each other (a harsh rater
    scores everything low), so a test that took every rating as an independent sample would
    count one person's opinion many times over (one rater's 25 ratings would give a "p = 0.004"
    that says nothing about raters in general). The unit is therefore the rater: each rater who
    rated both methods on at least one common image gives one pair of numbers, their mean score
    of A and of B over the images they rated with both (same images: no image effect). The
    signed-rank test asks whether the differences are centred on 0, using their ranks only (the
    scores are ordinal; no normality assumed); zero differences are left out, as Wilcoxon's
    original method does (``zero_method="wilcox"``). A pair with fewer than ``min_raters`` (int
    >= 1, default :data:`MIN_RATERS_FOR_TESTS`) such raters is not tested: ``w``, ``p`` and
    ``p_holm`` are None. The p-values of the pairs tested are also given Holm-adjusted.

    ``rows``: ``(rater, image, method, score, ...)`` with at most one score per (rater, image,
    method). Returns ``[{"a", "b", "raters", "ratings", "mean_a", "mean_b", "diff", "w", "p",
    "p_holm"}]``: raters = number of raters paired, ratings = the ratings their means rest on,
    mean_a / mean_b = the average of their means, diff = mean_a - mean_b (NaN when no rater
    rated both), w = the signed-rank statistic.
    """
    from scipy import stats

    scores, methods = {}, set()
    for rater, image, method, score, *_ in rows:
        scores.setdefault((rater, method), {})[image] = score
        methods.add(method)
    raters = sorted({rater for rater, _ in scores})
    tests = []
    for a, b in combinations(method_order(methods), 2):
        means_a, means_b, n_ratings = [], [], 0
        for rater in raters:
            of_a, of_b = scores.get((rater, a), {}), scores.get((rater, b), {})
            common = sorted(of_a.keys() & of_b.keys())
            if common:
                means_a.append(sum(of_a[i] for i in common) / len(common))
                means_b.append(sum(of_b[i] for i in common) / len(common))
                n_ratings += 2 * len(common)
        n = len(means_a)
        test = {"a": a, "b": b, "raters": n, "ratings": n_ratings,
                "mean_a": sum(means_a) / n if n else math.nan,
                "mean_b": sum(means_b) / n if n else math.nan, "w": None, "p": None,
                "p_holm": None}
        test["diff"] = test["mean_a"] - test["mean_b"]
        if n >= min_raters:
            if all(x == y for x, y in zip(means_a, means_b)):   # no difference at all
                test["w"], test["p"] = 0.0, 1.0
            else:
                res = stats.wilcoxon(means_a, means_b, zero_method="wilcox",
                                     alternative="two-sided")
                test["w"], test["p"] = float(res.statistic), float(res.pvalue)
        tests.append(test)
    tested = [t for t in tests if t["p"] is not None]
    for test, adjusted in zip(tested, holm([t["p"] for t in tested])):
        test["p_holm"] = adjusted
    return tests


