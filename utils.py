"""Image input/output, colour conversions, tensor conversions and the PSNR/SSIM metrics.

Conventions (used by every module of the project):

* an *image* is a numpy ``uint8`` array ``(H,W)`` (single channel) or ``(H,W,3)`` (RGB);
* a *tensor* is a torch float tensor ``(N,C,H,W)`` with values in ``[0,1]``;
* colour conversions follow MATLAB's ``rgb2ycbcr`` / ``ycbcr2rgb`` (ITU-R BT.601, "studio
  swing": Y in 16..235, Cb/Cr in 16..240 on the 0..255 scale);
* :func:`psnr` and :func:`ssim` implement the evaluation protocol of the EDSR/RCAN/SwinIR papers
  (RCAN's ``Evaluate_PSNR_SSIM.m``): uint8 images, the Y channel of ``rgb2ycbcr`` as unrounded
  float in 16..235 for colour images (a single-channel image is compared on its raw gray values),
  ``shave`` pixels removed from every border, SSIM of Wang et al. (2004) with an 11x11 Gaussian
  window (sigma 1.5), 'valid' filtering, K1=0.01, K2=0.03, L=255;
* :func:`niqe` is the no-reference NIQE of Mittal et al. (2013) with the protocol of PIRM 2018 /
  BasicSR, which reproduces MATLAB's official ``niqe_release`` (lower is better).
"""
import contextlib
import functools
import hashlib
import io
import os
import random
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps

from imresize import imresize

# --------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------

# MATLAB rgb2ycbcr: ycbcr = (RGB_MATRIX @ rgb) / 255 + YCBCR_OFFSET, rgb in 0..255, result in 0..255
# (ITU-R BT.601 coefficients scaled to the studio-swing ranges Y 16..235, Cb/Cr 16..240).
RGB_TO_YCBCR_MATRIX = np.array([[65.481, 128.553, 24.966],
                                [-37.797, -74.203, 112.0],
                                [112.0, -93.786, -18.214]])
YCBCR_OFFSET = np.array([16.0, 128.0, 128.0])  # added after the matrix, on the 0..255 scale
YCBCR_TO_RGB_MATRIX = np.linalg.inv(RGB_TO_YCBCR_MATRIX)  # MATLAB ycbcr2rgb: Tinv

# PIL's RGB -> 'L' conversion (ITU-R 601-2 luma 0.299 R + 0.587 G + 0.114 B) in its exact
# 16-bit fixed-point form: L = (R*19595 + G*38470 + B*7471 + 2**15) >> 16 (weights sum to 2**16).
LUMA_WEIGHTS_Q16 = np.array([19595, 38470, 7471], dtype=np.int64)
LUMA_SHIFT = 16

UINT8_MAX = 255         # peak value of an 8-bit image (the PSNR/SSIM dynamic range L)
UINT16_TO_UINT8 = 257   # 16-bit -> 8-bit: round(v / 257) maps 0..65535 onto 0..255 exactly

# SSIM of Wang, Bovik, Sheikh, Simoncelli (IEEE TIP 2004), as in their ssim_index.m
SSIM_WINDOW = 11        # Gaussian window side (pixels)
SSIM_SIGMA = 1.5        # Gaussian window standard deviation (pixels)
SSIM_K1 = 0.01          # C1 = (K1 * L)^2
SSIM_K2 = 0.03          # C2 = (K2 * L)^2
SSIM_STRIP_ROWS = 32    # SSIM-map rows computed at a time (keeps the arrays in the CPU cache)

# NIQE of Mittal, Soundararajan, Bovik (IEEE SPL 2013), as in their niqe_release computequality.m
NIQE_PARAMS = Path(__file__).resolve().parent / "assets" / "niqe_pristine_params.npz"
"""The pristine NIQE model (``mu_pris_param`` (1,36), ``cov_pris_param`` (36,36),
``gaussian_window`` (7,7)) of the official MATLAB release; see ``assets/NIQE_NOTICE.md``."""
NIQE_BLOCK = 96         # block side (pixels) at the original scale; 48 at half scale
NIQE_GAM_START, NIQE_GAM_STEP, NIQE_GAM_STOP = 0.2, 0.001, 10.0  # estimateaggdparam.m: gam grid
NIQE_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))  # circshift offsets of the paired products
NIQE_ZERO_TOL = 1e-9    # |im - mu| <= tol * max(|im|, 1): candidates for an exact-zero MSCN test
NIQE_ZERO_CHUNK = 1 << 15  # candidate pixels whose 7x7 neighbourhoods are gathered at a time

# Single-channel PIL modes -> (H,W); the 16/32-bit integer gray modes are reduced to 8 bits.
_GRAY_MODES = {"1", "L", "LA", "La"}
_GRAY16_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


class ImageReadError(ValueError):
    """An image file is missing, unreadable, truncated, corrupt or not an image."""


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------

def load_image(path, rgb=False):
    """Read an image file into a uint8 array.

    Args:
        path: file path (str or Path).
        rgb: when True the result is always ``(H,W,3)`` (a gray image is replicated to 3 channels).

    Returns:
        ``np.ndarray`` uint8: ``(H,W)`` for single-channel files (modes ``1``, ``L``, ``LA`` with
        its alpha dropped, 16-bit gray ``I;16``/``I``), ``(H,W,3)`` for everything else (RGB; RGBA
        with alpha dropped; palette and CMYK converted to RGB). 16-bit values ``v`` (gray, and
        48/64-bit colour PNG / TIFF, which PIL alone would cut to ``v >> 8``) become
        ``round(v / 257)`` (the nearest 8-bit value: 0 -> 0, 128 -> 0, 129 -> 1, 65535 -> 255;
        not ``v >> 8``, which truncates). The EXIF orientation of a photo (tag 274, e.g. 6 of a
        phone held upright) is applied, so the pixels are as the photo is shown, with a
        ``UserWarning`` saying so (:func:`oriented`). A multi-frame file (animated GIF/PNG/WebP,
        multi-page TIFF) gives its first frame, with a ``UserWarning`` saying so. An 8-bit RGB(A)
        image whose embedded ICC profile is not sRGB (Adobe RGB, Display P3, ...) is converted
        to sRGB (:func:`to_srgb`), so the pixels mean what every image without a profile means.

    Raises:
        ImageReadError: the file is missing, is not an image, or is corrupt / truncated (the
            whole image is decoded here, so truncation is detected). The message names the file.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            low_tiles = low_byte_tiles(img)   # 16-bit colour: PIL keeps only the high bytes
            img.load()  # decode now: a truncated or corrupt file fails here, not later
            frames = getattr(img, "n_frames", 1)
            if frames > 1:
                warnings.warn(f"{path}: has {frames} frames (animation or pages): only the first "
                              f"is used", stacklevel=2)
            shown = oriented(img, path)
            if not low_tiles:
                shown = to_srgb(shown, path)
            elif _foreign_profile(img) is not None:
                warnings.warn(f"{path}: 16-bit image with a colour profile other than sRGB: "
                              f"the profile is ignored (values read as sRGB)", stacklevel=2)
            arr = _pil_to_array(shown, path)
        if low_tiles:
            arr = _round_16_bit(path, arr, low_tiles)
    except ImageReadError:
        raise
    except FileNotFoundError as e:
        raise ImageReadError(f"{path}: no such image file") from e
    except PermissionError as e:
        raise ImageReadError(f"{path}: permission denied") from e
    except IsADirectoryError as e:
        raise ImageReadError(f"{path}: is a directory, not an image file") from e
    except Image.UnidentifiedImageError as e:
        raise ImageReadError(f"{path}: not an image file (or an unsupported format)") from e
    except Exception as e:  # PIL reports corrupt/truncated data with OSError, SyntaxError, ...
        raise ImageReadError(f"{path}: cannot decode image ({type(e).__name__}: {e})") from e
    if rgb and arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return arr


SRGB_PROFILE = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
"""The colour space every image is read into (and PNGs without a profile are shown in)."""


def _foreign_profile(img):
    """The embedded ICC profile of ``img`` when it is an RGB profile other than sRGB, else
    None (no profile, an sRGB one, or one that cannot be parsed: read as sRGB, with a warning
    for the last)."""
    icc = img.info.get("icc_profile")
    if not icc:
        return None
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        name = ImageCms.getProfileDescription(profile) or ""
        space = profile.profile.xcolor_space.strip()
    except (OSError, ImageCms.PyCMSError) as e:
        warnings.warn(f"{getattr(img, 'filename', '') or 'image'}: unreadable colour profile "
                      f"({e}); read as sRGB", stacklevel=3)
        return None
    if space != "RGB" or "srgb" in name.lower().replace(" ", ""):
        return None
    return profile


def to_srgb(img, path=None):
    """``img`` (a PIL image) in sRGB: an RGB or RGBA image with an embedded non-sRGB ICC profile
    is converted with LittleCMS (Pillow's ImageCms, perceptual intent; alpha kept) and a
    ``UserWarning`` names the profile; any other image is returned as it is."""
    if img.mode not in ("RGB", "RGBA"):
        return img
    profile = _foreign_profile(img)
    if profile is None:
        return img
    alpha = img.getchannel("A") if img.mode == "RGBA" else None
    rgb = img.convert("RGB") if alpha is not None else img
    out = ImageCms.profileToProfile(rgb, profile, SRGB_PROFILE, outputMode="RGB")
    if alpha is not None:
        out.putalpha(alpha)
    warnings.warn(f"{path or 'image'}: colour profile "
                  f"{ImageCms.getProfileDescription(profile).strip()!r} converted to sRGB",
                  stacklevel=3)
    return out


_SWAP_ENDIAN = {";16B": ";16L", ";16L": ";16B",
                ";16N": ";16B" if sys.byteorder == "little" else ";16L"}   # N: native order
"""PIL rawmode suffixes of 16-bit samples; decoding big-endian data as little-endian picks the
low byte of every sample instead of the high one (same bits per pixel: same unfiltering)."""


def low_byte_tiles(img):
    """For a not yet decoded 16-bit-per-channel colour image (48/64-bit PNG, 16-bit RGB(A) TIFF),
    which PIL decodes to 8 bits by keeping the HIGH byte (``v >> 8``): its decoder tiles with the
    other byte order, which give the LOW bytes. None for every other image."""
    if img.mode not in ("RGB", "RGBA", "LA") or not getattr(img, "tile", None):
        return None
    tiles = []
    for tile in img.tile:
        args = tile.args
        raw = args if isinstance(args, str) else (
            args[0] if isinstance(args, tuple) and args and isinstance(args[0], str) else None)
        if raw is None or raw[-4:] not in _SWAP_ENDIAN:
            return None
        swapped = raw[:-4] + _SWAP_ENDIAN[raw[-4:]]
        tiles.append(tile._replace(args=swapped if isinstance(args, str)
                                   else (swapped,) + tuple(args[1:])))
    return tiles


def _round_16_bit(path, high, low_tiles):
    """uint8 ``round(v / 257)`` of a 16-bit colour file from its decoded high bytes ``high``
    (as :func:`_pil_to_array` gives them) and a second decode with ``low_tiles``."""
    try:
        with Image.open(path) as low:
            low.tile = low_tiles
            low.load()
            lo = _pil_to_array(oriented(low, path, warn=False), path)
    except Exception as e:  # noqa: BLE001 -- no unpacker for this layout: say what is used
        warnings.warn(f"{path}: 16-bit samples reduced by their high byte (v >> 8), the low "
                      f"bytes could not be read ({type(e).__name__}: {e})", stacklevel=3)
        return high
    value = high.astype(np.float64) * 256 + lo
    return np.round(value / UINT16_TO_UINT8).astype(np.uint8)


EXIF_ORIENTATION = 274
"""EXIF tag of the orientation (1 = as stored; 2..8 = mirrored and/or rotated for display)."""


def oriented(img, path=None, warn=True):
    """A PIL image with its EXIF orientation applied (``ImageOps.exif_transpose``): the pixels
    as a viewer shows them. Returns ``img`` itself when there is no orientation to apply; with
    ``warn``, a ``UserWarning`` naming ``path`` says that the image was turned."""
    try:
        orientation = img.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 -- a broken EXIF block: pixels as stored
        return img
    if orientation in (None, 1) or not 2 <= int(orientation) <= 8:
        return img
    if warn:
        warnings.warn(f"{path}: EXIF orientation {orientation} applied (the image is turned as "
                      f"a viewer shows it)", stacklevel=3)
    return ImageOps.exif_transpose(img)


EXIF_SWAPS_AXES = (5, 6, 7, 8)
"""EXIF orientations that turn the image by 90 degrees (width and height swap)."""


def oriented_size(img):
    """``(height, width)`` of an opened (not necessarily decoded) PIL image as
    :func:`load_image` returns it: after its EXIF orientation (header only)."""
    width, height = img.size
    try:
        orientation = img.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 -- a broken EXIF block: as stored, like oriented()
        orientation = 1
    return (width, height) if orientation in EXIF_SWAPS_AXES else (height, width)


def _pil_to_array(img, path):
    """A decoded PIL image -> uint8 ``(H,W)`` or ``(H,W,3)`` (see :func:`load_image`)."""
    mode = img.mode
    if mode in _GRAY16_MODES:
        arr = np.asarray(img).astype(np.float64)
        if arr.max(initial=0) > np.iinfo(np.uint16).max or arr.min(initial=0) < 0:
            raise ImageReadError(f"{path}: integer image mode {mode!r} with values "
                                 "outside 0..65535")
        return np.round(arr / UINT16_TO_UINT8).astype(np.uint8)
    if mode in _GRAY_MODES:
        return np.asarray(img.convert("L"), dtype=np.uint8).copy()
    if mode == "F":
        raise ImageReadError(f"{path}: floating-point image mode 'F' has no defined 8-bit range")
    try:
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except ValueError as e:
        raise ImageReadError(f"{path}: cannot convert image mode {mode!r} to RGB ({e})") from e


class WriteError(OSError):
    """A file could not be written (e.g. a full disk); the previous file is intact. ``errno`` is
    the cause's; the message names the file."""

    def __str__(self):
        return str(self.strerror)


def _write_failed(path, error, what="file"):
    """The :class:`WriteError` for ``error`` (an OSError) raised while replacing ``path``."""
    kept = f"the previous {what} is intact" if Path(path).exists() else "nothing was written"
    return WriteError(error.errno, f"cannot write {what} {path}: {error.strerror or error}; {kept}")


HASH_CHUNK = 1 << 20
"""Bytes read at a time by :func:`sha256_file`."""


def sha256_file(path):
    """Hex SHA-256 of a file's bytes, read in chunks (downloads, cache records, weights)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_write(path, mode="wb", what="file", **open_kwargs):
    """Open a temporary file beside ``path``; on success it replaces ``path`` atomically: the
    project's one way to write a file (lists, caches, images, tables, logs, checkpoints).

    Usage: ``with atomic_write(p, "w") as f: f.write(...)``. The data is flushed and fsynced
    before the rename, and the folder after it, so a crash (SIGKILL, OOM, power loss) leaves the
    old or the new file, never a truncated one. Parent folders are created. If the block raises,
    the temporary file (``.<name>.*.tmp``) is removed and an existing ``path`` is untouched; an
    OSError (full disk, no permission) becomes a :class:`WriteError` naming ``what`` and the
    file. Permissions: 0666 minus the umask, as for any new file. ``open_kwargs`` go to
    ``open`` (e.g. ``newline=""`` for csv).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, WriteError):
            raise _write_failed(path, e, what) from e
        raise
    with contextlib.suppress(OSError):   # make the rename itself durable (not possible everywhere)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def remove_stale_temp_files(path):
    """Delete the temp files ``.<name>.*.tmp`` that :func:`atomic_write` left beside ``path``
    when the writing process was killed (they are never complete files). Returns their paths."""
    path = Path(path)
    stale = sorted(path.parent.glob(f".{path.name}.*.tmp")) if path.parent.is_dir() else []
    for tmp in stale:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return stale


LOCK_NAME = ".run.lock"
"""File in a run folder that a training run holds an exclusive lock on (:func:`folder_lock`)."""


class FolderBusyError(ValueError):
    """Another process holds the lock of a run folder."""


@contextlib.contextmanager
def folder_lock(folder, what="run"):
    """Hold an exclusive, non-blocking lock on ``folder``/:data:`LOCK_NAME` for the ``with``
    block: a POSIX record lock (``fcntl.lockf``), which belongs to this process alone (the
    DataLoader workers it forks do not inherit it, so an interrupted stage's lingering workers
    cannot keep the folder locked) and which the OS releases when the process ends, however it
    ends.

    The lock file holds the holder's PID. Raises FolderBusyError naming the folder and that PID
    when another process holds it. Where ``fcntl`` does not exist (Windows), or the file system
    has no locks (some network or FUSE mounts, e.g. a mounted cloud drive), nothing is locked
    and a warning says so.
    """
    try:
        import fcntl
    except ImportError:                       # Windows: no advisory locks of this kind
        yield
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, PermissionError):     # EAGAIN / EACCES: another holder
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise FolderBusyError(f"{folder} is in use by another {what} (PID {holder}, lock "
                                  f"{path}): wait for it to end, or choose another folder") \
                from None
        except OSError as e:          # a file system without locks (some network / FUSE mounts)
            warnings.warn(f"{folder}: cannot be locked ({e.strerror or e}): a second {what} on "
                          f"this folder would not be detected", stacklevel=3)
        else:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def save_image(path, img):
    """Write a uint8 image ``(H,W)``, ``(H,W,1)`` or ``(H,W,3)`` to ``path`` atomically.

    The format comes from the extension (``.png`` recommended: lossless). Parent folders are
    created. The array is checked before anything is written, and the file is written to a
    temporary name in the same folder then renamed, so an existing file is never left half-written.

    Raises:
        TypeError: ``img`` is not a uint8 numpy array.
        ValueError: unsupported shape, or an extension PIL cannot write (message names the path).
    """
    path = Path(path)
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
        raise TypeError(f"{path}: save_image needs a uint8 numpy array, got "
                        f"{type(img).__name__} {getattr(img, 'dtype', '')}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)) or 0 in img.shape:
        raise ValueError(f"{path}: save_image needs a non-empty (H,W) or (H,W,3) array, "
                         f"got shape {img.shape}")
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise ValueError(f"{path}: cannot write images with extension {path.suffix!r}")
    pil = Image.fromarray(np.ascontiguousarray(img))
    with atomic_write(path, "wb") as f:
        pil.save(f, format=fmt)


# --------------------------------------------------------------------------------------------
# Geometry and colour
# --------------------------------------------------------------------------------------------

def modcrop(img, scale):
    """Crop ``img`` ``(H,W[,C])`` to ``(H - H % scale, W - W % scale[,C])``, keeping the top-left.

    Returns a view of ``img`` (no copy). ``scale`` must be a positive integer.
    """
    if int(scale) != scale or scale < 1:
        raise ValueError(f"modcrop: scale must be a positive integer, got {scale!r}")
    scale = int(scale)
    h, w = img.shape[:2]
    return img[:h - h % scale, :w - w % scale, ...]


def _check_rgb(img, what):
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{what}: needs an (H,W,3) array, got shape {getattr(img, 'shape', None)}")


def rgb2ycbcr(img, y_only=False):
    """MATLAB ``rgb2ycbcr`` (BT.601, Y in 16..235, Cb/Cr in 16..240 on the 0..255 scale).

    Args:
        img: ``(H,W,3)`` RGB, uint8 (0..255) or float (0..1).
        y_only: return only Y as ``(H,W)``.

    Returns:
        ``(H,W,3)`` YCbCr (or ``(H,W)`` Y): uint8 input -> uint8 rounded; float input -> float64
        on the 0..1 scale (Y in [16/255, 235/255]), not rounded.
    """
    _check_rgb(img, "rgb2ycbcr")
    is_uint8 = img.dtype == np.uint8
    if not (is_uint8 or np.issubdtype(img.dtype, np.floating)):
        raise TypeError(f"rgb2ycbcr: needs uint8 or float input, got {img.dtype}")
    x = img.astype(np.float64) * (1.0 if is_uint8 else UINT8_MAX)  # on the 0..255 scale
    matrix = RGB_TO_YCBCR_MATRIX[:1] if y_only else RGB_TO_YCBCR_MATRIX
    offset = YCBCR_OFFSET[:1] if y_only else YCBCR_OFFSET
    out = x @ (matrix.T / UINT8_MAX) + offset
    if y_only:
        out = out[:, :, 0]
    if is_uint8:
        return _round_to_uint8(out)
    return out / UINT8_MAX


def ycbcr2rgb(img):
    """MATLAB ``ycbcr2rgb``: the inverse of :func:`rgb2ycbcr`.

    Args:
        img: ``(H,W,3)`` YCbCr, uint8 (0..255) or float (0..1).

    Returns:
        ``(H,W,3)`` RGB: uint8 input -> uint8 (rounded, clipped); float input -> float64 in [0,1]
        (clipped to [0,1], as MATLAB does).
    """
    _check_rgb(img, "ycbcr2rgb")
    is_uint8 = img.dtype == np.uint8
    if not (is_uint8 or np.issubdtype(img.dtype, np.floating)):
        raise TypeError(f"ycbcr2rgb: needs uint8 or float input, got {img.dtype}")
    x = img.astype(np.float64) * (1.0 if is_uint8 else UINT8_MAX)  # on the 0..255 scale
    out = (x - YCBCR_OFFSET) @ (YCBCR_TO_RGB_MATRIX.T * UINT8_MAX)  # rgb on the 0..255 scale
    if is_uint8:
        return _round_to_uint8(out)
    return np.clip(out / UINT8_MAX, 0.0, 1.0)


def rgb_to_luma(img):
    """uint8 RGB ``(H,W,3)`` -> uint8 gray ``(H,W)``, bit-identical to PIL's ``convert('L')``."""
    _check_rgb(img, "rgb_to_luma")
    if img.dtype != np.uint8:
        raise TypeError(f"rgb_to_luma: needs uint8 input, got {img.dtype}")
    acc = img.astype(np.int64) @ LUMA_WEIGHTS_Q16 + (1 << (LUMA_SHIFT - 1))
    return (acc >> LUMA_SHIFT).astype(np.uint8)


def _round_to_uint8(x):
    """Float array on the 0..255 scale -> uint8, MATLAB-style (round half away from zero, clip)."""
    return np.clip(np.floor(x + 0.5), 0, UINT8_MAX).astype(np.uint8)


_COLOR_MATRICES = {}
"""Cache of :func:`_color_matrix`: (matrix bytes, shape, dtype, device) -> tensor."""


def _color_matrix(matrix, x):
    """``matrix`` (a small numpy array) as a tensor of ``x``'s dtype on ``x``'s device, made once
    per (matrix, dtype, device) and cached: copying it to a GPU on every call would wait for
    the GPU each time. The cached tensor is an ordinary one (made outside inference mode), so
    the same cache serves inference and training; it must not be modified in place."""
    key = (matrix.tobytes(), matrix.shape, x.dtype, x.device)
    cached = _COLOR_MATRICES.get(key)
    if cached is None:
        with torch.inference_mode(False):
            cached = _COLOR_MATRICES[key] = torch.as_tensor(matrix, dtype=x.dtype, device=x.device)
    return cached


def rgb2ycbcr_torch(x):
    """Differentiable MATLAB ``rgb2ycbcr`` on tensors.

    Args:
        x: ``(N,3,H,W)`` (or ``(3,H,W)``) float RGB in [0,1].

    Returns:
        Same shape and dtype: YCbCr scaled to [0,1] (Y in [16/255, 235/255]). Not clamped.
    """
    if not torch.is_floating_point(x) or x.dim() < 3 or x.shape[-3] != 3:
        raise ValueError(f"rgb2ycbcr_torch: needs a float (N,3,H,W) tensor, got "
                         f"{tuple(x.shape)} {x.dtype}")
    m = _color_matrix(RGB_TO_YCBCR_MATRIX / UINT8_MAX, x)
    off = _color_matrix(YCBCR_OFFSET / UINT8_MAX, x)
    return torch.einsum("ij,...jhw->...ihw", m, x) + off[:, None, None]


def ycbcr2rgb_torch(x):
    """Differentiable MATLAB ``ycbcr2rgb`` on tensors (the inverse of :func:`rgb2ycbcr_torch`).

    Args:
        x: ``(N,3,H,W)`` (or ``(3,H,W)``) float YCbCr scaled to [0,1].

    Returns:
        Same shape and dtype: RGB, ~[0,1]. Not clamped (so gradients pass everywhere).
    """
    if not torch.is_floating_point(x) or x.dim() < 3 or x.shape[-3] != 3:
        raise ValueError(f"ycbcr2rgb_torch: needs a float (N,3,H,W) tensor, got "
                         f"{tuple(x.shape)} {x.dtype}")
    m = _color_matrix(YCBCR_TO_RGB_MATRIX * UINT8_MAX, x)
    off = _color_matrix(YCBCR_OFFSET / UINT8_MAX, x)
    return torch.einsum("ij,...jhw->...ihw", m, x - off[:, None, None])


# --------------------------------------------------------------------------------------------
# numpy <-> torch
# --------------------------------------------------------------------------------------------

def image_to_tensor(img):
    """uint8 image ``(H,W)`` or ``(H,W,C)`` -> ``(1,C,H,W)`` float32 tensor in [0,1] (C=1: gray)."""
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
        raise TypeError(f"image_to_tensor: needs a uint8 numpy array, got "
                        f"{type(img).__name__} {getattr(img, 'dtype', '')}")
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3:
        raise ValueError(f"image_to_tensor: needs (H,W) or (H,W,C), got shape {img.shape}")
    t = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
    return t.unsqueeze(0).to(torch.float32).div_(UINT8_MAX)


def tensor_to_image(t):
    """``(1,C,H,W)`` or ``(C,H,W)`` float tensor in [0,1] -> uint8 image.

    Values are clamped to [0,1], scaled to 0..255 and rounded (half up). Returns ``(H,W,C)``, or
    ``(H,W)`` when C == 1. Works on any device; gradients are not tracked.
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"tensor_to_image: needs a torch tensor, got {type(t).__name__}")
    if t.dim() == 4:
        if t.shape[0] != 1:
            raise ValueError(f"tensor_to_image: needs a batch of one, got shape {tuple(t.shape)}")
        t = t[0]
    if t.dim() != 3:
        raise ValueError(f"tensor_to_image: needs (1,C,H,W) or (C,H,W), got {tuple(t.shape)}")
    t = t.detach().float().clamp(0, 1).mul(UINT8_MAX).add_(0.5).floor_()
    img = t.to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return img[:, :, 0] if img.shape[2] == 1 else img


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------

def _metric_plane(sr, hr, shave, what):
    """Check a pair of uint8 images and return the two float64 planes the metrics compare.

    Colour ``(H,W,3)`` -> Y of MATLAB rgb2ycbcr on the 0..255 scale, unrounded (16..235);
    single channel ``(H,W)`` or ``(H,W,1)`` -> the raw gray values. ``shave`` px off every side.
    """
    for name, img in (("sr", sr), ("hr", hr)):
        if not isinstance(img, np.ndarray):
            raise TypeError(f"{what}: {name} must be a numpy uint8 array, got {type(img).__name__}")
        if img.dtype != np.uint8:
            raise TypeError(f"{what}: {name} has dtype {img.dtype}; the evaluation protocol "
                            "compares uint8 images - round the SR output to uint8 first "
                            "(e.g. utils.tensor_to_image)")
    if sr.shape != hr.shape:
        raise ValueError(f"{what}: shape mismatch, sr {sr.shape} vs hr {hr.shape}")
    if not (sr.ndim == 2 or (sr.ndim == 3 and sr.shape[2] in (1, 3))):
        raise ValueError(f"{what}: needs (H,W), (H,W,1) or (H,W,3) images, got {sr.shape}")
    if int(shave) != shave or shave < 0:
        raise ValueError(f"{what}: shave must be a non-negative integer, got {shave!r}")
    shave = int(shave)
    h, w = sr.shape[:2]
    if h <= 2 * shave or w <= 2 * shave:
        raise ValueError(f"{what}: image {sr.shape} too small to shave {shave} px from every side")
    planes = []
    for img in (sr, hr):
        img = img[shave:h - shave, shave:w - shave]
        if img.ndim == 3 and img.shape[2] == 3:
            plane = img.astype(np.float64) @ (RGB_TO_YCBCR_MATRIX[0] / UINT8_MAX) + YCBCR_OFFSET[0]
        else:
            plane = img.reshape(img.shape[:2]).astype(np.float64)
        planes.append(plane)
    return planes


def psnr(sr, hr, shave=0):
    """PSNR in dB (peak 255) between two uint8 images of equal shape (see the module docstring).

    Args:
        sr, hr: uint8 ``(H,W)`` or ``(H,W,3)``; colour images are compared on Y (float, 16..235),
            single-channel images on their raw values.
        shave: pixels removed from every border before comparing (the protocol uses the scale).

    Returns:
        float; ``inf`` for identical (shaved) images.
    """
    a, b = _metric_plane(sr, hr, shave, "psnr")
    mse = np.mean((a - b) ** 2)
    if mse == 0:
        return float("inf")
    return float(10 * np.log10(UINT8_MAX ** 2 / mse))


def check_uint8(what, **images):
    """Raise TypeError naming ``what`` and the argument unless every image is a uint8 numpy
    array (e.g. ``check_uint8('lr_psnr', sr=sr, lr=lr)``)."""
    for name, img in images.items():
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
            raise TypeError(f"{what}: {name} must be a uint8 numpy array, got "
                            f"{type(img).__name__} {getattr(img, 'dtype', '')}")


def _psnr_all_channels(a, b, what):
    """PSNR in dB (peak 255) over every value of two uint8 arrays of equal shape; inf if equal."""
    check_uint8(what, a=a, b=b)
    if a.shape != b.shape:
        raise ValueError(f"{what}: shape mismatch, {a.shape} vs {b.shape}")
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    if mse == 0:
        return float("inf")
    return float(10 * np.log10(UINT8_MAX ** 2 / mse))


def psnr_rgb(sr, hr, shave=0):
    """PSNR in dB (peak 255) over all RGB channels of two uint8 images of equal shape.

    Args:
        sr, hr: uint8 ``(H,W,3)`` (all three channels compared) or ``(H,W)`` / ``(H,W,1)``
            (the one channel: the same value as for its gray->RGB replication).
        shave: pixels removed from every border first (same convention as :func:`psnr`).

    Returns:
        float; ``inf`` for identical (shaved) images.
    """
    _metric_plane(sr, hr, shave, "psnr_rgb")  # the checks of psnr (dtype, shape, shave)
    h, w = sr.shape[:2]
    shave = int(shave)
    crop = (slice(shave, h - shave), slice(shave, w - shave))
    return _psnr_all_channels(sr[crop], hr[crop], "psnr_rgb")


def lr_psnr(sr, lr, scale):
    """LR-PSNR: PSNR in dB between the SR image downscaled back and the LR input.

    The consistency measure of the NTIRE 2021 "Learning the super-resolution space" challenge
    (entries needed LR-PSNR >= 45 dB): ``imresize(sr, 1/scale)`` - the MATLAB-exact bicubic
    degradation the LR images were made with, uint8 in and out - compared with ``lr`` on every
    RGB value (uint8 scale, peak 255, no shave).

    Args:
        sr: uint8 ``(scale*H, scale*W[,3])`` super-resolved image.
        lr: uint8 ``(H,W[,3])`` the LR input it was made from (gray ``(H,W)`` with a gray ``sr``).
        scale: the integer upscaling factor (>= 1).

    Returns:
        float dB; ``inf`` when the downscaled SR equals the LR exactly.

    Raises:
        TypeError: not uint8 numpy arrays.
        ValueError: a bad ``scale``, or ``sr`` is not ``lr``'s shape times ``scale`` (with the
            same channels).
    """

    check_uint8("lr_psnr", sr=sr, lr=lr)
    for name, img in (("sr", sr), ("lr", lr)):
        if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (1, 3))) or 0 in img.shape:
            raise ValueError(f"lr_psnr: {name} must be a non-empty (H,W) or (H,W,3) image, "
                             f"got {img.shape}")
    if isinstance(scale, bool) or int(scale) != scale or scale < 1:
        raise ValueError(f"lr_psnr: scale must be a positive integer, got {scale!r}")
    scale = int(scale)
    want = (lr.shape[0] * scale, lr.shape[1] * scale) + lr.shape[2:]
    if sr.shape != want:
        raise ValueError(f"lr_psnr: sr {sr.shape} is not the LR {lr.shape} upscaled x{scale} "
                         f"(expected {want})")
    # output_shape = the LR size: the scale 1/scale of MATLAB, without ceil() rounding surprises
    return _psnr_all_channels(imresize(sr, output_shape=lr.shape[:2]), lr, "lr_psnr")


def _gaussian_1d(size=SSIM_WINDOW, sigma=SSIM_SIGMA):
    """Normalised 1-D Gaussian ``(size,)``; its outer product is MATLAB's
    ``fspecial('gaussian', size, sigma)``."""
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-x ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def _filter_valid(stack, g):
    """Separable 'valid' correlation of ``stack`` ``(K,H,W)`` float64 with ``outer(g, g)``.

    Returns ``(K, H-n+1, W-n+1)`` with ``n = len(g)``; loops over the ``n`` taps, not pixels.
    """
    n = len(g)
    h_out, w_out = stack.shape[1] - n + 1, stack.shape[2] - n + 1
    vert = g[0] * stack[:, 0:h_out]                    # vertical pass
    for k in range(1, n):
        vert += g[k] * stack[:, k:k + h_out]
    out = g[0] * vert[:, :, 0:w_out]                   # horizontal pass
    for k in range(1, n):
        out += g[k] * vert[:, :, k:k + w_out]
    return out


def ssim(sr, hr, shave=0):
    """SSIM (Wang et al. 2004) between two uint8 images of equal shape (see the module docstring).

    11x11 Gaussian window (sigma 1.5, normalised), 'valid' filtering, K1=0.01, K2=0.03, L=255,
    mean of the SSIM map; colour images compared on Y (float, 16..235), single-channel images on
    their raw values; ``shave`` pixels removed from every border first. Returns a float (1.0 for
    identical images). The shaved images must be at least 11x11.
    """
    a, b = _metric_plane(sr, hr, shave, "ssim")
    if min(a.shape) < SSIM_WINDOW:
        raise ValueError(f"ssim: image {sr.shape} minus {shave} px per side is smaller than the "
                         f"{SSIM_WINDOW}x{SSIM_WINDOW} window")
    c1 = (SSIM_K1 * UINT8_MAX) ** 2
    c2 = (SSIM_K2 * UINT8_MAX) ** 2
    g = _gaussian_1d()
    h_out = a.shape[0] - SSIM_WINDOW + 1
    total = 0.0
    # the SSIM map is computed a strip of rows at a time: the arrays stay in the CPU cache
    for r0 in range(0, h_out, SSIM_STRIP_ROWS):
        r1 = min(h_out, r0 + SSIM_STRIP_ROWS)
        sa, sb = a[r0:r1 + SSIM_WINDOW - 1], b[r0:r1 + SSIM_WINDOW - 1]
        # sigma1^2 and sigma2^2 only appear as a sum, so a^2 + b^2 is filtered once
        mu1, mu2, sum_sq, prod = _filter_valid(np.stack([sa, sb, sa * sa + sb * sb, sa * sb]), g)
        mu12 = mu1 * mu2
        mu_sq = mu1 * mu1 + mu2 * mu2
        sigma_sq = sum_sq - mu_sq     # sigma1^2 + sigma2^2
        sigma12 = prod - mu12
        ssim_map = (2 * mu12 + c1) * (2 * sigma12 + c2) / ((mu_sq + c1) * (sigma_sq + c2))
        total += ssim_map.sum()
    return float(total / (h_out * (a.shape[1] - SSIM_WINDOW + 1)))


# --------------------------------------------------------------------------------------------
# No-reference quality: NIQE
# --------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _niqe_params():
    """``(mu_pris (36,), cov_pris (36,36), gaussian_window (7,7))`` read from
    :data:`NIQE_PARAMS`."""
    if not NIQE_PARAMS.is_file():
        raise FileNotFoundError(f"niqe: pristine model parameters not found at {NIQE_PARAMS}")
    with np.load(NIQE_PARAMS) as data:
        mu = np.asarray(data["mu_pris_param"], dtype=np.float64).reshape(-1)
        cov = np.asarray(data["cov_pris_param"], dtype=np.float64)
        window = np.asarray(data["gaussian_window"], dtype=np.float64)
    for a in (mu, cov, window):
        a.flags.writeable = False
    return mu, cov, window


def _matlab_colon(start, step, stop):
    """MATLAB's ``start:step:stop`` for ``step > 0`` and ``stop`` on the grid (up to rounding),
    built as MATLAB's colon operator does: the first half ``start + k*step``, the second half
    ``stop - k*step``, the middle element (even interval count) ``(start + stop) / 2``. It
    differs from ``np.arange`` in the last bits only."""
    n = int(np.floor((stop - start) / step + 1e-10))        # number of intervals
    k = np.arange(n // 2 + 1, dtype=np.float64)
    v = np.empty(n + 1)
    v[:n // 2 + 1] = start + k * step
    v[n - k.astype(np.int64)] = stop - k * step
    if n % 2 == 0:
        v[n // 2] = (start + stop) / 2
    return v


@functools.lru_cache(maxsize=1)
def _aggd_grid():
    """``(gam, r_gam)`` of estimateaggdparam.m: gam = 0.2:0.001:10 and
    r_gam = gamma(2/gam)^2 / (gamma(1/gam) gamma(3/gam)), strictly increasing (checked)."""
    from scipy.special import gamma
    gam = _matlab_colon(NIQE_GAM_START, NIQE_GAM_STEP, NIQE_GAM_STOP)
    r_gam = gamma(2 / gam) ** 2 / (gamma(1 / gam) * gamma(3 / gam))
    if not np.all(np.diff(r_gam) > 0):  # the searchsorted argmin below relies on it
        raise RuntimeError("niqe: r_gam is not strictly increasing")
    gam.flags.writeable = False
    r_gam.flags.writeable = False
    return gam, r_gam


def _aggd_alpha(rhatnorm):
    """``gam[argmin((r_gam - x)^2)]`` (first minimum) for every x of ``rhatnorm`` ``(n,)``.

    r_gam is increasing, so the minimum lies next to ``searchsorted(r_gam, x)``; the squared
    errors of a 4-wide window around it are compared exactly as the full argmin would (ties ->
    first index). NaN x -> gam[0], as MATLAB's ``min`` and numpy's ``argmin`` of all-NaN give 1/0.
    """
    gam, r_gam = _aggd_grid()
    n = len(r_gam)
    idx = np.searchsorted(r_gam, rhatnorm)                       # r[idx-1] < x <= r[idx]
    cand = np.clip(idx[:, None] + np.arange(-2, 2), 0, n - 1)    # ascending candidates
    err = (r_gam[cand] - rhatnorm[:, None]) ** 2
    best = cand[np.arange(len(rhatnorm)), np.argmin(err, axis=1)]
    best[np.isnan(rhatnorm)] = 0
    return gam[best]


def _aggd_fit(v):
    """estimateaggdparam.m for every row of ``v`` ``(n, m)``: ``(alpha, betal, betar)``, each
    ``(n,)``. A row without negative (positive) values has a NaN betal (betar), as in MATLAB."""
    from scipy.special import gamma
    sq = v * v
    neg, pos = v < 0, v > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        left_std = np.sqrt(np.sum(sq, axis=1, where=neg) / np.count_nonzero(neg, axis=1))
        right_std = np.sqrt(np.sum(sq, axis=1, where=pos) / np.count_nonzero(pos, axis=1))
        gammahat = left_std / right_std
        rhat = np.mean(np.abs(v), axis=1) ** 2 / np.mean(sq, axis=1)
        rhatnorm = rhat * (gammahat ** 3 + 1) * (gammahat + 1) / (gammahat ** 2 + 1) ** 2
    alpha = _aggd_alpha(rhatnorm)
    ratio = np.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    return alpha, left_std * ratio, right_std * ratio


def _niqe_block_features(blocks):
    """computefeature.m for every block of ``blocks`` ``(n, bs, bs)`` -> ``(n, 18)``."""
    from scipy.special import gamma
    n = blocks.shape[0]
    feat = np.empty((n, 18))
    alpha, betal, betar = _aggd_fit(blocks.reshape(n, -1))
    feat[:, 0], feat[:, 1] = alpha, (betal + betar) / 2
    for i, shift in enumerate(NIQE_SHIFTS):
        pair = blocks * np.roll(blocks, shift, axis=(1, 2))   # MATLAB circshift of each block
        alpha, betal, betar = _aggd_fit(pair.reshape(n, -1))
        mean = (betar - betal) * (gamma(2 / alpha) / gamma(1 / alpha))
        feat[:, 2 + 4 * i:6 + 4 * i] = np.stack([alpha, mean, betal, betar], axis=1)
    return feat


def _exact_mean_is_centre(im, window, cand):
    """For the raveled pixel indices ``cand`` of ``im``: does the exactly computed 7x7 weighted
    mean (edges replicated) round to the pixel itself? Yes iff, for every set of window
    positions sharing one weight (the rings of the Gaussian), the neighbours sum to set size x
    centre: the mean is then ``centre * sum(w)``, and the window sums to 1 within 2**-53. The
    ring sums of the differences are exact for integer-valued images (the first scale) and in
    flat areas (all differences 0). Returns a bool array like ``cand``."""
    kh, kw = window.shape
    _, ring = np.unique(window.ravel(), return_inverse=True)
    member = np.zeros((kh * kw, ring.max() + 1))
    member[np.arange(kh * kw), ring.ravel()] = 1.0          # (taps, rings) 0/1
    dy, dx = np.divmod(np.arange(kh * kw), kw)
    pad = np.pad(im, ((kh // 2, kh // 2), (kw // 2, kw // 2)), mode="edge")
    out = np.empty(cand.size, dtype=bool)
    for i in range(0, cand.size, NIQE_ZERO_CHUNK):
        rows, cols = np.divmod(cand[i:i + NIQE_ZERO_CHUNK], im.shape[1])
        diff = pad[rows[:, None] + dy, cols[:, None] + dx] - im[rows, cols][:, None]
        out[i:i + NIQE_ZERO_CHUNK] = ~np.any(diff @ member, axis=1)
    return out


def _niqe_mscn(im, window):
    """MSCN coefficients of computequality.m: ``(im - mu) / (sigma + 1)`` with
    ``mu = imfilter(im, w, 'replicate')``, ``sigma = sqrt(|imfilter(im.^2, w) - mu.^2|)``.

    Where the exact local mean equals the pixel (constant or ring-symmetric neighbourhoods) the
    coefficient is exactly 0, as MATLAB gives: a floating-point sum leaves +-1e-14 there instead,
    and the AGGD fit counts such values as negative or positive samples (on baboon.png that
    moves NIQE by 4e-4; on images with flat areas by up to 0.3).
    """
    from scipy.ndimage import correlate
    mu = correlate(im, window, mode="nearest")                  # imfilter(..., 'replicate')
    sigma = np.sqrt(np.abs(correlate(im * im, window, mode="nearest") - mu * mu))
    dev = im - mu
    mscn = dev / (sigma + 1)
    cand = np.flatnonzero(np.abs(dev) <= NIQE_ZERO_TOL * np.maximum(np.abs(im), 1))
    if cand.size:
        np.put(mscn, cand[_exact_mean_is_centre(im, window, cand)], 0.0)
    return mscn


def niqe(img, crop_border=0):
    """NIQE, the "completely blind" image quality of Mittal, Soundararajan and Bovik, "Making a
    'Completely Blind' Image Quality Analyzer", IEEE Signal Processing Letters 20(3), 2013.

    No reference image: the distance between a multivariate Gaussian fitted to natural-scene
    statistics of the image and the authors' model of pristine images. **Lower is better**;
    sharp natural HR photographs score about 3-6, blurry (e.g. bicubic) upscales higher.

    Protocol of PIRM 2018 / BasicSR, reproducing MATLAB's official ``niqe_release``
    (``computequality.m`` with 96x96 blocks, no overlap):

    1. colour: Y of MATLAB ``rgb2ycbcr`` (16..235) rounded to integers (MATLAB returns uint8);
       single channel: the gray values as they are; then float64;
    2. ``crop_border`` pixels removed from every side;
    3. cut to whole 96x96 blocks (top-left ``floor(H/96)*96 x floor(W/96)*96``);
    4. at the original and at half scale (MATLAB ``imresize(im, 0.5)``, bicubic, antialiased,
       float, unrounded): mu = imfilter(im, w, 'replicate') with the 7x7 Gaussian w of the
       model, sigma = sqrt(|imfilter(im^2, w) - mu^2|), MSCN = (im - mu) / (sigma + 1), exactly 0
       where the exact local mean is the pixel itself (flat areas, as in MATLAB); per
       block (side 96 / scale) 18 features: an AGGD fit of the block (alpha, mean beta) and of
       its products with its four circular shifts (alpha, mean, betal, betar); the two scales
       give 36 features per block;
    5. mean of the features over blocks (ignoring NaN), covariance of the NaN-free rows,
       quality = sqrt((mu_pris - mu) pinv((cov_pris + cov) / 2) (mu_pris - mu)^T).

    Args:
        img: numpy uint8 ``(H,W,3)`` RGB or ``(H,W)`` / ``(H,W,1)`` gray, values 0..255.
        crop_border: pixels removed from every side first (non-negative int; 0 = none).

    Returns:
        float: the NIQE score (``baboon.png`` of Set14: 5.7296, MATLAB R2021a 5.72957338).

    Raises:
        TypeError: ``img`` is not a uint8 numpy array.
        ValueError: bad shape or ``crop_border``; the (cropped) image is smaller than one 96x96
            block; or fewer than 2 blocks have finite features (e.g. a constant image or a
            single 96x96 block), where the covariance - and NIQE - is undefined.
    """

    if not isinstance(img, np.ndarray):
        raise TypeError(f"niqe: img must be a numpy uint8 array, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise TypeError(f"niqe: img has dtype {img.dtype}; NIQE's protocol takes uint8 images "
                        "(e.g. utils.tensor_to_image)")
    if img.ndim == 3 and img.shape[2] == 3:
        im = rgb2ycbcr(img, y_only=True).astype(np.float64)   # rounded Y, as MATLAB's uint8
    elif img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        im = img.reshape(img.shape[:2]).astype(np.float64)
    else:
        raise ValueError(f"niqe: needs an (H,W), (H,W,1) or (H,W,3) image, got {img.shape}")
    if isinstance(crop_border, bool) or int(crop_border) != crop_border or crop_border < 0:
        raise ValueError(f"niqe: crop_border must be a non-negative integer, got {crop_border!r}")
    c = int(crop_border)
    if c:
        im = im[c:im.shape[0] - c, c:im.shape[1] - c]
    h, w = im.shape
    nh, nw = h // NIQE_BLOCK, w // NIQE_BLOCK
    if nh == 0 or nw == 0:
        raise ValueError(f"niqe: image of {img.shape[0]}x{img.shape[1]} px"
                         + (f" ({h}x{w} after cropping {c} px per side)" if c else "")
                         + f" is smaller than one {NIQE_BLOCK}x{NIQE_BLOCK} block, the minimum")
    im = im[:nh * NIQE_BLOCK, :nw * NIQE_BLOCK]

    mu_pris, cov_pris, window = _niqe_params()
    feats = []
    for scale in (1, 2):
        mscn = _niqe_mscn(im, window)
        bs = NIQE_BLOCK // scale
        # (nw, nh, bs, bs): the blocks in MATLAB blkproc's column-major order
        blocks = mscn.reshape(nh, bs, nw, bs).transpose(2, 0, 1, 3).reshape(-1, bs, bs)
        feats.append(_niqe_block_features(blocks))
        if scale == 1:
            im = imresize(im, 0.5)                               # float64, not rounded
    feat = np.concatenate(feats, axis=1)                         # (blocks, 36)

    complete = feat[~np.isnan(feat).any(axis=1)]
    if len(complete) < 2:
        raise ValueError(f"niqe: only {len(complete)} of the {len(feat)} 96x96 blocks of the "
                         f"{img.shape[0]}x{img.shape[1]} image have finite features (flat or "
                         "constant image, or a single block); NIQE needs at least 2")
    mu_dist = np.nanmean(feat, axis=0)                           # no all-NaN column here
    cov_dist = np.cov(complete, rowvar=False)
    diff = mu_pris - mu_dist
    quality = float(np.sqrt(diff @ np.linalg.pinv((cov_pris + cov_dist) / 2) @ diff))
    if not np.isfinite(quality):
        raise ValueError(f"niqe: non-finite score for the {img.shape} image")
    return quality


# ----------------------------------------------------------------------------------------------
# Devices, precision, memory format, random number generators
# ----------------------------------------------------------------------------------------------

def resolve_device(spec="auto"):
    """``'auto'`` -> CUDA when available, else CPU; otherwise ``torch.device(spec)``.

    Raises RuntimeError naming the device when CUDA is asked for but not available.
    """
    if spec in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {spec!r} requested but CUDA is not available "
                           f"(torch {torch.__version__}); use --device cpu")
    return device


AMP_MODES = (None, "bf16", "fp16", "auto")
"""Values of ``train.amp``: full float32, bfloat16 autocast, float16 autocast with gradient
scaling (:func:`make_grad_scaler`), or the best of them for the device (:func:`resolve_amp`)."""

BF16_MIN_CAPABILITY = (8, 0)
"""CUDA compute capability from which bfloat16 runs natively (Ampere: A100, RTX 30xx); older
cards (T4 7.5, V100 7.0) emulate it slowly, so ``'auto'`` picks float16 there."""

_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_amp(amp, device):
    """The amp mode to train with on ``device``: ``'auto'`` -> ``'bf16'`` on CUDA devices of
    compute capability >= :data:`BF16_MIN_CAPABILITY`, ``'fp16'`` on older CUDA devices, None
    (float32) elsewhere (the CPU keeps its float32 numerics); other values are returned as
    they are (ValueError for an unknown one)."""
    if amp not in AMP_MODES:
        raise ValueError(f"unknown amp mode {amp!r}: use one of {AMP_MODES}")
    if amp != "auto":
        return amp
    device = torch.device(device)
    if device.type != "cuda":
        return None
    capability = torch.cuda.get_device_capability(device)
    return "bf16" if tuple(capability) >= BF16_MIN_CAPABILITY else "fp16"


def autocast(device, amp=None):
    """Autocast context for ``amp`` (None: full float32; ``'bf16'`` / ``'fp16'``: autocast to
    bfloat16 / float16 on ``device``'s type; resolve ``'auto'`` with :func:`resolve_amp` first)."""
    if amp not in (None, "bf16", "fp16"):
        raise ValueError(f"unknown amp mode {amp!r}: use None, 'bf16' or 'fp16'"
                         + (" (resolve 'auto' with utils.resolve_amp)" if amp == "auto" else ""))
    return torch.autocast(device_type=torch.device(device).type,
                          dtype=_AMP_DTYPES.get(amp, torch.bfloat16), enabled=amp is not None)


def float32_region(x):
    """A context in which autocast is off on ``x``'s device: what runs inside computes in the
    dtype of its inputs (the content losses run in float32 under any amp mode)."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def make_grad_scaler(amp, device):
    """A ``torch.amp.GradScaler`` for ``amp == 'fp16'`` (float16 gradients underflow without
    loss scaling), else None. Make one per optimiser: each scaler's ``update()`` must follow
    exactly one ``step()`` of its optimiser (a shared scaler stepped for G and D would adjust
    its scale from the mixed history of both). Its state dict goes into the checkpoint."""
    if amp != "fp16":
        return None
    return torch.amp.GradScaler(torch.device(device).type)


@contextlib.contextmanager
def cudnn_benchmark(enabled):
    """Within the block ``torch.backends.cudnn.benchmark = enabled`` (then restored): cuDNN
    picks the fastest convolution algorithms for the fixed training patch size once; validation
    (whole images of varying sizes, which would be re-tuned for every size) runs outside."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = bool(enabled) or before
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def to_device(x, device, channels_last=False):
    """Move a batch tensor to ``device`` (NHWC memory format when ``channels_last`` and 4-D)."""
    if channels_last and x.dim() == 4:
        return x.to(device, memory_format=torch.channels_last, non_blocking=True)
    return x.to(device, non_blocking=True)


def prepare_model(model, device, channels_last=False):
    """Move ``model`` to ``device`` (and to NHWC memory format when ``channels_last``); returns it."""
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def unwrap(model):
    """The plain module behind ``torch.compile`` and DistributedDataParallel wrappers (in any
    order and number; the module itself when not wrapped): the one whose state dict is saved,
    without ``_orig_mod.`` / ``module.`` key prefixes."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model



def seed_everything(seed):
    """Seed python's ``random``, numpy's global RNG and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def get_rng_state():
    """States of the python, numpy and torch (+CUDA) RNGs as tensors and plain types.

    The dict can be stored in a checkpoint read with ``torch.load(weights_only=True)``.
    """
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():   # a CPU run never touches CUDA
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state, device=None):
    """Restore the RNG states saved by :func:`get_rng_state`.

    CUDA states (one per GPU of the saving machine) are restored by index onto the GPUs this
    process sees, as many as fit: a run saved by 4 torchrun ranks resumes on 1 GPU (or with
    ``CUDA_VISIBLE_DEVICES=0``) with GPU 0's state, the others are dropped. Skipped when
    ``device`` (where this run trains; None: whenever CUDA is available) is not a CUDA device.
    """
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["gauss"]))
    torch.set_rng_state(state["torch"])
    on_cuda = device is None or torch.device(device).type == "cuda"
    if state.get("cuda") and on_cuda and torch.cuda.is_available():
        for index, cuda_state in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)
