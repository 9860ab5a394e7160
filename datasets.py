"""Datasets of low-/high-resolution image pairs: whole test images and random training patches.

Folder convention (EDSR ``benchmark.tar`` and DIV2K): an HR image ``<stem>.png`` in ``hr_dir`` is
paired with the LR image ``<stem>x{scale}.png`` in ``lr_dir``. When there is no LR folder the LR
image is made with the project's MATLAB-exact bicubic ``imresize(modcrop(hr, scale), 1/scale)``.

* :func:`find_test_set` -- locate a benchmark set (``Set5``, ``Set14``, ``B100``, ``Urban100``,
  ``DIV2K_valid``) under a data root.
* :class:`TestDataset` -- whole images, uint8, in name order, for evaluation.
* :class:`TrainDataset` -- random aligned patches as float tensors, for training. Each image is
  decoded once (into memory, or into a ``.npy`` cache read through ``mmap``), never per sample.
* :func:`make_train_loader`, :func:`make_stage_loader` -- the DataLoaders ``train.py`` feeds to
  ``solver.py``'s epochs (:class:`EpochSeededSampler`, :func:`start_epoch`: the same patches on
  resume, with persistent workers too).
* :func:`read_data_list` -- read a JSON data list written by ``create_data_lists.py``.
* :func:`list_path`, :func:`build_train_set`, :func:`build_val_set` -- the datasets a
  configuration names.

The decode-once ``.npy`` cache of the training images is ``image_cache.py``.
"""
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Sampler

import image_cache
import utils
from imresize import imresize
from progress import progress_bar

DECODE_PROGRESS_LINES = 1
"""Off a terminal (a log, a notebook) the bar of the one-off decoding of a list writes this many
plain lines: one, when it is done (``progress.progress_bar``)."""

IMAGE_EXTENSIONS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".ppm", ".pgm", ".webp",
                    ".gif")
"""File name endings read as images (lower case); ``.png`` first = preferred LR partner."""

LR_NAME = "{stem}x{scale}"
"""Stem of the LR partner of HR image ``<stem>``: EDSR / DIV2K convention (``babyx4.png``)."""

DIV2K_VALID = "DIV2K_valid"
"""Set name resolved to the official DIV2K folders ``DIV2K/DIV2K_valid_HR`` (+ ``_LR_bicubic``)."""

LIST_FORMAT_KEYS = ("name", "scale", "hr_dir", "lr_dir", "images")
"""Keys every JSON data list holds (see ``create_data_lists.write_data_list``)."""


UINT8_MAX = 255.0
"""uint8 pixels are divided by this to give floats in [0, 1]."""


# ----------------------------------------------------------------------------------------------
# Finding files
# ----------------------------------------------------------------------------------------------

def find_test_set(root, name, scale=4):
    """Locate the folders of test set ``name`` under ``root``.

    Layouts tried in order: for ``name='DIV2K_valid'`` the official ``root/DIV2K/DIV2K_valid_HR``
    + ``root/DIV2K/DIV2K_valid_LR_bicubic/X{scale}`` (also in the ``DIV2K`` folder beside
    ``root``, i.e. ``root`` may be the ``benchmark`` folder next to it); then EDSR
    ``root/<name>/HR`` + ``root/<name>/LR_bicubic/X{scale}``; then the same inside
    ``root/benchmark`` (``root`` = the data root that ``create_data_lists.py --download`` fills).

    Returns ``(hr_dir, lr_dir)`` as Paths; ``lr_dir`` is None when the LR folder is absent (the
    LR images are then made with bicubic ``imresize``). Raises FileNotFoundError naming the
    folders tried when no HR folder exists.
    """
    root = Path(root)
    candidates = []
    if name == DIV2K_VALID:
        for div2k in (root / "DIV2K", root.parent / "DIV2K"):
            candidates.append((div2k / "DIV2K_valid_HR",
                               div2k / "DIV2K_valid_LR_bicubic" / f"X{scale}"))
    for base in (root, root / "benchmark"):
        candidates.append((base / name / "HR", base / name / "LR_bicubic" / f"X{scale}"))
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
            if is_image_file(path):    # a folder, or a broken / looping link, named like an image
                warnings.warn(f"skipping {path}: named like an image but not a readable file "
                              f"(a folder, or a broken or looping link)", stacklevel=2)
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
            return utils.oriented_size(im)     # after the EXIF orientation, as loaded
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise utils.ImageReadError(f"cannot read image {path}: {e}") from e


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
    scale = info["scale"]
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 2:
        raise ValueError(f"data list {path}: 'scale' should be an integer >= 2, found {scale!r}")
    if not isinstance(info["images"], list):
        raise ValueError(f"data list {path}: 'images' should be a list of {{\"hr\": path, "
                         f"\"lr\": path or null}} entries, found {type(info['images']).__name__}")
    if not info["images"]:
        raise ValueError(f"data list {path} lists no images")
    pairs = []
    for number, entry in enumerate(info["images"], 1):
        if not (isinstance(entry, dict) and isinstance(entry.get("hr"), str) and entry["hr"]
                and (entry.get("lr") is None or isinstance(entry["lr"], str))):
            raise ValueError(f"data list {path}: image entry {number} should be {{\"hr\": path, "
                             f"\"lr\": path or null}}, found {str(entry)[:60]}; rewrite the "
                             f"list with create_data_lists.py")
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

    Construction lists and pairs the files and reads every file header, checking each LR size
    against its HR size, so a missing partner, an unreadable file or a size mismatch fails at
    once, naming the file. Images are decoded when the item is read.
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
            hr_size = image_size(hr)                 # also: every HR file is a readable image
            if min(hr_size) < self.scale:            # modcrop would leave nothing
                raise ValueError(f"HR image {hr} is {hr_size[0]}x{hr_size[1]} (HxW), smaller "
                                 f"than the scale x{self.scale}")
            if lr is not None:
                check_pair_size(hr, lr, self.scale, hr_size)

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


# ----------------------------------------------------------------------------------------------
# Random patches for training
# ----------------------------------------------------------------------------------------------

DECODE_THREADS = min(4, os.cpu_count() or 1)
"""Threads decoding images while a TrainDataset is built (PNG decoding releases the GIL)."""


def _to_tensor(patch):
    """uint8 ``(h,w,3)`` (any strides) -> float32 tensor ``(3,h,w)`` in [0, 1]."""
    chw = np.ascontiguousarray(patch.transpose(2, 0, 1))
    return torch.from_numpy(chw).to(torch.float32).div_(UINT8_MAX)


class TrainDataset(Dataset):
    """Random aligned LR/HR patches of training images.

    ``len = n_images * patches_per_image``; item ``k`` is a random patch of image
    ``k % n_images``: ``(lr, hr)`` float32 tensors ``(3, p/s, p/s)`` and ``(3, p, p)`` in [0, 1]
    (``p = patch_size``, ``s = scale``). The crop position is drawn on the LR grid and the HR crop
    is exactly ``s`` times it, so the pair stays aligned. With ``augment`` a random horizontal
    flip, vertical flip and transpose (together: the 8 rotations/flips) are applied to both.
    Single-channel images are replicated to RGB.

    LR images come from ``lr_dir`` (``<stem>x{scale}.png``, size checked against the HR), or are
    made once per image with MATLAB-exact ``imresize(modcrop(hr, s), 1/s)``.

    Speed: every image is decoded once, at construction, never per sample.

    * ``cache_dir`` None: uint8 arrays kept in memory (DataLoader workers forked on Linux share
      them copy-on-write).
    * ``cache_dir`` a folder: arrays stored there as uint8 ``.npy`` files keyed by
      :func:`image_cache.cache_key` (written atomically; a changed image gets a new key and is decoded
      again), then memory-mapped read-only, so a second run decodes nothing and all workers
      share the pages through the OS file cache. Each entry has a record
      (``image_cache.cache_record``: the sources' sha256, the arrays' shape, dtype and sha256),
      written last and verified whenever the dataset is built
      (``image_cache.check_cache_entry``): an entry whose source bytes changed is rebuilt; one
      whose arrays were changed is refused (``image_cache.CorruptCacheError`` naming the file).
      Entries of changed or removed images are not deleted (the folder may serve several
      datasets): delete the folder to reclaim the space. Each open map holds a file descriptor:
      the soft open-file limit is raised towards what is needed (within the hard limit); beyond it the
      least recently used maps are closed and reopened on demand.

    Images smaller than the patch: ValueError naming the file at construction, or, with
    ``skip_small=True``, a warning naming it and the image left out.

    Randomness: a numpy Generator seeded from ``torch.initial_seed()`` of the current process,
    re-seeded whenever that seed changes. So a run is reproducible under ``torch.manual_seed``
    (main process) or a seeded DataLoader (which gives each worker its own seed), and workers
    draw different patches.
    """

    def __init__(self, hr_dir, lr_dir=None, scale=4, patch_size=96, patches_per_image=100,
                 augment=True, cache_dir=None, *, pairs=None, name=None, skip_small=False,
                 progress=True):
        """``pairs`` (list of ``(hr_path, lr_path or None)``) replaces the folder listing (what
        :meth:`from_list` passes); ``name`` labels the set; ``progress`` shows a bar while
        images are decoded."""
        self.scale = int(scale)
        self.patch_size = int(patch_size)
        self.patches_per_image = int(patches_per_image)
        self.augment = bool(augment)
        if self.patch_size <= 0 or self.patch_size % self.scale:
            raise ValueError(f"patch_size {patch_size} must be a positive multiple of scale {scale}")
        if self.patches_per_image < 1:
            raise ValueError(f"patches_per_image must be >= 1, got {patches_per_image}")
        self.lr_patch = self.patch_size // self.scale
        self.name = name if name is not None else (Path(hr_dir).name if hr_dir else "train")
        if pairs is None:
            if hr_dir is None:
                raise ValueError("TrainDataset needs hr_dir or pairs")
            pairs = pair_images(hr_dir, lr_dir, self.scale)
        pairs = [(Path(h), Path(l) if l is not None else None) for h, l in pairs]
        self.pairs = self._check_sizes(pairs, skip_small)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._rng, self._rng_seed = None, None
        self._open = {}          # image index -> (hr, lr) arrays; LRU order when memory-mapped
        self._cache_files = None
        self._build(progress)

    @classmethod
    def from_list(cls, path, **kwargs):
        """The training set of a JSON data list; ``kwargs`` as for the constructor.

        A ``scale`` differing from the list's is only accepted when the list has no LR files.
        """
        info, pairs = read_data_list(path)
        scale = kwargs.pop("scale", info["scale"])
        if scale != info["scale"] and any(lr is not None for _, lr in pairs):
            raise ValueError(f"data list {path} holds x{info['scale']} LR images, not x{scale}")
        kwargs.setdefault("name", info["name"])
        return cls(info["hr_dir"], info["lr_dir"], scale, pairs=pairs, **kwargs)

    # -- construction ----------------------------------------------------------------------------

    def _check_sizes(self, pairs, skip_small):
        """Check LR/HR sizes and the patch size from the file headers (no decoding)."""
        kept = []
        for hr, lr in pairs:
            hr_size = image_size(hr)
            if lr is not None:
                check_pair_size(hr, lr, self.scale, hr_size)
            lr_size = (hr_size[0] // self.scale, hr_size[1] // self.scale)
            if min(lr_size) < self.lr_patch:
                msg = (f"training image {hr} is {hr_size[0]}x{hr_size[1]} (HxW), smaller than "
                       f"the {self.patch_size}x{self.patch_size} patch at x{self.scale}")
                if not skip_small:
                    raise ValueError(msg)
                warnings.warn(f"skipping {msg}", stacklevel=3)
                continue
            kept.append((hr, lr))
        if not kept:
            raise ValueError(f"training set {self.name!r}: no image is large enough for "
                             f"{self.patch_size}x{self.patch_size} patches")
        return kept

    def _decode(self, hr_path, lr_path):
        """Decode one pair: uint8 ``(H,W,3)`` HR modcropped, uint8 ``(H/s,W/s,3)`` LR."""
        hr = np.ascontiguousarray(utils.modcrop(utils.load_image(hr_path, rgb=True), self.scale))
        if lr_path is None:
            lr = make_lr(hr, self.scale)
        else:
            lr = utils.load_image(lr_path, rgb=True)
            check_pair_size(hr_path, lr_path, self.scale, hr.shape[:2], lr.shape[:2])
        return hr, np.ascontiguousarray(lr)

    def _build(self, progress):
        """Decode the images not yet cached (in threads); fill ``_open`` / ``_cache_files``."""
        from concurrent.futures import ThreadPoolExecutor

        todo = list(range(len(self.pairs)))
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            self._cache_files = []
            for hr, lr in self.pairs:
                key = image_cache.cache_key(hr, lr, self.scale)
                self._cache_files.append(tuple(self.cache_dir / f"{hr.stem}-{key}{end}" for end
                                               in ("-hr.npy", "-lr.npy", ".json")))
            with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool:   # hashing frees the GIL
                valid = list(pool.map(lambda i: image_cache.check_cache_entry(*self.pairs[i],
                                                                  self._cache_files[i]), todo))
            todo = [i for i, ok in zip(todo, valid) if not ok]
            self._max_open = image_cache.max_open_maps(2 * len(self.pairs)) // 2

        def work(i):
            hr, lr = self._decode(*self.pairs[i])
            if self.cache_dir is None:
                self._open[i] = (hr, lr)
            else:
                hr_file, lr_file, record_file = self._cache_files[i]
                image_cache.save_npy_atomic(lr_file, lr)
                image_cache.save_npy_atomic(hr_file, hr)
                record = image_cache.cache_record(*self.pairs[i], hr, lr)
                with utils.atomic_write(record_file, "w") as f:     # last: the entry is complete
                    json.dump(record, f)

        if todo:
            bar = progress_bar(total=len(todo), lines=DECODE_PROGRESS_LINES, desc=f"decoding {self.name}",
                               unit="img", disable=not progress, leave=False)
            with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool:
                for _ in pool.map(work, todo):
                    bar.update()
            bar.close()
        self.decoded = len(todo)   # images decoded by this construction (0: all from the cache)

    def _arrays(self, i):
        """``(hr, lr)`` uint8 arrays of image ``i``, opening its cache maps when needed."""
        arrays = self._open.get(i)
        if arrays is not None:
            if self._cache_files is not None:
                self._open[i] = self._open.pop(i)          # mark most recently used
            return arrays
        hr_file, lr_file = self._cache_files[i][:2]
        arrays = (image_cache.open_npy(hr_file), image_cache.open_npy(lr_file))
        if len(self._open) >= self._max_open:
            del self._open[next(iter(self._open))]        # least recently used
        self._open[i] = arrays
        return arrays

    def __getstate__(self):
        # Memory maps are reopened in the receiving process (spawned workers): no pixel copy.
        state = self.__dict__.copy()
        if self._cache_files is not None:
            state["_open"] = {}
        state["_rng"], state["_rng_seed"] = None, None
        return state

    # -- sampling --------------------------------------------------------------------------------

    def _generator(self, epoch_seed=None):
        """This process's numpy Generator: seeded from ``torch.initial_seed()``, or, for an index
        tagged with an ``epoch_seed`` (:class:`EpochSeededSampler`), from that seed and the
        DataLoader worker's id (persistent workers then crop anew, reproducibly, each epoch)."""
        if epoch_seed is None:
            key = seed = torch.initial_seed()
        else:
            info = torch.utils.data.get_worker_info()
            seed = [int(epoch_seed), info.id if info is not None else 0]
            key = tuple(seed)
        if self._rng is None or key != self._rng_seed:
            self._rng, self._rng_seed = np.random.default_rng(seed), key
        return self._rng

    def __len__(self):
        return len(self.pairs) * self.patches_per_image

    def __getitem__(self, index):
        """Patch ``index`` (an int, or ``(epoch_seed, index)`` from :class:`EpochSeededSampler`):
        ``(lr, hr)`` float32 ``(3,p/s,p/s)``, ``(3,p,p)`` in [0,1]."""
        epoch_seed = None
        if isinstance(index, tuple):
            epoch_seed, index = index
        if not 0 <= index < len(self):
            raise IndexError(f"patch index {index} out of range for {len(self)} patches")
        hr_img, lr_img = self._arrays(index % len(self.pairs))
        rng = self._generator(epoch_seed)
        lp, s = self.lr_patch, self.scale
        y = int(rng.integers(0, lr_img.shape[0] - lp + 1))
        x = int(rng.integers(0, lr_img.shape[1] - lp + 1))
        lr = lr_img[y:y + lp, x:x + lp]
        hr = hr_img[y * s:(y + lp) * s, x * s:(x + lp) * s]
        if self.augment:
            hflip, vflip, transpose = rng.random(3) < 0.5
            if hflip:
                lr, hr = lr[:, ::-1], hr[:, ::-1]
            if vflip:
                lr, hr = lr[::-1], hr[::-1]
            if transpose:
                lr, hr = lr.transpose(1, 0, 2), hr.transpose(1, 0, 2)
        return _to_tensor(lr), _to_tensor(hr)

    def __repr__(self):
        where = f"cache {self.cache_dir}" if self.cache_dir is not None else "in memory"
        return (f"TrainDataset({self.name!r}, {len(self.pairs)} images x "
                f"{self.patches_per_image} patches of {self.patch_size}px, x{self.scale}, {where})")


RANK_SEED_OFFSET = 2 ** 20
"""Seed distance between ranks: rank r of a multi-process run draws with ``seed + r *
RANK_SEED_OFFSET`` (more than any number of epochs, so no two (rank, epoch) pairs share a
seed -- with ``seed + rank``, rank r in epoch e would repeat rank 0's crops of epoch e + r)."""


def make_train_loader(dataset, batch_size, workers, seed, distributed=False, drop_last=True,
                      pin_memory=False):
    """The training DataLoader shared by ``solver.py`` and ``train.py``.

    Shuffles with a ``torch.Generator`` seeded with ``seed`` (so the order and the workers' seeds
    are reproducible); ``workers`` processes (0 = main process), kept alive across epochs.
    ``pin_memory``: page-locked batches for fast copies to the GPU; pass it only when training
    on CUDA (pinning starts a thread that opens a context on the current GPU; a CPU run should
    touch nothing of CUDA). With ``distributed`` a ``DistributedSampler`` (seeded with ``seed``)
    splits the data over the ranks -- call ``loader.sampler.set_epoch(epoch)`` every epoch --
    and each rank's generator gets ``seed + rank * RANK_SEED_OFFSET``, so the ranks' workers
    crop differently in every epoch. Batches are ``(lr, hr)`` float32 ``(B,3,p/s,p/s)``,
    ``(B,3,p,p)`` in [0, 1].
    """
    sampler = None
    generator = torch.Generator()
    if distributed:
        sampler = DistributedSampler(dataset, shuffle=True, seed=seed, drop_last=drop_last)
        generator.manual_seed(seed + sampler.rank * RANK_SEED_OFFSET)
    else:
        generator.manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=sampler is None, sampler=sampler,
                      num_workers=workers, pin_memory=bool(pin_memory),
                      persistent_workers=workers > 0, drop_last=drop_last, generator=generator)


class EpochSeededSampler(Sampler):
    """The indices of ``sampler`` tagged with the crop seed of the current epoch: yields
    ``(seed, index)`` (``TrainDataset.__getitem__`` seeds its crops from it). It carries the
    epoch into persistent DataLoader workers, which otherwise keep the seed they started with.
    Set both seeds with :func:`start_epoch`."""

    def __init__(self, sampler):
        self.sampler, self.seed = sampler, 0

    def __iter__(self):
        return ((self.seed, i) for i in self.sampler)

    def __len__(self):
        return len(self.sampler)


def make_stage_loader(dataset, batch_size, workers, distributed=False, drop_last=True,
                      pin_memory=False):
    """A training DataLoader made once for a whole stage: its ``workers`` (> 0) processes and
    their memory maps live until the stage ends (no restart, no re-pickling of the dataset per
    epoch). Call :func:`start_epoch` before each epoch: the data of an epoch then depends only
    on its seeds, as with :func:`make_train_loader` per epoch, so a resumed run sees the same
    batches. ``distributed``, ``pin_memory`` as for :func:`make_train_loader`."""
    if distributed:
        order = DistributedSampler(dataset, shuffle=True, seed=0, drop_last=drop_last)
    else:
        order = RandomSampler(dataset, generator=torch.Generator())
    return DataLoader(dataset, batch_size=batch_size, sampler=EpochSeededSampler(order),
                      num_workers=workers, pin_memory=bool(pin_memory),
                      persistent_workers=workers > 0, drop_last=drop_last,
                      generator=torch.Generator())   # (its own: the global RNG is not drawn)


def start_epoch(loader, order_seed, crop_seed, epoch):
    """Prepare a :func:`make_stage_loader` loader for ``epoch``: shuffle with ``order_seed``
    (the same on every rank: the ranks split one permutation) and crop with ``crop_seed``
    (different per rank, e.g. ``seed + epoch + rank * RANK_SEED_OFFSET``)."""
    sampler = loader.sampler
    sampler.seed = int(crop_seed)
    if isinstance(sampler.sampler, DistributedSampler):
        sampler.sampler.seed = int(order_seed)
        sampler.sampler.set_epoch(epoch)
    else:
        sampler.sampler.generator.manual_seed(int(order_seed))
    return loader



# ----------------------------------------------------------------------------------------------
# The datasets of a configuration
# ----------------------------------------------------------------------------------------------

def list_path(cfg, name):
    """Path of the JSON data list ``name`` in ``cfg.data.lists_dir``."""
    return Path(cfg.data.lists_dir) / f"{name}.json"


def build_train_set(cfg, progress=True, patch_size=None):
    """:class:`TrainDataset` of the list ``cfg.data.train_list`` with the patch settings
    (HR patches of ``patch_size``, default ``cfg.data.patch_size``)."""
    return TrainDataset.from_list(
        list_path(cfg, cfg.data.train_list), scale=cfg.scale,
        patch_size=int(patch_size or cfg.data.patch_size),
        patches_per_image=cfg.data.patches_per_image, augment=cfg.data.augment,
        cache_dir=cfg.data.get("cache_dir"), progress=progress,
        skip_small=bool(cfg.data.get("skip_small", False)))


def build_val_set(cfg):
    """The validation :class:`TestDataset`: the list ``cfg.data.val_list``, else that set in
    ``cfg.data.benchmark_root``; None when validation is switched off (``data.val_list=None``).
    A configured set that exists nowhere is an error (FileNotFoundError saying how to make it or
    switch validation off), not a whole run without validation."""
    name = cfg.data.get("val_list")
    if not name:
        return None
    path = list_path(cfg, name)
    if path.is_file():
        return TestDataset.from_list(path)
    try:
        hr_dir, lr_dir = find_test_set(cfg.data.benchmark_root, name, cfg.scale)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"data.val_list: validation set {name!r} not found (no list {path}, nothing in "
            f"data.benchmark_root={cfg.data.benchmark_root}): make it with "
            f"`python create_data_lists.py`, or train without validation with "
            f"--set data.val_list=None") from None
    return TestDataset(hr_dir, lr_dir, cfg.scale)
