"""The decode-once cache of training images: each pair's uint8 arrays stored as ``.npy`` files
under a key of both files' identity (:func:`cache_key`), with a record of their sources' and
arrays' hashes written last (:func:`cache_record`) and verified before use
(:func:`check_cache_entry`); memory-mapped reads (:func:`open_npy`) within the open-file limit
(:func:`max_open_maps`). ``datasets.TrainDataset`` builds and reads it."""
import hashlib
import json
from pathlib import Path

import numpy as np

import utils


CACHE_VERSION = 2
"""Bumped whenever the cached arrays or their records change meaning; part of every cache key
(2: keys include inode and ctime, each entry has a verified record, :func:`cache_record`)."""


FD_RESERVE = 256
"""File descriptors left free for everything else when deciding how many cache maps stay open."""


def _file_id(path):
    """``[absolute path, inode, size in bytes, mtime in ns, ctime in ns]``: changes whenever the
    file does -- also when it is replaced by a copy that keeps the old one's mtime (``cp -p``:
    the new file has another ctime, and usually another inode)."""
    path = Path(path).resolve()
    st = path.stat()
    return [str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def cache_key(hr_path, lr_path, scale):
    """Hex key of the cached arrays of one training pair: a hash of both files' identity
    (:func:`_file_id`), the scale and ``CACHE_VERSION`` -- any change gives a new key (stale
    entries are simply never read again)."""
    ident = [CACHE_VERSION, int(scale), _file_id(hr_path),
             _file_id(lr_path) if lr_path is not None else None]
    return hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:20]


def save_npy_atomic(path, array):
    """``np.save`` through ``utils.atomic_write`` (temporary file, rename: never a partial file;
    the project's one permission policy, 0666 minus the umask, like lists and checkpoints)."""
    with utils.atomic_write(path, "wb") as f:
        np.save(f, array)


def open_npy(path):
    """Memory-map a cached ``.npy`` read-only; a plain ndarray view (cheaper to slice)."""
    return np.load(path, mmap_mode="r").view(np.ndarray)


class CorruptCacheError(ValueError):
    """A cache entry whose arrays no longer match the record written with them."""


def _array_record(array):
    """``{"shape", "dtype", "sha256"}`` of an array (the hash of its C-order bytes)."""
    return {"shape": list(array.shape), "dtype": str(array.dtype),
            "sha256": hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()}


def cache_record(hr_path, lr_path, hr, lr):
    """The record written beside a cache entry (``<stem>-<key>.json``, last, so an entry without
    one is incomplete): the sha256 of each source file, and shape, dtype and sha256 of each
    cached uint8 array (``hr`` ``(H,W,3)``, ``lr`` ``(H/s,W/s,3)``)."""
    return {"version": CACHE_VERSION,
            "hr_source": str(hr_path), "hr_source_sha256": utils.sha256_file(hr_path),
            "lr_source": None if lr_path is None else str(lr_path),
            "lr_source_sha256": None if lr_path is None else utils.sha256_file(lr_path),
            "hr": _array_record(hr), "lr": _array_record(lr)}


def _read_record(path):
    """The JSON record of a cache entry; CorruptCacheError naming it if it cannot be read."""
    try:
        record = json.loads(Path(path).read_text())
        if not isinstance(record, dict) or record.get("version") != CACHE_VERSION:
            raise ValueError("not a record of this version")
        return record
    except (OSError, ValueError) as e:
        raise CorruptCacheError(f"{path}: unreadable cache record ({e}); delete it (its "
                                f"entry is rebuilt)") from e


def check_cache_entry(hr_path, lr_path, files):
    """Verify one cache entry ``files`` = ``(hr.npy, lr.npy, record.json)`` of the pair
    ``(hr_path, lr_path)`` against its record.

    Returns True when the entry is valid, False when it is stale (missing files, or a source
    image whose bytes are not those recorded: it must be rebuilt). Raises CorruptCacheError,
    naming the file, when a cached array differs from its record (zeroed pixels, another
    entry's file copied over it, a truncated file): the cache was changed behind the project's
    back, and the message says to delete it.
    """
    hr_file, lr_file, record_file = files
    if not all(f.is_file() for f in files):
        return False
    record = _read_record(record_file)
    sources = [(hr_path, record.get("hr_source_sha256")), (lr_path, record.get("lr_source_sha256"))]
    if any(path is not None and utils.sha256_file(path) != digest for path, digest in sources):
        return False
    for npy, key in ((hr_file, "hr"), (lr_file, "lr")):
        try:
            found = _array_record(open_npy(npy))
        except (OSError, ValueError) as e:
            found = {"error": str(e)}
        if found != record.get(key):
            raise CorruptCacheError(
                f"{npy}: the cached array does not match its record {record_file.name} (changed "
                f"after it was written); delete the file or the cache folder "
                f"{npy.parent} (it is rebuilt from the images)")
    return True


def max_open_maps(wanted):
    """How many memory maps may stay open at once (each holds a file descriptor).

    Raises the soft open-file limit towards ``wanted + FD_RESERVE`` (never above the hard limit)
    where the platform allows it, and returns the number of maps that fit under it.
    """
    try:
        import resource
    except ImportError:                       # Windows: no fd limit of this kind
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(2, min(wanted, soft - FD_RESERVE))
