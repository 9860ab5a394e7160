"""Regenerate BENCHMARKS.md: run every ``benchmarks/bench_*.py`` and collect their sections.

Usage (from the project root)::

    .venv/bin/python benchmarks/run_all.py            # all benchmarks -> BENCHMARKS.md
    .venv/bin/python benchmarks/run_all.py data train # only bench_data.py and bench_train.py

Each ``bench_<name>.py`` defines ``run() -> str``, a Markdown section with medians of several
runs and ratios measured in the same process. With a subset, the sections of the other
benchmarks already in BENCHMARKS.md are kept.
"""
import argparse
import importlib
import os
import platform
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

OUTPUT = ROOT / "BENCHMARKS.md"
SECTION_MARK = "<!-- bench:{} -->"


def machine_description():
    """One line naming the CPU, core count, torch version and GPU (if any)."""
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} cores, {gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__}, torch threads {torch.get_num_threads()}")


def available():
    return sorted(p.stem[len("bench_"):] for p in HERE.glob("bench_*.py"))


def read_sections():
    """Existing sections of BENCHMARKS.md keyed by benchmark name."""
    if not OUTPUT.exists():
        return {}
    text = OUTPUT.read_text()
    parts = re.split(r"<!-- bench:(\w+) -->\n", text)
    return {parts[i]: parts[i + 1].rstrip() + "\n" for i in range(1, len(parts) - 1, 2)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default all: {', '.join(available())})")
    args = parser.parse_args(argv)
    names = args.names or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; available: {available()}")

    sections = read_sections()
    for name in names:
        print(f"running bench_{name} ...", flush=True)
        start = time.perf_counter()
        body = importlib.import_module(f"bench_{name}").run().rstrip() + "\n"
        stamp = time.strftime("%Y-%m-%d")
        sections[name] = (f"{body}\n_Measured {stamp} on {machine_description()} "
                          f"with `.venv/bin/python benchmarks/run_all.py {name}` "
                          f"({time.perf_counter() - start:.0f} s)._\n")
        print(body)

    header = ("# Benchmarks\n\nEvery number below was measured by the command named under its section; "
              "regenerate all of them with `.venv/bin/python benchmarks/run_all.py`. Times are medians "
              "of several runs; ratios compare runs made in the same process.\n")
    text = header + "".join(f"\n{SECTION_MARK.format(n)}\n{sections[n]}" for n in sorted(sections))
    tmp = OUTPUT.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, OUTPUT)
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
