"""The MOS study's image files (``mos.py serve --images``, ``--anchors``, ``--set``): which files
are the study's items, and the calibration anchors.

- the items: the ``<image>_<method>.png`` files of the images folder (:func:`scan_images`),
  with the anchors asked for and no other (:func:`study_files`);
- the calibration anchors (:data:`ANCHOR_METHODS`): the ``--anchors`` list
  (:func:`parse_anchors`), and the anchor files missing from the folder, made from the HR test
  set (:func:`make_anchors`: the set's folders, HR files and LR images, at :data:`SCALE`).
"""
from pathlib import Path

import config
import datasets
import utils

SCALE = config.get_config().scale
"""The SR images' scale factor (int >= 2): the project's (``config.py``'s ``scale``); the anchors
are made at this scale."""
ANCHOR_METHODS = ("nearest", "hr")
"""Calibration anchors: nearest-neighbour upscale of the LR image (worst) and the HR (best)."""
ANCHOR_NAMES = {"nearest": "nearest-neighbour upscale", "hr": "HR image"}
DEFAULT_ANCHORS = ",".join(ANCHOR_METHODS)
IMAGE_SUFFIX = ".png"
SET_EXTENSIONS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")


def parse_anchors(text):
    """``"nearest,hr"`` -> ``("nearest", "hr")``; ``""`` -> no anchors; an unknown name ->
    ValueError naming ``--anchors``."""
    names = tuple(n.strip().lower() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in ANCHOR_METHODS]
    if unknown:
        raise ValueError(f"--anchors: unknown anchor {unknown[0]!r}; use a comma-separated "
                         f"subset of {DEFAULT_ANCHORS}")
    return names


def scan_images(folder):
    """``{(image, method): path}`` of the ``<image>_<method>.png`` files in ``folder`` (the method
    is the text after the last underscore, as ``report.compare_on_set`` names them; methods and
    the suffix in any case). Two files whose names differ only in case (``x_SRGAN.png``,
    ``x_srgan.png``) -> ValueError naming both: which one to rate is not for this tool to
    guess (and a case-insensitive disk could not even hold both)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--images {folder}: no such folder")
    found, by_folded_name = {}, {}
    for path in sorted(folder.iterdir()):
        stem = path.name[:-len(IMAGE_SUFFIX)]
        if path.is_file() and path.name.lower().endswith(IMAGE_SUFFIX) and "_" in stem.strip("_"):
            twin = by_folded_name.setdefault(path.name.lower(), path)
            if twin is not path:
                raise ValueError(f"--images {folder}: {twin.name} and {path.name} differ only in "
                                 f"case; remove or rename one of them")
            image, method = stem.rsplit("_", 1)
            found[(image, method.lower())] = path.resolve()
    return found


def find_hr(set_dir, image):
    """The HR file of ``image`` in the test-set folder ``set_dir`` (usual extensions), or None."""
    for ext in SET_EXTENSIONS:
        for candidate in (Path(set_dir) / f"{image}{ext}", Path(set_dir) / f"{image}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def set_folders(set_dir):
    """``--set`` -> ``(hr_dir, lr_dir or None)``: ``set_dir`` may be a set's HR folder or the set
    itself (EDSR layout ``<set>/HR``, ``<set>/LR_bicubic/X<scale>`` with scale :data:`SCALE`);
    the LR folder is used when present, as the notebook's ``TestDataset`` does."""
    set_dir = Path(set_dir)
    hr_dir = set_dir / "HR" if (set_dir / "HR").is_dir() else set_dir
    lr_dir = hr_dir.parent / "LR_bicubic" / f"X{SCALE}"
    return hr_dir, (lr_dir if lr_dir.is_dir() else None)


def anchor_lr(hr, image, lr_dir):
    """The LR image of ``image`` (uint8 array) for the HR image ``hr``: the set's own
    ``<image>x<scale>`` file in ``lr_dir`` (see :func:`set_folders`; None: no LR folder) when it
    is there and of the right size, else the MATLAB-exact bicubic ``datasets.make_lr`` of
    ``hr``."""
    lr_path = find_hr(lr_dir, f"{image}x{SCALE}") if lr_dir is not None else None
    if lr_path is not None:
        lr = utils.load_image(lr_path)
        if lr.shape[:2] == (hr.shape[0] // SCALE, hr.shape[1] // SCALE) and lr.ndim == hr.ndim:
            return lr
    return datasets.make_lr(hr, SCALE)


def make_anchors(folder, images, anchors, set_dir):
    """Write the missing anchor files ``<image>_<anchor>.png`` into ``folder`` from the test set
    ``set_dir`` (see :func:`set_folders`): ``hr`` = the HR cropped to a multiple of
    :data:`SCALE` (the size of the SR images), ``nearest`` = the LR (:func:`anchor_lr`) enlarged
    by pixel repetition (``utils.nearest_upsample``). Returns the paths written."""
    hr_dir, lr_dir = set_folders(set_dir)
    written = []
    for image in sorted(images):
        missing = [a for a in anchors if not (Path(folder) / f"{image}_{a}{IMAGE_SUFFIX}").exists()]
        hr_path = find_hr(hr_dir, image) if missing else None
        if hr_path is None:
            continue
        hr = utils.modcrop(utils.load_image(hr_path), SCALE)
        made = {"hr": lambda: hr,
                "nearest": lambda: utils.nearest_upsample(anchor_lr(hr, image, lr_dir), SCALE)}
        for anchor in missing:
            path = Path(folder) / f"{image}_{anchor}{IMAGE_SUFFIX}"
            utils.save_image(path, made[anchor]())
            written.append(path)
    return written


def study_files(folder, anchors=ANCHOR_METHODS, set_dir=None):
    """The study's ``{(image, method): path}``: every method of ``folder``, the anchors listed
    in ``anchors`` (made from ``set_dir`` when missing and ``set_dir`` is given) and no anchor
    that is not listed. Returns ``(files, notes)`` (notes: lines about missing anchors)."""
    found = scan_images(folder)
    if set_dir is not None:
        if not Path(set_dir).is_dir():
            raise FileNotFoundError(f"--set {set_dir}: no such folder")
        if make_anchors(folder, {i for i, _ in found}, anchors, set_dir):
            found = scan_images(folder)
    files = {k: p for k, p in found.items() if k[1] not in ANCHOR_METHODS or k[1] in anchors}
    methods = {m for _, m in files}
    if not files or not methods - set(ANCHOR_METHODS):
        raise ValueError(f"--images {folder}: no <image>_<method>{IMAGE_SUFFIX} files of an SR "
                         f"method (write them with super_resolution.ipynb)")
    notes = [f"anchor {a!r} is missing for some images (give --set with the HR test set to "
             f"make it)" for a in anchors
             if any((i, a) not in files for i in {i for i, _ in files})]
    return files, notes


