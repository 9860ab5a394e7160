"""Data pipeline: training patch pairs per second, ``datasets.TrainDataset`` vs per-sample decoding.

Both datasets serve the same random aligned 96/24 px patch pairs (flips included) of the same
2K images (the DIV2K / Flickr2K samples in ``../shared/data/train_samples``, LR from the
MATLAB-made files), through a ``DataLoader`` with batch 16 and no workers (main process), in the
same process. The naive dataset decodes the whole HR and LR PNGs with PIL for every patch, as
the usual course template does; ``TrainDataset`` decodes each image once into a ``.npy`` cache
(timed separately) and slices memory-mapped arrays.
"""
import itertools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import datasets  # noqa: E402
from config import SHARED_DATA, get_config  # noqa: E402
from timing import median_time  # noqa: E402

SAMPLE_FOLDERS = (("DIV2K/DIV2K_train_HR", "DIV2K/DIV2K_train_LR_bicubic/X4"),
                  ("Flickr2K/Flickr2K_HR", "Flickr2K/Flickr2K_LR_bicubic/X4"))
"""(HR, LR) folders under ``train_samples`` used by the benchmark."""

BATCH_SIZE = 16               # the paper's batch size
FAST_BATCHES = 150            # batches per timed run of TrainDataset
NAIVE_BATCHES = 2             # batches per timed run of the naive dataset (about 1 s each)
REPEATS = 5                   # timed runs per dataset (median reported)
NAIVE_REPEATS = 3


class NaiveDataset(Dataset):
    """The per-sample-decode baseline: every item opens and decodes both full PNGs with PIL.

    Item -> ``(lr, hr)`` float32 ``(3, p/s, p/s)``, ``(3, p, p)`` in [0, 1], cropped on the LR
    grid with random flips, like ``TrainDataset``.
    """

    def __init__(self, pairs, scale, patch_size, patches_per_image):
        self.pairs, self.scale, self.patch = pairs, scale, patch_size
        self.patches_per_image = patches_per_image
        self.rng = np.random.default_rng(0)

    def __len__(self):
        return len(self.pairs) * self.patches_per_image

    def __getitem__(self, index):
        hr_path, lr_path = self.pairs[index % len(self.pairs)]
        hr = np.asarray(Image.open(hr_path).convert("RGB"))
        lr = np.asarray(Image.open(lr_path).convert("RGB"))
        lp = self.patch // self.scale
        y = self.rng.integers(0, lr.shape[0] - lp + 1)
        x = self.rng.integers(0, lr.shape[1] - lp + 1)
        lr = lr[y:y + lp, x:x + lp]
        hr = hr[y * self.scale:(y + lp) * self.scale, x * self.scale:(x + lp) * self.scale]
        if self.rng.random() < 0.5:
            lr, hr = lr[:, ::-1], hr[:, ::-1]
        if self.rng.random() < 0.5:
            lr, hr = lr[::-1], hr[::-1]
        return (torch.from_numpy(lr.transpose(2, 0, 1).copy()).float() / 255,
                torch.from_numpy(hr.transpose(2, 0, 1).copy()).float() / 255)


def _rate(loader, batches, repeats):
    """Median patch pairs per second over ``repeats`` runs of ``batches`` batches."""
    def one_run():
        done = 0
        while done < batches:                 # a new epoch whenever the loader runs out
            for _ in itertools.islice(iter(loader), batches - done):
                done += 1
    seconds = median_time(one_run, repeats=repeats, warmup=1)
    return batches * BATCH_SIZE / seconds


def run():
    cfg = get_config("paper")
    root = SHARED_DATA / "train_samples"
    if not root.is_dir():
        return f"## Data pipeline\n\nSkipped: {root} not found.\n"
    pairs = [p for hr, lr in SAMPLE_FOLDERS for p in datasets.pair_images(root / hr, root / lr)]
    kw = dict(scale=cfg.scale, patch_size=cfg.data.patch_size,
              patches_per_image=cfg.data.patches_per_image, augment=True, progress=False)
    torch.manual_seed(cfg.seed)
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        cached = datasets.TrainDataset(None, pairs=pairs, cache_dir=cache, name="samples", **kw)
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        datasets.TrainDataset(None, pairs=pairs, cache_dir=cache, name="samples", **kw)
        reopen_s = time.perf_counter() - start
        start = time.perf_counter()
        in_memory = datasets.TrainDataset(None, pairs=pairs, name="samples", **kw)
        memory_s = time.perf_counter() - start
        fast = {
            "cache": _rate(datasets.make_train_loader(cached, BATCH_SIZE, 0, cfg.seed),
                           FAST_BATCHES, REPEATS),
            "memory": _rate(datasets.make_train_loader(in_memory, BATCH_SIZE, 0, cfg.seed),
                            FAST_BATCHES, REPEATS),
        }
    naive = NaiveDataset(pairs, cfg.scale, cfg.data.patch_size, cfg.data.patches_per_image)
    naive_rate = _rate(DataLoader(naive, batch_size=BATCH_SIZE, shuffle=True), NAIVE_BATCHES,
                       NAIVE_REPEATS)
    sizes = [datasets.image_size(hr) for hr, _ in pairs]
    mpix = sum(h * w for h, w in sizes) / 1e6
    p, s = cfg.data.patch_size, cfg.scale
    return "\n".join([
        "## Data pipeline",
        "",
        f"Random aligned {p}/{p // s} px HR/LR patch pairs with flips, batch {BATCH_SIZE}, "
        f"DataLoader with no workers (main process), LR from the MATLAB-bicubic files; "
        f"{len(pairs)} 2K images ({mpix:.1f} Mpx HR) from `../shared/data/train_samples` "
        f"(DIV2K + Flickr2K). Medians of {REPEATS} runs of {FAST_BATCHES} batches "
        f"(naive: {NAIVE_REPEATS} runs of {NAIVE_BATCHES} batches), same process.",
        "",
        "| dataset | patch pairs / s | vs naive |",
        "|---|---:|---:|",
        f"| naive: decode both PNGs with PIL per patch | {naive_rate:,.1f} | 1x |",
        f"| `TrainDataset`, `.npy` cache via mmap (`cache_dir`) | {fast['cache']:,.0f} | "
        f"{fast['cache'] / naive_rate:,.0f}x |",
        f"| `TrainDataset`, in memory (`cache_dir=None`) | {fast['memory']:,.0f} | "
        f"{fast['memory'] / naive_rate:,.0f}x |",
        "",
        f"One-off costs, not in the rates: building the cache (decoding {len(pairs)} images "
        f"once, {datasets.DECODE_THREADS} threads) {build_s:.1f} s; opening the existing cache "
        f"in a later run {reopen_s * 1000:.0f} ms; decoding into memory {memory_s:.1f} s.",
        "",
    ])


if __name__ == "__main__":
    print(run())
