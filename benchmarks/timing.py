"""Timing helpers shared by the benchmarks: medians of repeated runs."""
import statistics
import time


def median_time(fn, repeats=5, warmup=1):
    """Median wall time in seconds of ``fn()`` over ``repeats`` runs after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
