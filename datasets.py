"""Datasets of low-/high-resolution image pairs: whole test images and random training patches.

Folder convention (EDSR ``benchmark.tar`` and DIV2K): an HR image ``<stem>.png`` in ``hr_dir`` is
paired with the LR image ``<stem>x{scale}.png`` in ``lr_dir``. When there is no LR folder the LR
image is made with the project's MATLAB-exact bicubic ``imresize(modcrop(hr, scale), 1/scale)``.

* :func:`find_test_set` -- locate a benchmark set (``Set5``, ``Set14``, ``B100``, ``Urban100``,
  ``DIV2K_valid``) under a data root.
* :class:`TestDataset` -- whole images, uint8, in name order, for evaluation.
* :class:`TrainDataset` -- random aligned patches as float tensors, for training. Each image is
  decoded once (into memory, or into a ``.npy`` cache read through ``mmap``), never per sample.
* :func:`make_train_loader` -- the DataLoader used by ``solver.py`` / ``train.py``.
* :func:`read_data_list` -- read a JSON data list written by ``create_data_lists.py``.
"""
import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler

import utils
from imresize import imresize

IMAGE_EXTENSIONS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".ppm", ".pgm", ".webp")
"""File name endings read as images (lower case); ``.png`` first = preferred LR partner."""

LR_NAME = "{stem}x{scale}"
"""Stem of the LR partner of HR image ``<stem>``: EDSR / DIV2K convention (``babyx4.png``)."""

DIV2K_VALID = "DIV2K_valid"
"""Set name resolved to the official DIV2K folders ``DIV2K/DIV2K_valid_HR`` (+ ``_LR_bicubic``)."""

LIST_FORMAT_KEYS = ("name", "scale", "hr_dir", "lr_dir", "images")
"""Keys every JSON data list holds (see ``create_data_lists.write_data_list``)."""

CACHE_VERSION = 1
"""Bumped whenever the cached arrays change meaning; part of every cache key."""

UINT8_MAX = 255.0
"""uint8 pixels are divided by this to give floats in [0, 1]."""


# ----------------------------------------------------------------------------------------------
# Finding files
# ----------------------------------------------------------------------------------------------

def find_test_set(root, name, scale=4):
    """Locate the folders of test set ``name`` under ``root``.

    Layouts: EDSR ``root/<name>/HR`` + ``root/<name>/LR_bicubic/X{scale}``; for
    ``name='DIV2K_valid'`` the official ``root/DIV2K/DIV2K_valid_HR`` +
    ``root/DIV2K/DIV2K_valid_LR_bicubic/X{scale}`` (the EDSR layout is accepted too).

    Returns ``(hr_dir, lr_dir)`` as Paths; ``lr_dir`` is None when the LR folder is absent (the
    LR images are then made with bicubic ``imresize``). Raises FileNotFoundError naming the
    folders tried when no HR folder exists.
    """
    root = Path(root)
    candidates = []
    if name == DIV2K_VALID:
        candidates.append((root / "DIV2K" / "DIV2K_valid_HR",
                           root / "DIV2K" / "DIV2K_valid_LR_bicubic" / f"X{scale}"))
    candidates.append((root / name / "HR", root / name / "LR_bicubic" / f"X{scale}"))
    for hr_dir, lr_dir in candidates:
        if hr_dir.is_dir():
            return hr_dir, (lr_dir if lr_dir.is_dir() else None)
    tried = ", ".join(str(hr) for hr, _ in candidates)
    raise FileNotFoundError(f"test set {name!r}: no HR folder found (looked for {tried}); "
                            f"download it with `python create_data_lists.py --download`")


def is_image_file(path):
    """True when ``path`` has an image file ending (see ``IMAGE_EXTENSIONS``)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder):
    """Image files of ``folder`` sorted by name, as Paths.

    Other files (``Thumbs.db``, ``.DS_Store``, notes) are skipped with a warning naming them;
    sub-folders are ignored. Raises FileNotFoundError for a missing folder and ValueError for a
    folder without images, both naming the folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    images = []
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        if is_image_file(path):
            images.append(path)
        else:
            warnings.warn(f"skipping non-image file {path}", stacklevel=2)
    if not images:
        raise ValueError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in folder {folder}")
    return images


def pair_images(hr_dir, lr_dir=None, scale=4):
    """Pair every HR image of ``hr_dir`` with its LR partner ``<stem>x{scale}.<ext>`` in ``lr_dir``.

    Returns a list of ``(hr_path, lr_path or None)`` sorted by HR name (``lr_path`` is None for
    every image when ``lr_dir`` is None). Raises FileNotFoundError naming the missing LR file when
    an HR image has no partner, and the errors of :func:`list_images`. LR files without an HR
    image are ignored with a warning naming them.
    """
    hr_paths = list_images(hr_dir)
    if lr_dir is None:
        return [(p, None) for p in hr_paths]
    lr_dir = Path(lr_dir)
    lr_by_stem = {}
    for path in list_images(lr_dir):
        lr_by_stem.setdefault(path.stem, path)   # sorted, but prefer .png when several endings
        if path.suffix.lower() == ".png":
            lr_by_stem[path.stem] = path
    pairs = []
    for hr in hr_paths:
        stem = LR_NAME.format(stem=hr.stem, scale=scale)
        lr = lr_by_stem.pop(stem, None)
        if lr is None:
            raise FileNotFoundError(f"HR image {hr} has no LR partner: expected {lr_dir / stem}.png")
        pairs.append((hr, lr))
    for extra in sorted(lr_by_stem.values()):
        warnings.warn(f"ignoring LR image without an HR partner in {hr_dir}: {extra}", stacklevel=2)
    return pairs


def image_size(path):
    """``(height, width)`` of an image file, read from its header only (no decoding).

    Raises ``utils.ImageReadError`` naming the file when it is not a readable image.
    """
    try:
        with Image.open(path) as im:
            width, height = im.size
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise utils.ImageReadError(f"cannot read image {path}: {e}") from e
    return height, width


def check_pair_size(hr_path, lr_path, scale, hr_size=None, lr_size=None):
    """Check that the LR image is exactly the modcropped HR size divided by ``scale``.

    Sizes are ``(height, width)``; read from the file headers when not given. Raises ValueError
    naming both files on a mismatch.
    """
    hr_h, hr_w = hr_size if hr_size is not None else image_size(hr_path)
    lr_h, lr_w = lr_size if lr_size is not None else image_size(lr_path)
    want = (hr_h // scale, hr_w // scale)
    if (lr_h, lr_w) != want:
        raise ValueError(f"LR image {lr_path} is {lr_h}x{lr_w} (HxW) but HR image {hr_path} "
                         f"({hr_h}x{hr_w}) needs {want[0]}x{want[1]} at scale x{scale}")


def read_data_list(path):
    """Read a JSON data list written by ``create_data_lists.py``.

    Returns ``(info, pairs)``: ``info`` the dict (keys ``LIST_FORMAT_KEYS``), ``pairs`` a list of
    ``(hr Path, lr Path or None)``. Raises FileNotFoundError for a missing list or a missing
    listed file, and ValueError for a file that is not a data list; all name the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data list not found: {path} "
                                f"(write it with create_data_lists.py)")
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"data list {path} is not valid JSON: {e}") from e
    missing = [k for k in LIST_FORMAT_KEYS if not isinstance(info, dict) or k not in info]
    if missing:
        raise ValueError(f"data list {path} lacks the keys {missing}")
    if not info["images"]:
        raise ValueError(f"data list {path} lists no images")
    pairs = []
    for entry in info["images"]:
        hr = Path(entry["hr"])
        lr = Path(entry["lr"]) if entry.get("lr") else None
        for p in (hr, lr):
            if p is not None and not p.is_file():
                raise FileNotFoundError(f"image {p} listed in {path} does not exist")
        pairs.append((hr, lr))
    return info, pairs


def make_lr(hr, scale):
    """The LR image of ``hr``: MATLAB-exact bicubic ``imresize(modcrop(hr, scale), 1/scale)``.

    ``hr`` uint8 ``(H,W)`` or ``(H,W,3)`` -> uint8 ``(H//scale, W//scale[,3])``.
    """
    return imresize(utils.modcrop(hr, scale), 1 / scale)


# ----------------------------------------------------------------------------------------------
# Whole images for evaluation
# ----------------------------------------------------------------------------------------------

class TestDataset(Dataset):
    """Whole LR/HR image pairs of a test set, in name order.

    Item ``i`` -> ``(lr, hr, name)``: ``lr`` uint8 ``(h,w)`` or ``(h,w,3)`` (read from
    ``<stem>x{scale}.png`` in ``lr_dir``, or made with ``imresize(modcrop(hr, scale), 1/scale)``
    when ``lr_dir`` is None); ``hr`` uint8 ``(H,W[,3])`` modcropped to multiples of ``scale``
    (``h = H / scale``); ``name`` the HR file stem. Single-channel images stay single-channel.

    Construction lists and pairs the files and checks every LR size against its HR size from the
    file headers, so a missing partner or a size mismatch fails at once, naming the file. Images
    are decoded when the item is read.
    """

    __test__ = False   # not a pytest test class despite the name

    def __init__(self, hr_dir, lr_dir=None, scale=4, *, pairs=None, name=None):
        """``pairs`` (list of ``(hr_path, lr_path or None)``) replaces the folder listing; it is
        what :meth:`from_list` passes. ``name`` labels the set (default: the set folder name)."""
        self.scale = int(scale)
        self.hr_dir = Path(hr_dir) if hr_dir is not None else None
        self.lr_dir = Path(lr_dir) if lr_dir is not None else None
        if pairs is None:
            pairs = pair_images(self.hr_dir, self.lr_dir, self.scale)
        self.pairs = [(Path(h), Path(l) if l is not None else None) for h, l in pairs]
        if not self.pairs:
            raise ValueError(f"test set {name or hr_dir} has no images")
        if name is None and self.hr_dir is not None:
            # EDSR layout <Set>/HR: name the set, not "HR"
            name = self.hr_dir.parent.name if self.hr_dir.name == "HR" else self.hr_dir.name
        self.name = name
        for hr, lr in self.pairs:
            if lr is not None:
                check_pair_size(hr, lr, self.scale)

    @classmethod
    def from_list(cls, path):
        """The test set of a JSON data list (see :func:`read_data_list`)."""
        info, pairs = read_data_list(path)
        return cls(info["hr_dir"], info["lr_dir"], info["scale"], pairs=pairs, name=info["name"])

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, i):
        hr_path, lr_path = self.pairs[i]
        hr = utils.modcrop(utils.load_image(hr_path), self.scale)
        if lr_path is None:
            lr = make_lr(hr, self.scale)
        else:
            lr = utils.load_image(lr_path)
            check_pair_size(hr_path, lr_path, self.scale, hr.shape[:2], lr.shape[:2])
        return lr, hr, hr_path.stem

    def __repr__(self):
        return f"TestDataset({self.name!r}, {len(self)} images, x{self.scale})"
