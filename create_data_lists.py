"""Get the data and write the JSON data lists that ``datasets.py`` reads.

Usage (from the project root)::

    python create_data_lists.py --demo                      # scikit-image photos -> data/demo (offline)
    python create_data_lists.py --download                  # DIV2K + Set5/Set14/B100/Urban100 (~7.5 GB)
    python create_data_lists.py --from-folder ../shared/data/train_sets/T91 --name T91
    python create_data_lists.py --from-folder ../shared/data/train_sets/{T91,BSD200} --name T91_BSD200
    python create_data_lists.py --benchmark-root ../shared/data/benchmark

A data list ``<lists_dir>/<name>.json`` is ``{"name", "scale", "hr_dir", "lr_dir" (or null),
"images": [{"hr": abs path, "lr": abs path or null}, ...]}``; ``"lr": null`` means the LR image
is made with the MATLAB-exact bicubic ``imresize`` when the data is loaded.

``train.py`` makes the lists a run needs on first use (``ensure_data``: the demo photos, T91,
T91 + BSD200, the reference models' data) and says how to make any other.

Downloads: the official archives are fetched with a progress bar into ``<data_root>/downloads``,
resumed from a ``.part`` file after an interruption (HTTP Range), checked (size against the
server's Content-Length; SHA-256 where ``CHECKSUMS`` knows one -- none is recorded, because the
publishers do not print them and this project does not make them up -- and the archive must open
and pass ``zipfile.testzip`` / a full ``tarfile`` listing), then extracted refusing any member
that would land outside the target folder. Every step is skipped when already done.
"""
import difflib
import http.client
import io
import json
import os
import re
import sys
import tarfile
import urllib.error
import urllib.request
import warnings
import zipfile
from pathlib import Path

import numpy as np

import cli
import datasets
import utils
from config import get_config
from datasets import (DIV2K_VALID, LR_NAME, check_pair_size, find_test_set, image_size, make_lr,
                      pair_images)
from utils import atomic_write, load_image

DIV2K_URL = "https://data.vision.ee.ethz.ch/cvl/DIV2K/"
"""Official DIV2K download folder (Agustsson & Timofte, NTIRE 2017)."""

DIV2K_ARCHIVES = ("DIV2K_train_HR.zip", "DIV2K_valid_HR.zip",
                  "DIV2K_train_LR_bicubic_X4.zip", "DIV2K_valid_LR_bicubic_X4.zip")
"""The x4 bicubic track archives; they unpack to ``DIV2K_{train,valid}_HR/`` and
``DIV2K_{train,valid}_LR_bicubic/X4/``."""

BENCHMARK_URL = "https://cv.snu.ac.kr/research/EDSR/benchmark.tar"
"""EDSR's benchmark package: ``benchmark/{Set5,Set14,B100,Urban100}/{HR,LR_bicubic/X2..X4}``."""

CHECKSUMS = {}
"""SHA-256 of archive file names, where known from the publisher. Empty on purpose: neither
publisher lists checksums, so downloads are verified by size and by opening the archive."""

BENCHMARK_SETS = ("Set5", "Set14", "B100", "Urban100", DIV2K_VALID)
"""Test sets that ``--benchmark-root`` / ``--download`` write lists for when present."""

DEMO_TRAIN = {
    "astronaut": "astronaut", "rocket": "rocket", "motorcycle": "stereo_motorcycle",
    "hubble_deep_field": "hubble_deep_field", "immunohistochemistry": "immunohistochemistry",
    "retina": "retina",
}
"""Demo training images: file stem -> ``skimage.data`` function (colour, shipped with
scikit-image, so offline). ``stereo_motorcycle`` gives the left view only."""

DEMO_TEST = {"coffee": "coffee", "chelsea": "chelsea"}
DEMO_LISTS = ("demo_train", "demo_test")
"""The lists :func:`build_demo_dataset` writes (built on first use by train.py)."""
"""Held-out demo test images: two natural photos (a cup on a table, a cat's fur). ``cat`` is
the same photo as ``chelsea`` and is therefore not used anywhere."""

CHUNK_SIZE = 1 << 20
"""Bytes read per step while downloading."""

TIMEOUT_S = 60
"""Socket timeout of a download request, seconds."""


class DownloadError(RuntimeError):
    """A download that failed or did not verify; the message names the URL and the file."""


LIST_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*\Z")
"""Allowed data list names: letters, digits, ``_ . + -``, not starting with a dot (no path
separator, no ``..``): the list is ``<lists_dir>/<name>.json`` and nowhere else."""

MIN_SCALE = 2
"""Smallest upscaling factor of a list (the project's models are x4)."""


# ----------------------------------------------------------------------------------------------
# Lists
# ----------------------------------------------------------------------------------------------

def check_list_name(name):
    """ValueError unless ``name`` matches :data:`LIST_NAME` (e.g. ``../x`` or ``a/b`` would write
    outside the lists folder). Returns ``name``."""
    if not isinstance(name, str) or not LIST_NAME.match(name) or ".." in name:
        raise ValueError(f"--name {name!r}: a list name may hold only letters, digits and "
                         f"_ . + - (no path separator, no '..', not starting with a dot); e.g. "
                         f"MyTrain")
    return name


def write_data_list(path, name, scale, hr_dir, lr_dir, pairs):
    """Write a JSON data list atomically (temporary file in the same folder, then rename).

    ``pairs``: list of ``(hr_path, lr_path or None)``; paths are stored absolute. ``name`` must
    pass :func:`check_list_name`. Written with ``utils.atomic_write`` (the project's one policy:
    temporary file, fsync, rename; permissions 0666 minus the umask). Returns the list's Path.
    """
    check_list_name(name)
    path = Path(path)
    info = {
        "name": name, "scale": int(scale),
        "hr_dir": str(Path(hr_dir).resolve()),
        "lr_dir": str(Path(lr_dir).resolve()) if lr_dir is not None else None,
        "images": [{"hr": str(Path(h).resolve()), "lr": str(Path(l).resolve()) if l else None}
                   for h, l in pairs],
    }
    with atomic_write(path, "w") as f:
        json.dump(info, f, indent=1)
    return path


def list_from_folder(hr_dir, lr_dir, name, lists_dir, scale=4):
    """Write ``<lists_dir>/<name>.json`` for the images of ``hr_dir`` (LR partners in ``lr_dir``,
    or made by ``imresize`` when it is None). ``hr_dir`` may be a list of folders (then without
    ``lr_dir``): one list of all their images, e.g. VDSR's "291" = T91 + BSD200.

    Checks every pair: an HR image without LR partner, a mismatched LR size or an image that
    does not decode completely (truncated, corrupt: every image is decoded here with
    ``utils.load_image``, so it cannot fail only at training time) raise an error naming the
    file; non-image files are skipped with a warning naming them. Nothing is written unless
    every image passes. Returns the list's Path.
    """
    check_list_name(name)
    if int(scale) != scale or scale < MIN_SCALE:
        raise ValueError(f"--scale {scale}: must be an integer >= {MIN_SCALE}")
    if isinstance(hr_dir, (list, tuple)):          # several HR folders (e.g. T91 + BSD200)
        if lr_dir is not None:
            raise ValueError("several HR folders take no LR folder: their LR images are made "
                             "with imresize")
        pairs = [pair for folder in hr_dir for pair in pair_images(folder, None, scale)]
        hr_dir = hr_dir[0]
    else:
        pairs = pair_images(hr_dir, lr_dir, scale)
    for hr, lr in pairs:
        hr_size = image_size(hr)
        if lr is not None:
            check_pair_size(hr, lr, scale, hr_size)
        for image in (hr, lr):
            if image is not None:
                load_image(image)     # ImageReadError naming the file: truncated, corrupt
    if not pairs:
        raise ValueError(f"{hr_dir}: no images found; nothing written")
    return write_data_list(Path(lists_dir) / f"{name}.json", name, scale, hr_dir, lr_dir, pairs)


def lists_from_benchmark_root(root, lists_dir, scale=4, sets=BENCHMARK_SETS):
    """Write a list for every test set of ``sets`` found under ``root`` (see
    ``datasets.find_test_set``). Returns ``{set: list Path or None}``; None = not found (it is
    also reported on stderr). ``root`` must be a folder (FileNotFoundError otherwise) holding
    at least one of the sets (FileNotFoundError listing the sets looked for otherwise)."""
    if not Path(root).is_dir():
        raise FileNotFoundError(f"--benchmark-root {root}: no such folder; give the folder that "
                                f"holds <Set>/HR (e.g. data/benchmark)")
    found = {}
    for name in sets:                  # every set looked up before any list is written
        try:
            found[name] = find_test_set(root, name, scale)
        except FileNotFoundError:
            found[name] = None
    if not any(found.values()):
        raise FileNotFoundError(f"--benchmark-root {root}: none of the sets {list(sets)} is "
                                f"there (expected <Set>/HR); check the folder")
    written = {}
    for name, dirs in found.items():
        if dirs is None:
            print(f"missing test set {name} under {root}", file=sys.stderr)
            written[name] = None
        else:
            written[name] = list_from_folder(*dirs, name, lists_dir, scale)
    return written


# ----------------------------------------------------------------------------------------------
# Demo dataset (offline: scikit-image's sample photos)
# ----------------------------------------------------------------------------------------------

def _demo_image(func_name):
    """uint8 ``(H,W,3)`` RGB photo from ``skimage.data`` (alpha dropped, left stereo view)."""
    import skimage.data      # only the demo needs scikit-image

    img = getattr(skimage.data, func_name)()
    if isinstance(img, tuple):                     # stereo_motorcycle: (left, right, disparity)
        img = img[0]
    return np.ascontiguousarray(img[..., :3])


def build_demo_dataset(root=None, lists_dir=None, scale=4):
    """Build the demo dataset from scikit-image photos and write ``demo_train.json`` /
    ``demo_test.json``.

    Layout: ``root/{train,test}/HR/<stem>.png`` (HR modcropped to multiples of ``scale``) and
    ``root/{train,test}/LR_bicubic/X{scale}/<stem>x{scale}.png`` made with the project's
    MATLAB-exact ``imresize``; train = ``DEMO_TRAIN``, test = ``DEMO_TEST``. Idempotent: images
    already present are kept (files are written atomically, so a present file is complete).
    Defaults: ``root`` and ``lists_dir`` of the 'demo' config. Returns ``{"train": Path,
    "test": Path}`` of the lists.
    """
    cfg = get_config("demo")
    root = Path(root if root is not None else cfg.data.root)
    lists_dir = Path(lists_dir if lists_dir is not None else cfg.data.lists_dir)
    lists = {}
    for split, images in (("train", DEMO_TRAIN), ("test", DEMO_TEST)):
        hr_dir = root / split / "HR"
        lr_dir = root / split / "LR_bicubic" / f"X{scale}"
        for stem, func_name in images.items():
            hr_path = hr_dir / f"{stem}.png"
            lr_path = lr_dir / f"{LR_NAME.format(stem=stem, scale=scale)}.png"
            if hr_path.is_file() and lr_path.is_file():
                continue
            hr = utils.modcrop(_demo_image(func_name), scale)
            utils.save_image(lr_path, make_lr(hr, scale))
            utils.save_image(hr_path, hr)
        lists[split] = list_from_folder(hr_dir, lr_dir, f"demo_{split}", lists_dir, scale)
    return lists


# ----------------------------------------------------------------------------------------------
# Downloads
# ----------------------------------------------------------------------------------------------

def _open_url(url, offset):
    """Open ``url`` asking for the bytes from ``offset`` on (Range header when offset > 0).

    Returns ``(response, start, total)``: ``start`` the offset the body begins at (``offset``
    when the server honoured the range, else 0), ``total`` the full size or None if unknown.
    """
    headers = {"Range": f"bytes={offset}-"} if offset > 0 else {}
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                          timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset > 0:             # range not satisfiable
            total = (e.headers.get("Content-Range") or "").rpartition("/")[2]
            if total == str(offset):                 # the part is already complete
                return io.BytesIO(b""), offset, offset
            return _open_url(url, 0)                 # otherwise restart cleanly
        raise DownloadError(f"cannot download {url}: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(f"cannot download {url}: {e}") from e
    length = response.headers.get("Content-Length")
    length = int(length) if length is not None else None
    if getattr(response, "status", None) == 206:
        content_range = response.headers.get("Content-Range", "")   # bytes a-b/total
        try:
            start = int(content_range.split()[1].split("-")[0])
            total = content_range.split("/")[1]
            total = int(total) if total != "*" else None
        except (IndexError, ValueError):
            response.close()
            raise DownloadError(f"{url}: malformed Content-Range {content_range!r}")
        if start != offset:
            response.close()
            return _open_url(url, 0)
        if total is None and length is not None:
            total = start + length
        return response, start, total
    return response, 0, length                        # 200 or file://: the whole file


def download(url, dest, expected_sha256=None, progress=True):
    """Download ``url`` to ``dest`` (a file path), resumably, and verify it.

    Bytes go to ``dest + '.part'``; a later call resumes from its size with an HTTP Range request
    (a server that ignores the range sends the whole file, which then replaces the part). The
    size must equal the server's Content-Length, and the SHA-256 ``expected_sha256`` when given;
    only then is the part renamed to ``dest``. An existing ``dest`` is kept (re-checked against
    ``expected_sha256`` when given). Returns ``dest`` as a Path.

    Raises DownloadError naming the URL and the file: network error or interrupted transfer
    (the part is kept for resuming), size mismatch, or checksum mismatch (the part is deleted:
    its bytes are wrong, resuming cannot fix them).
    """
    from tqdm import tqdm

    dest = Path(dest)
    if dest.is_file():
        if expected_sha256 is None or utils.sha256_file(dest) == expected_sha256:
            return dest
        raise DownloadError(f"{dest} exists but its SHA-256 is not {expected_sha256}; "
                            f"delete it to download {url} again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    response, start, total = _open_url(url, offset)
    done = start
    try:
        with response, open(part, "r+b" if start > 0 else "wb") as f, \
                tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                     desc=dest.name, disable=not progress) as bar:
            f.seek(start)
            f.truncate()
            while True:
                try:
                    block = response.read(CHUNK_SIZE)
                except (http.client.IncompleteRead, OSError) as e:
                    raise DownloadError(
                        f"download of {url} interrupted after {done} of {total or '?'} bytes "
                        f"({e.__class__.__name__}); the partial file {part} is kept: run again "
                        f"to resume") from e
                if not block:
                    break
                f.write(block)
                done += len(block)
                bar.update(len(block))
    except DownloadError:
        raise
    except OSError as e:
        raise DownloadError(f"cannot write {part} while downloading {url}: {e}") from e
    if total is not None and done != total:
        raise DownloadError(f"download of {url} stopped at {done} of {total} bytes; the partial "
                            f"file {part} is kept: run again to resume")
    if expected_sha256 is not None:
        actual = utils.sha256_file(part)
        if actual != expected_sha256:
            part.unlink()
            raise DownloadError(f"checksum mismatch for {url}: SHA-256 {actual}, expected "
                                f"{expected_sha256}; the bad file was deleted")
    os.replace(part, dest)
    return dest


def verify_archive(path):
    """Check that a .zip (every member's CRC) or .tar (full member listing) is intact.

    Raises DownloadError naming the file when it is not.
    """
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
            if bad is not None:
                raise DownloadError(f"archive {path} is corrupt: member {bad} fails its CRC")
        else:
            with tarfile.open(path) as t:
                if not t.getmembers():
                    raise DownloadError(f"archive {path} is empty")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
        raise DownloadError(f"archive {path} is corrupt or not an archive: {e}") from e


def _check_member(target, name, link=None):
    """Raise ValueError when archive member ``name`` (or its link target) escapes ``target``."""
    target = Path(target).resolve()
    dest = (target / name).resolve()
    if Path(name).is_absolute() or not dest.is_relative_to(target):
        raise ValueError(f"archive member {name!r} would be written outside {target}")
    if link is not None:
        link_dest = (dest.parent / link).resolve()
        if Path(link).is_absolute() or not link_dest.is_relative_to(target):
            raise ValueError(f"archive member {name!r} links outside {target}: {link!r}")


def safe_extract(archive, target):
    """Extract a .zip or .tar into ``target``, refusing (ValueError naming the member, nothing
    extracted) any member whose path or link would land outside ``target``. Idempotent: a
    marker file ``.extracted-<archive name>`` records a finished extraction."""
    archive, target = Path(archive), Path(target)
    marker = target / f".extracted-{archive.name}"
    if marker.is_file():
        return target
    target.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                _check_member(target, name)
            z.extractall(target)
    else:
        with tarfile.open(archive) as t:
            members = t.getmembers()
            for m in members:
                if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
                    raise ValueError(f"archive {archive}: member {m.name!r} is not a plain file")
                _check_member(target, m.name, m.linkname if m.issym() else None)
                if m.islnk():
                    _check_member(target, m.linkname)
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            t.extractall(target, members=members, **extra)
    marker.write_text(f"extracted from {archive}\n")
    return target


def download_all(data_root, lists_dir, progress=True, remove_archives=False, div2k_url=None,
                 benchmark_url=None):
    """Download, verify and extract DIV2K (x4 bicubic) and the EDSR benchmark package into
    ``data_root`` (``DIV2K/`` and ``benchmark/``), then write the lists ``DIV2K_train`` and one
    per test set. Archives live in ``data_root/downloads`` (deleted after extraction with
    ``remove_archives``). ``div2k_url`` (a folder URL) and ``benchmark_url`` (the tar's URL)
    replace :data:`DIV2K_URL` / :data:`BENCHMARK_URL` (a mirror). Returns
    ``{list name: Path or None}``."""
    data_root = Path(data_root)
    downloads = data_root / "downloads"
    div2k_url = div2k_url or DIV2K_URL
    div2k_url = div2k_url if div2k_url.endswith("/") else div2k_url + "/"
    jobs = [(div2k_url + name, data_root / "DIV2K") for name in DIV2K_ARCHIVES]
    jobs.append((benchmark_url or BENCHMARK_URL, data_root))
    for url, target in jobs:
        name = url.rsplit("/", 1)[1]
        if (target / f".extracted-{name}").is_file():
            print(f"{name}: already extracted in {target}")
            continue
        archive = download(url, downloads / name, CHECKSUMS.get(name), progress=progress)
        try:
            verify_archive(archive)
        except DownloadError as e:
            raise DownloadError(f"{e}; nothing was extracted: delete {archive} and run again "
                                f"to download it anew") from e
        safe_extract(archive, target)
        if remove_archives:
            archive.unlink()
    div2k = data_root / "DIV2K"
    written = {"DIV2K_train": list_from_folder(
        div2k / "DIV2K_train_HR", div2k / "DIV2K_train_LR_bicubic" / "X4", "DIV2K_train",
        lists_dir)}
    written.update(lists_from_benchmark_root(data_root, lists_dir))
    return written


# ----------------------------------------------------------------------------------------------
# The lists a training run needs, made on first use
# ----------------------------------------------------------------------------------------------

CLASSIC_TRAIN_SETS = {
    "T91": (("train_sets_root", "T91"),),
    "T91_BSD200": (("train_sets_root", "T91"), ("train_sets_root", "BSD200")),
    "reference_train": (("train_sets_root", "T91"), ("train_sets_root", "BSD200"),
                        ("train_samples_root", "DIV2K/DIV2K_train_HR"),
                        ("train_samples_root", "Flickr2K/Flickr2K_HR")),
}
"""The training lists built on first use, each as ``(cfg.data key of a root, folder under it)``
pairs: T91 (SRCNN, FSRCNN), T91 + BSD200 (VDSR's "291" images), and reference_train (the 291
plus the DIV2K / Flickr2K samples: the reference models' data)."""


def ensure_data(cfg):
    """Make sure the training list exists; the demo dataset (``demo_*`` lists, for training or
    validation) is built here from the scikit-image photos when missing, the lists of
    :data:`CLASSIC_TRAIN_SETS` from their folders when these exist. Other missing lists ->
    FileNotFoundError saying how to make them."""
    demo_lists = [n for n in (cfg.data.train_list, cfg.data.get("val_list"))
                  if n in DEMO_LISTS and not datasets.list_path(cfg, n).is_file()]
    if demo_lists:
        print(f"building the demo dataset in {cfg.data.root} (scikit-image photos) ...", flush=True)
        build_demo_dataset(root=cfg.data.root, lists_dir=cfg.data.lists_dir,
                                             scale=cfg.scale)
    train_list = datasets.list_path(cfg, cfg.data.train_list)
    if train_list.is_file():
        return
    folders = [Path(cfg.data.get(root) or "") / name
               for root, name in CLASSIC_TRAIN_SETS.get(cfg.data.train_list, ())]
    if folders and all(f.is_dir() for f in folders):
        print(f"building the list {cfg.data.train_list} from {', '.join(map(str, folders))} "
              f"(LR by MATLAB-exact imresize) ...", flush=True)
        list_from_folder([str(f) for f in folders], None, cfg.data.train_list,
                                           cfg.data.lists_dir, cfg.scale)
        return
    known = sorted({p.stem for p in Path(cfg.data.lists_dir).glob("*.json")}
                   | set(DEMO_LISTS) | set(CLASSIC_TRAIN_SETS))
    near = difflib.get_close_matches(cfg.data.train_list, known, n=1)
    hint = f"did you mean --set data.train_list={near[0]}? Or write" if near else "write"
    raise FileNotFoundError(f"training list {train_list} not found: {hint} it with "
                            f"`python create_data_lists.py` (see its --help), or pick another "
                            f"list with --set data.train_list=NAME")


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------

def parse_args(argv=None):
    """The command line, checked: every inconsistent combination is a usage error (exit 2)."""
    cfg = get_config()
    parser = cli.tool_parser(__doc__)
    parser.add_argument("--download", action="store_true",
                        help="download DIV2K x4 and the EDSR benchmark sets, write their lists")
    parser.add_argument("--demo", action="store_true",
                        help="build the offline demo dataset from scikit-image photos")
    parser.add_argument("--from-folder", metavar="HR_DIR", nargs="+",
                        help="write a list for this HR folder (several: one list of all)")
    parser.add_argument("--lr-dir", help="LR folder paired with --from-folder (default: none, "
                                         "LR made by bicubic imresize)")
    parser.add_argument("--name", help="list name for --from-folder")
    parser.add_argument("--benchmark-root", metavar="DIR",
                        help=f"write lists for every test set found there ({', '.join(BENCHMARK_SETS)})")
    parser.add_argument("--data-root", help=f"where data goes (default {cfg.data.root}; "
                                            f"--demo: the demo config's root)")
    parser.add_argument("--lists-dir", default=cfg.data.lists_dir,
                        help="where the JSON lists are written (default %(default)s)")
    parser.add_argument("--scale", type=int, default=cfg.scale, help="default %(default)s")
    parser.add_argument("--remove-archives", action="store_true",
                        help="--download: delete each archive once extracted")
    parser.add_argument("--div2k-url", metavar="URL", default=None,
                        help=f"--download: DIV2K folder URL (a mirror; default {DIV2K_URL})")
    parser.add_argument("--benchmark-url", metavar="URL", default=None,
                        help=f"--download: URL of benchmark.tar (a mirror; default {BENCHMARK_URL})")
    parser.add_argument(cli.DEBUG_FLAG, action="store_true", help="show the traceback of a failure")
    args = parser.parse_args(argv)
    if args.scale < MIN_SCALE:
        parser.error(f"--scale must be an integer >= {MIN_SCALE}, got {args.scale}")
    if Path(args.lists_dir).exists() and not Path(args.lists_dir).is_dir():
        parser.error(f"--lists-dir {args.lists_dir} is a file; give a folder for the JSON lists")
    if args.name is not None:
        try:
            check_list_name(args.name)
        except ValueError as e:
            parser.error(str(e))
    if not (args.download or args.demo or args.from_folder or args.benchmark_root):
        parser.error("nothing to do: give --demo, --download, --from-folder or --benchmark-root")
    if args.from_folder and not args.name:
        parser.error("--from-folder needs --name")
    if args.lr_dir and not args.from_folder:
        parser.error("--lr-dir goes with --from-folder")

    return args


def main(argv=None):
    """Run the command line; 0 on success, 1 with one line naming the failure."""
    args = parse_args(argv)
    data_root = args.data_root or get_config().data.root
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            if args.demo:
                for split, path in build_demo_dataset(args.data_root, args.lists_dir,
                                                      args.scale).items():
                    print(f"demo {split}: {path}")
            if args.download:
                for name, path in download_all(data_root, args.lists_dir,
                                               remove_archives=args.remove_archives,
                                               div2k_url=args.div2k_url,
                                               benchmark_url=args.benchmark_url).items():
                    print(f"{name}: {path or 'missing'}")
            if args.from_folder:
                folders = args.from_folder[0] if len(args.from_folder) == 1 else args.from_folder
                path = list_from_folder(folders, args.lr_dir, args.name,
                                        args.lists_dir, args.scale)
                print(f"{args.name}: {path}")
            if args.benchmark_root:
                for name, path in lists_from_benchmark_root(args.benchmark_root, args.lists_dir,
                                                            args.scale).items():
                    print(f"{name}: {path or 'missing'}")
    except (DownloadError, OSError, ValueError) as e:   # ImageReadError is a ValueError
        return cli.fail("create_data_lists.py", e)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run("create_data_lists.py", main))
