"""Image files and the image conventions every module shares.

* reading images (:func:`load_image`: every PIL mode, EXIF orientation, ICC profiles, 16-bit)
  and writing them (:func:`save_image`);
* files written safely: :func:`atomic_write` (temporary file + rename), :func:`folder_lock` (one
  run per output folder), :func:`sha256_file`;
* colour conversions (MATLAB ``rgb2ycbcr``, PIL's luma), :func:`modcrop` and
  :func:`nearest_upsample`;
* numpy images <-> torch tensors (:func:`image_to_tensor`, :func:`tensor_to_image`).

Conventions (used by every module of the project):

* an *image* is a numpy ``uint8`` array ``(H,W)`` (single channel) or ``(H,W,3)`` (RGB);
* a *tensor* is a torch float tensor ``(N,C,H,W)`` with values in ``[0,1]``;
* colour conversions follow MATLAB's ``rgb2ycbcr`` (ITU-R BT.601, "studio swing": Y in 16..235,
  Cb/Cr in 16..240 on the 0..255 scale).

The metrics are in metrics.py; devices, precision and random states in runtime.py.
"""
import contextlib
import hashlib
import io
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps

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


def nearest_upsample(img, scale):
    """uint8 ``(h,w[,C])`` -> ``(scale*h, scale*w[,C])`` by pixel repetition (shows the LR pixels)."""
    return np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)


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
