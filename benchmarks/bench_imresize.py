"""Timing of imresize.py on DIV2K-sized images (synthetic pixels, so no data is needed).

``run()`` returns a Markdown section; ``python benchmarks/bench_imresize.py`` prints it.
"""
import platform
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from imresize import imresize, imresize_torch  # noqa: E402
from timing import median_time  # noqa: E402

HR_SHAPE = (2040, 1356, 3)
"""A DIV2K-sized RGB image (the largest side of DIV2K is 2040 px)."""
LR_SHAPE = (510, 339, 3)
"""Its x4 low-resolution counterpart."""
SCALE = 4  # the x4 factor of the SRGAN paper
REPEATS = 7
"""Timed runs per case (after one warm-up run); the median is reported."""
SEED = 0


def run():
    """Time the main imresize cases; return a Markdown section (heading ``## imresize``)."""
    rng = np.random.default_rng(SEED)
    hr = rng.integers(0, 256, HR_SHAPE, dtype=np.uint8)
    lr = rng.integers(0, 256, LR_SHAPE, dtype=np.uint8)
    hr_t = torch.from_numpy(hr).permute(2, 0, 1).unsqueeze(0).float().div(255).contiguous()
    cases = [
        (f"numpy uint8 {HR_SHAPE[1]}x{HR_SHAPE[0]} RGB, shrink 1/{SCALE}",
         lambda: imresize(hr, 1 / SCALE)),
        (f"torch CPU float32 (1,3,{HR_SHAPE[0]},{HR_SHAPE[1]}), shrink 1/{SCALE}",
         lambda: imresize_torch(hr_t, 1 / SCALE)),
        (f"numpy uint8 {LR_SHAPE[1]}x{LR_SHAPE[0]} RGB, upscale x{SCALE}",
         lambda: imresize(lr, SCALE)),
    ]
    lines = [
        "## imresize",
        "",
        f"MATLAB-exact bicubic resize. Median of {REPEATS} runs (after a warm-up), "
        f"{platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}.",
        "",
        "| case | median time (s) |",
        "|---|---|",
    ]
    for name, fn in cases:
        lines.append(f"| {name} | {median_time(fn, repeats=REPEATS):.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run())
