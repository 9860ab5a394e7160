"""ONNX Runtime beside PyTorch on the CPU: the same generator, the same image, the same code path
(``tiling.upscale_image``, whole or tiled), time and agreement.

Models: the paper's SRResNet (16 blocks x 64 channels, sub-pixel upsampling, **random weights**:
time does not depend on the values) and the shipped reference SRGAN (``weights/srgan.pth``,
8 x 48, nearest + conv, bicubic skip), each exported by ``export.export_file`` to a temporary
``.onnx`` file (float32, dynamic height and width). Inputs: Set5 ``baby`` (the MATLAB-made x4
LR, 128x128) whole, and the x4 LR of a 2K DIV2K photo (510x336) in tiles of
``super_resolve.DEFAULT_TILE`` (a scikit-image photo of the same size when ``../shared/data``
is absent). Time: median of ``REPEATS`` runs after one warm-up, PyTorch and ONNX Runtime
interleaved in one process so that load changes hit both alike; PyTorch uses
``torch.get_num_threads()`` threads, ONNX Runtime its default (one per core). Agreement: the
largest difference between the two uint8 outputs, in gray levels.
"""
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import checkpoint
import export  # noqa: E402
import models  # noqa: E402
import super_resolve  # noqa: E402
import tiling  # noqa: E402
from bench_inference import _input  # noqa: E402
from config import REFERENCE_WEIGHTS, SHARED_DATA  # noqa: E402
from utils import load_image  # noqa: E402

REPEATS = int(os.environ.get("SR_BENCH_REPEATS", 3))   # timed runs per engine (median reported)
SET5_BABY = SHARED_DATA / "benchmark" / "Set5" / "LR_bicubic" / "X4" / "babyx4.png"
SMALL_FALLBACK = 128           # side of the small input cut from the 2K LR when Set5 is absent


def _models(folder):
    """``{label: checkpoint path}``: the paper's SRResNet (random weights, saved here) and the
    shipped reference SRGAN."""
    torch.manual_seed(0)
    paper = models.SRResNet()
    path = folder / "srresnet_paper.pth"
    checkpoint.save_checkpoint(path, checkpoint.make_checkpoint(
        stage="srresnet", arch="srresnet", arch_kwargs={}, scale=4, generator=paper, epoch=0,
        step=0, config={}, history=[]))
    return {"SRResNet, paper settings (random weights)": path,
            "reference SRGAN (`weights/srgan.pth`)": REFERENCE_WEIGHTS["SRGAN"]}


def _inputs():
    """``[(description, uint8 (h,w,3), tile or None)]``."""
    big, big_name = _input("lr")
    if SET5_BABY.is_file():
        small, small_name = load_image(SET5_BABY, rgb=True), "Set5 `babyx4.png`"
    else:
        small, small_name = big[:SMALL_FALLBACK, :SMALL_FALLBACK], f"{big_name} (top-left crop)"
    return [(f"{small_name} {small.shape[1]}x{small.shape[0]}, whole", small, None),
            (f"{big_name} {big.shape[1]}x{big.shape[0]}, tiles of {super_resolve.DEFAULT_TILE}",
             big, super_resolve.DEFAULT_TILE)]


def _interleaved(engines, img, tile):
    """Median seconds of each engine's ``upscale_image`` (runs interleaved) and the outputs."""
    times = {name: [] for name in engines}
    outputs = {}
    for rep in range(REPEATS + 1):                 # the first round is the warm-up
        for name, model in engines.items():
            start = time.perf_counter()
            outputs[name] = tiling.upscale_image(model, img, tile=tile)
            if rep:
                times[name].append(time.perf_counter() - start)
    return {n: float(np.median(t)) for n, t in times.items()}, outputs


def run():
    rows = ["| model | input | PyTorch (s) | ONNX Runtime (s) | ONNX / PyTorch | max diff (gray levels) |",
            "|---|---|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for label, ckpt in _models(tmp).items():
            onnx_path = tmp / f"{Path(ckpt).stem}.onnx"
            export.export_file(ckpt, onnx_path)
            engines = {"torch": checkpoint.load_generator(ckpt)[0],
                       "onnx": super_resolve.load_model(onnx_path)}
            for what, img, tile in _inputs():
                t, out = _interleaved(engines, img, tile)
                diff = int(np.abs(out["torch"].astype(int) - out["onnx"]).max())
                rows.append(f"| {label} | {what} | {t['torch']:.3f} | {t['onnx']:.3f} | "
                            f"{t['onnx'] / t['torch']:.2f} | {diff} |")
    note = (f"\nPyTorch {torch.__version__} with {torch.get_num_threads()} threads (channels_last, "
            f"as `super_resolve` runs it); ONNX Runtime on the CPU execution provider. Median of "
            f"{REPEATS} interleaved runs after a warm-up. The export itself (`python export.py "
            f"CKPT x.onnx`) takes a few seconds and checks the graph against PyTorch.\n")
    return "## ONNX Runtime vs PyTorch (CPU inference)\n\n" + "\n".join(rows) + "\n" + note


if __name__ == "__main__":
    print(run())
