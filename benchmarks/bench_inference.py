"""Inference of a full-size SRResNet on a 2K-class input: whole image vs tiled, time and peak memory.

The model is the paper's SRResNet (16 blocks, 64 channels) with **random weights** (time and
memory do not depend on the weights), in eval mode, float32, run by
``tiling.upscale_image``. The input is the x4 LR image of a 2K DIV2K photo
(``train_samples/DIV2K/DIV2K_train_LR_bicubic/X4/0004x4.png``, 510x336, -> 2040x1344) or, when
the shared data is absent, a scikit-image photo resized to that size.

Time: median of ``REPEATS`` runs after one warm-up (``timing.median_time``), whole and tiled
interleaved in one process so that load changes on a shared machine hit both alike. Memory:
each mode runs once in a fresh subprocess, and its peak is the rise of the process's maximum
resident set size (``resource.getrusage``; on CUDA ``torch.cuda.max_memory_allocated``) over
its value once the model and the image are loaded. The tiled output is compared with the whole
one (max abs difference in gray levels). The 2K -> 8K case (the 2040x1344 photo itself as
input, tiled) takes about 16x the time of the tiled 2K row, so it only runs with
``SR_BENCH_8K=1``; otherwise it is extrapolated from the measured rows and said so.
"""
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import models  # noqa: E402
import super_resolve  # noqa: E402
import tiling  # noqa: E402
from config import SHARED_DATA  # noqa: E402
from timing import median_time  # noqa: E402
from utils import load_image  # noqa: E402

REPEATS = int(os.environ.get("SR_BENCH_REPEATS", 3))   # timed runs per mode (median reported)
TILE = super_resolve.DEFAULT_TILE                      # tile side of the tiled mode, LR px
LR_FILE = SHARED_DATA / "train_samples" / "DIV2K" / "DIV2K_train_LR_bicubic" / "X4" / "0004x4.png"
HR_FILE = SHARED_DATA / "train_samples" / "DIV2K" / "DIV2K_train_HR" / "0004.png"
FALLBACK_SIZE = (336, 510)     # LR size used with a scikit-image photo when the file is absent
LAYOUT_SIZE = 128              # LR side of the channels_last vs contiguous comparison
RUN_8K = os.environ.get("SR_BENCH_8K", "0") not in ("", "0")
MB = 2 ** 20


def _input(which):
    """uint8 ``(h,w,3)`` input and its description: ``'lr'`` (2K photo's x4 LR) or ``'hr'``."""
    if which == "hr" and HR_FILE.is_file():
        return load_image(HR_FILE, rgb=True), f"DIV2K `{HR_FILE.name}`"
    if which == "lr" and LR_FILE.is_file():
        return load_image(LR_FILE, rgb=True), f"DIV2K `{LR_FILE.name}`"
    import skimage.data
    from imresize import imresize
    h, w = FALLBACK_SIZE
    if which == "hr":
        h, w = 4 * h, 4 * w
    photo = skimage.data.astronaut()[..., :3]
    return imresize(photo, output_shape=(h, w)), "scikit-image `astronaut` resized"


def _device():
    return "cuda" if torch.cuda.is_available() else "cpu"


def _peak_bytes(device):
    if device == "cuda":
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # Linux: KiB


def child(spec):
    """Run one mode once in a fresh process -> its peak memory rise (and output file)."""
    device = _device()
    torch.manual_seed(0)
    model = models.SRResNet().eval().to(device)
    img, source = _input(spec["input"])
    base = _peak_bytes(device)
    start = time.perf_counter()
    sr = tiling.upscale_image(model, img, device=device, tile=spec["tile"])
    seconds = time.perf_counter() - start
    peak = _peak_bytes(device) - base
    if spec.get("save"):
        np.save(spec["save"], sr)
    return {"seconds": seconds, "peak_mb": peak / MB, "in": img.shape[:2], "out": sr.shape[:2],
            "source": source, "device": device}


def _interleaved_times(tiles, repeats):
    """Median seconds of ``upscale_image`` on the 2K-class LR input for each tile setting,
    measured in this process with the settings interleaved (so that a change of machine load
    hits all of them alike): one warm-up each, then ``repeats`` rounds."""
    device = _device()
    torch.manual_seed(0)
    model = models.SRResNet().eval().to(device)
    img, _ = _input("lr")
    runs = {t: (lambda t=t: tiling.upscale_image(model, img, device=device, tile=t))
            for t in tiles}
    for fn in runs.values():
        fn()
    times = {t: [] for t in tiles}
    for _ in range(repeats):
        for t, fn in runs.items():
            times[t].append(median_time(fn, repeats=1, warmup=0))
    return {t: statistics.median(v) for t, v in times.items()}, \
        tiling.receptive_margin(model, device)


def _spawn(spec):
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"bench_inference child {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _layout_times():
    """Median seconds of the bare model on a ``LAYOUT_SIZE``^2 input, contiguous vs channels_last."""
    torch.manual_seed(0)
    model = models.SRResNet().eval()
    x = torch.rand(1, 3, LAYOUT_SIZE, LAYOUT_SIZE)
    xcl = x.contiguous(memory_format=torch.channels_last)
    times = {}
    with torch.inference_mode():
        for name, inp in (("contiguous (NCHW)", x), ("channels_last (NHWC)", xcl)):
            times[name] = median_time(lambda: model(inp), repeats=REPEATS, warmup=1)
    return times


def run():
    with tempfile.TemporaryDirectory() as tmp:
        whole = _spawn({"input": "lr", "tile": None, "save": f"{tmp}/whole.npy"})
        tiled = _spawn({"input": "lr", "tile": TILE, "save": f"{tmp}/tiled.npy"})
        diff = int(np.abs(np.load(f"{tmp}/whole.npy").astype(int)
                          - np.load(f"{tmp}/tiled.npy")).max())
    big = _spawn({"input": "hr", "tile": TILE}) if RUN_8K else None
    times, margin = _interleaved_times((None, TILE), REPEATS)
    whole["seconds"], tiled["seconds"], tiled["overlap"] = times[None], times[TILE], margin
    layout = _layout_times()

    (h, w), (H, W) = whole["in"], whole["out"]
    mem = "peak GPU memory allocated" if whole["device"] == "cuda" else "peak RSS rise"
    lines = [
        "## Inference (2K input)", "",
        f"Full-size SRResNet (16 blocks x 64 channels, paper config) with **random weights**, "
        f"eval mode, float32 on {whole['device'].upper()}, through `tiling.upscale_image`. "
        f"Input: {whole['source']} ({w}x{h} LR, the x4 LR of a 2K photo) -> {W}x{H}. "
        f"Time: median of {REPEATS} runs after one warm-up, the two modes interleaved in one "
        f"process. Memory: {mem} over the level after loading the model and the image, each "
        f"mode run once in a fresh process.", "",
        f"| mode | time (s) | {mem} (MB) | max abs diff vs whole (gray levels) |",
        "|---|---:|---:|---:|",
        f"| whole image, one pass | {whole['seconds']:.1f} | {whole['peak_mb']:.0f} | 0 |",
        f"| tiled {TILE} px, overlap {tiled['overlap']} px | {tiled['seconds']:.1f} | "
        f"{tiled['peak_mb']:.0f} | {diff} |",
    ]
    if big is not None:
        (bh, bw), (BH, BW) = big["in"], big["out"]
        lines.append(f"| **2K -> 8K**: {bw}x{bh} -> {BW}x{BH}, tiled {TILE} px (1 run) | "
                     f"{big['seconds']:.1f} | {big['peak_mb']:.0f} | n/a |")
    margin = tiled["overlap"]
    computed = sum((min(h, y1 + margin) - max(0, y0 - margin)) * (min(w, x1 + margin) - max(0, x0 - margin))
                   for y0, y1, x0, x1 in tiling.tile_grid(h, w, TILE))
    lines += ["",
              f"Tiled / whole: time x{tiled['seconds'] / whole['seconds']:.2f}, memory "
              f"x{tiled['peak_mb'] / whole['peak_mb']:.2f}. The tiles run the network on "
              f"{computed / (h * w):.2f}x the image's pixels (the {margin} px overlap, the "
              f"SRResNet's receptive-field radius + 2, is recomputed around every tile), yet the "
              f"output differs from the whole-image pass by at most {diff} gray level(s). "
              f"Whole-image memory grows with the image (x16 for 2K -> 8K); tiled memory is one "
              f"tile's activations plus the uint8 output canvas ({W * H * 3 / MB:.0f} MB here, "
              f"{16 * W * H * 3 / MB:.0f} MB for 8K)."]
    if big is None:
        est = tiled["seconds"] * 16
        lines.append(f"\nNot measured by default: 2K -> 8K ({4 * w}x{4 * h} -> {4 * W}x{4 * H}), "
                     f"16x the pixels, would take about {est / 60:.0f} min tiled on this machine "
                     f"(extrapolated); run with `SR_BENCH_8K=1` to measure it. A whole-image pass "
                     f"would need about {16 * whole['peak_mb'] / 1024:.0f} GB.")
    cont, cl = layout.values()
    lines += ["", f"Memory format ({LAYOUT_SIZE}x{LAYOUT_SIZE} LR, bare model, median of {REPEATS}): "
              f"contiguous NCHW input {cont:.2f} s, channels_last input {cl:.2f} s "
              f"({cont / cl:.1f}x); `upscale_image` feeds channels_last."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(child(json.loads(sys.argv[2]))))
    else:
        print(run())
