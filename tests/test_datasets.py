"""datasets.py: pairing and error messages, whole test images, aligned training patches, cache."""
import json
import os
import pickle
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import datasets

import image_cache
import utils
from imresize import imresize

SCALE = 4
PATCH = 32            # HR patch side in these tests (LR 8)


def _save(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


def _noise(h, w, seed, channels=3):
    shape = (h, w, channels) if channels else (h, w)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _to_uint8(t):
    """(3,h,w) float in [0,1] -> uint8 (h,w,3); exact for values that came from uint8."""
    return np.rint(t.numpy().transpose(1, 2, 0) * 255).astype(np.uint8)


def _dihedral(a):
    """The 8 flips/rotations of an (h,w,c) array (a square patch)."""
    out = []
    for t in (a, a.transpose(1, 0, 2)):
        out += [t, t[::-1], t[:, ::-1], t[::-1, ::-1]]
    return out


def _locate(patch, image):
    """All (y, x) where ``patch`` equals a window of ``image`` (both (h,w,3) uint8)."""
    h, w = patch.shape[:2]
    starts = image[:image.shape[0] - h + 1, :image.shape[1] - w + 1]
    candidates = zip(*np.nonzero(np.all(starts == patch[0, 0], axis=2)))
    return [(y, x) for y, x in candidates if np.array_equal(image[y:y + h, x:x + w], patch)]


@pytest.fixture
def train_dir(tmp_path):
    """Two noise images (one gray, one not a multiple of 4) with HR only."""
    hr_dir = tmp_path / "HR"
    _save(hr_dir / "a.png", _noise(98, 83, 1))
    _save(hr_dir / "b.png", _noise(64, 72, 2, channels=0))
    return hr_dir


# -- find_test_set / pairing ---------------------------------------------------------------------

def test_find_test_set_layouts(tmp_path):
    (tmp_path / "Set5" / "HR").mkdir(parents=True)
    assert datasets.find_test_set(tmp_path, "Set5") == (tmp_path / "Set5" / "HR", None)
    (tmp_path / "Set5" / "LR_bicubic" / "X4").mkdir(parents=True)
    assert datasets.find_test_set(tmp_path, "Set5")[1] == tmp_path / "Set5" / "LR_bicubic" / "X4"
    (tmp_path / "benchmark" / "B100" / "HR").mkdir(parents=True)
    assert datasets.find_test_set(tmp_path, "B100")[0] == tmp_path / "benchmark" / "B100" / "HR"
    div2k = tmp_path / "DIV2K"
    (div2k / "DIV2K_valid_HR").mkdir(parents=True)
    (div2k / "DIV2K_valid_LR_bicubic" / "X4").mkdir(parents=True)
    assert datasets.find_test_set(tmp_path, "DIV2K_valid") == (
        div2k / "DIV2K_valid_HR", div2k / "DIV2K_valid_LR_bicubic" / "X4")
    # from the benchmark folder beside DIV2K
    assert datasets.find_test_set(tmp_path / "benchmark", "DIV2K_valid")[0] == div2k / "DIV2K_valid_HR"
    with pytest.raises(FileNotFoundError, match="Urban100"):
        datasets.find_test_set(tmp_path, "Urban100")


def test_pairing_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere"):
        datasets.TestDataset(tmp_path / "nothere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        datasets.TestDataset(tmp_path / "empty")
    hr, lr = tmp_path / "HR", tmp_path / "LR"
    _save(hr / "img.png", _noise(40, 48, 0))
    _save(hr / "other.png", _noise(40, 48, 1))
    _save(lr / "imgx4.png", _noise(10, 12, 0))
    with pytest.raises(FileNotFoundError, match="otherx4"):
        datasets.TestDataset(hr, lr)
    _save(lr / "otherx4.png", _noise(10, 11, 1))     # should be 10x12
    with pytest.raises(ValueError, match="otherx4.png"):
        datasets.TestDataset(hr, lr)
    _save(lr / "otherx4.png", _noise(10, 12, 1))
    (hr / "Thumbs.db").write_bytes(b"\0\1")
    with pytest.warns(UserWarning, match="Thumbs.db"):
        ds = datasets.TestDataset(hr, lr)
    assert [name for _, _, name in ds] == ["img", "other"]
    (hr / "broken.png").write_bytes(b"not a png")
    with pytest.raises(utils.ImageReadError, match="broken.png"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        datasets.TestDataset(hr)


# -- TestDataset on the shared benchmark ---------------------------------------------------------

def test_test_dataset_set14(shared_data):
    hr_dir, lr_dir = datasets.find_test_set(shared_data / "benchmark", "Set14")
    ds = datasets.TestDataset(hr_dir, lr_dir)
    names = sorted(p.stem for p in hr_dir.glob("*.png"))
    assert ds.name == "Set14" and len(ds) == 14
    for i, (lr, hr, name) in enumerate(ds):
        assert name == names[i]
        assert lr.dtype == hr.dtype == np.uint8
        raw = utils.load_image(hr_dir / f"{name}.png")
        assert np.array_equal(hr, utils.modcrop(raw, SCALE))
        assert hr.shape[0] % SCALE == 0 and hr.shape[1] % SCALE == 0
        assert lr.shape[:2] == (hr.shape[0] // SCALE, hr.shape[1] // SCALE)
        assert lr.ndim == hr.ndim == (2 if name == "bridge" else 3)


def test_made_lr_equals_lr_files_set5(shared_data):
    hr_dir, lr_dir = datasets.find_test_set(shared_data / "benchmark", "Set5")
    from_files = datasets.TestDataset(hr_dir, lr_dir)
    made = datasets.TestDataset(hr_dir, None)
    assert len(made) == 5
    for (lr_file, hr_a, name_a), (lr_made, hr_b, name_b) in zip(from_files, made):
        assert name_a == name_b and np.array_equal(hr_a, hr_b)
        assert np.array_equal(lr_file, lr_made), name_a


def test_test_dataset_from_list(shared_data, tmp_path):
    hr_dir, lr_dir = datasets.find_test_set(shared_data / "benchmark", "Set5")
    images = [{"hr": str(p), "lr": str(lr_dir / f"{p.stem}x4.png")} for p in sorted(hr_dir.glob("*.png"))[:2]]
    lst = tmp_path / "two.json"
    lst.write_text(json.dumps({"name": "two", "scale": 4, "hr_dir": str(hr_dir),
                               "lr_dir": str(lr_dir), "images": images}))
    ds = datasets.TestDataset.from_list(lst)
    assert ds.name == "two" and [n for _, _, n in ds] == ["baby", "bird"]
    images[1]["lr"] = str(tmp_path / "gone.png")
    lst.write_text(json.dumps({"name": "two", "scale": 4, "hr_dir": str(hr_dir),
                               "lr_dir": str(lr_dir), "images": images}))
    with pytest.raises(FileNotFoundError, match="gone.png"):
        datasets.TestDataset.from_list(lst)
    with pytest.raises(FileNotFoundError, match="absent.json"):
        datasets.TestDataset.from_list(tmp_path / "absent.json")


# -- TrainDataset --------------------------------------------------------------------------------

def _check_alignment(ds, index, hr_img, lr_img, n, expect_augment):
    """Items of image ``index``: each LR patch is a window of ``lr_img`` (up to one of the 8
    flips/rotations) and the HR patch is the ``scale`` x region of ``hr_img`` under the same
    transform. ``expect_augment`` True/False: check that many / only the identity transform were
    seen; None: no check. Returns the set of transforms seen."""
    patch = ds.patch_size
    seen = set()
    for k in range(n):
        lr_t, hr_t = ds[index + k * len(ds.pairs)]
        lr, hr = _to_uint8(lr_t), _to_uint8(hr_t)
        matches = [(g, pos) for g, cand in enumerate(_dihedral(lr)) for pos in _locate(cand, lr_img)]
        assert len(matches) == 1, matches
        g, (y, x) = matches[0]
        region = hr_img[y * ds.scale:y * ds.scale + patch, x * ds.scale:x * ds.scale + patch]
        assert np.array_equal(_dihedral(hr)[g], region)
        seen.add(g)
    if expect_augment is True:
        assert len(seen) >= 6                       # all 8 are equally likely
    elif expect_augment is False:
        assert seen == {0}
    return seen


def _made_pair(img):
    hr = np.ascontiguousarray(utils.modcrop(img, SCALE))
    return hr, imresize(hr, 1 / SCALE)


@pytest.mark.parametrize("augment, seed, patches", [
    (False, 5, 40),      # every patch in the identity orientation
    (True, 6, 64),       # at least 6 of the 8 orientations among 64 patches
], ids=["without_augmentation", "with_augmentation"])
def test_train_patches_aligned(tmp_path, augment, seed, patches):
    img = _noise(98, 83, seed)
    _save(tmp_path / "HR" / "a.png", img)
    torch.manual_seed(0)
    ds = datasets.TrainDataset(tmp_path / "HR", scale=SCALE, patch_size=PATCH,
                               patches_per_image=patches, augment=augment, progress=False)
    _check_alignment(ds, 0, *_made_pair(img), patches, expect_augment=augment)


def test_train_lr_from_files_aligned(shared_data):
    root = shared_data / "benchmark" / "Set5"
    torch.manual_seed(1)
    ds = datasets.TrainDataset(root / "HR", root / "LR_bicubic" / "X4", patch_size=96,
                               patches_per_image=2, augment=True, progress=False)
    assert len(ds) == 10
    seen = set()
    for i, (hr_path, lr_path) in enumerate(ds.pairs):
        hr_img = utils.modcrop(utils.load_image(hr_path, rgb=True), SCALE)
        seen |= _check_alignment(ds, i, hr_img, utils.load_image(lr_path, rgb=True), 2, None)
    assert len(seen) >= 4


def test_train_shapes_dtypes_len_and_gray(train_dir):
    ds = datasets.TrainDataset(train_dir, scale=SCALE, patch_size=PATCH, patches_per_image=5,
                               progress=False)
    assert len(ds) == 10
    for k in range(len(ds)):
        lr, hr = ds[k]
        assert lr.shape == (3, PATCH // SCALE, PATCH // SCALE) and hr.shape == (3, PATCH, PATCH)
        assert lr.dtype == hr.dtype == torch.float32
        assert 0 <= float(hr.min()) and float(hr.max()) <= 1
    lr, hr = ds[1]                                   # image b: gray -> replicated
    assert torch.equal(hr[0], hr[1]) and torch.equal(hr[0], hr[2]) and torch.equal(lr[0], lr[2])
    with pytest.raises(IndexError):
        ds[len(ds)]
    with pytest.raises(ValueError, match="multiple of scale"):
        datasets.TrainDataset(train_dir, patch_size=30, progress=False)


def test_train_reproducible_under_seed(train_dir):
    def draw(seed):
        torch.manual_seed(seed)
        ds = datasets.TrainDataset(train_dir, scale=SCALE, patch_size=PATCH,
                                   patches_per_image=4, progress=False)
        return torch.cat([torch.cat([lr.flatten(), hr.flatten()]) for lr, hr in ds])

    assert torch.equal(draw(7), draw(7))
    assert not torch.equal(draw(7), draw(8))


def test_loader_workers_differ_and_reproduce(tmp_path):
    _save(tmp_path / "HR" / "a.png", _noise(96, 96, 3))
    ds = datasets.TrainDataset(tmp_path / "HR", scale=SCALE, patch_size=PATCH,
                               patches_per_image=8, augment=False, progress=False)

    def batches(seed):
        loader = datasets.make_train_loader(ds, batch_size=4, workers=2, seed=seed)
        return [lr for lr, hr in loader]

    first = batches(0)
    assert len(first) == 2 and first[0].shape == (4, 3, 8, 8)
    # one image, no augmentation: equal worker seeds would give equal batches
    assert not torch.equal(first[0], first[1])
    assert all(torch.equal(a, b) for a, b in zip(first, batches(0)))


def test_make_train_loader_batches(train_dir):
    torch.manual_seed(0)
    ds = datasets.TrainDataset(train_dir, scale=SCALE, patch_size=PATCH, patches_per_image=7,
                               progress=False)
    loader = datasets.make_train_loader(ds, batch_size=4, workers=0, seed=0)
    got = list(loader)
    assert len(got) == 14 // 4
    assert got[0][0].shape == (4, 3, 8, 8) and got[0][1].shape == (4, 3, 32, 32)
    assert len(list(datasets.make_train_loader(ds, 4, 0, 0, drop_last=False))) == 4


class _CountLoads:
    def __init__(self, monkeypatch):
        self.paths = []
        real = utils.load_image

        def counting(path, *args, **kwargs):
            self.paths.append(os.path.basename(path))
            return real(path, *args, **kwargs)
        monkeypatch.setattr(utils, "load_image", counting)


def test_cache_decodes_once_and_rebuilds_stale(train_dir, tmp_path, monkeypatch):
    loads = _CountLoads(monkeypatch)
    cache = tmp_path / "cache"
    kw = dict(scale=SCALE, patch_size=PATCH, patches_per_image=3, cache_dir=cache, progress=False)
    torch.manual_seed(0)
    first = datasets.TrainDataset(train_dir, **kw)
    assert sorted(loads.paths) == ["a.png", "b.png"] and first.decoded == 2
    items = [first[k] for k in range(len(first))]
    assert len(loads.paths) == 2                     # sampling never decodes
    assert len(list(cache.glob("*.npy"))) == 4 and not list(cache.glob("*.tmp"))

    torch.manual_seed(0)
    second = datasets.TrainDataset(train_dir, **kw)
    assert len(loads.paths) == 2 and second.decoded == 0
    for (lr_a, hr_a), k in zip(items, range(len(second))):
        lr_b, hr_b = second[k]
        assert torch.equal(lr_a, lr_b) and torch.equal(hr_a, hr_b)
    clone = pickle.loads(pickle.dumps(second))       # what a spawned worker receives
    assert clone._open == {} and clone[0][1].shape == (3, PATCH, PATCH)

    new = _noise(98, 83, 99)
    _save(train_dir / "a.png", new)
    st = (train_dir / "a.png").stat()
    os.utime(train_dir / "a.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    third = datasets.TrainDataset(train_dir, **kw)
    assert loads.paths[2:] == ["a.png"] and third.decoded == 1
    hr_cached = third._arrays(0)[0]
    assert np.array_equal(hr_cached, utils.modcrop(new, SCALE))


def _cached(train_dir, cache):
    return datasets.TrainDataset(train_dir, scale=SCALE, patch_size=PATCH, patches_per_image=3,
                                 cache_dir=cache, progress=False)


def test_cache_sees_a_replacement_that_keeps_mtime_and_size(train_dir, tmp_path):
    # `cp -p other.png a.png`: same size, same mtime, other pixels -> decoded again, not trusted
    cache = tmp_path / "cache"
    Image.fromarray(_noise(98, 83, 1)).save(train_dir / "a.png", compress_level=0)
    _cached(train_dir, cache)
    other = tmp_path / "other.png"
    new = _noise(98, 83, 7)
    Image.fromarray(new).save(other, compress_level=0)       # uncompressed: the same size
    st = (train_dir / "a.png").stat()
    assert other.stat().st_size == st.st_size
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(other, train_dir / "a.png")
    ds = _cached(train_dir, cache)
    assert ds.decoded == 1
    assert np.array_equal(ds._arrays(0)[0], utils.modcrop(new, SCALE))


def test_cache_source_changed_in_place_is_rebuilt(train_dir, tmp_path, monkeypatch):
    # even when the file's identity (inode, size, times) looks unchanged, a source whose bytes
    # differ from the recorded sha256 is decoded again
    cache = tmp_path / "cache"
    _cached(train_dir, cache)
    monkeypatch.setattr(image_cache, "_file_id", lambda p: [str(p)])      # identity blind
    _cached(train_dir, cache)                                           # keys under the new id
    new = _noise(98, 83, 8)
    _save(train_dir / "a.png", new)
    ds = _cached(train_dir, cache)
    assert ds.decoded == 1 and np.array_equal(ds._arrays(0)[0], utils.modcrop(new, SCALE))


@pytest.mark.parametrize("damage", ["zeroed", "swapped", "truncated", "record"])
def test_a_changed_cache_file_is_refused_naming_it(train_dir, tmp_path, damage):
    cache = tmp_path / "cache"
    _cached(train_dir, cache)
    a_hr = next(cache.glob("a-*-hr.npy"))
    if damage == "zeroed":
        arr = np.load(a_hr, mmap_mode="r+")
        arr[:] = 0
        arr.flush()
        del arr
        bad = a_hr
    elif damage == "swapped":
        bad = next(cache.glob("b-*-hr.npy"))
        bad.write_bytes(a_hr.read_bytes())
    elif damage == "truncated":
        bad = a_hr
        bad.write_bytes(a_hr.read_bytes()[:200])
    else:
        bad = next(cache.glob("a-*.json"))
        bad.write_text("{not json")
    with pytest.raises(image_cache.CorruptCacheError) as err:
        _cached(train_dir, cache)
    assert str(bad) in str(err.value) and len(str(err.value).splitlines()) == 1


def test_in_memory_decodes_once(train_dir, monkeypatch):
    loads = _CountLoads(monkeypatch)
    ds = datasets.TrainDataset(train_dir, scale=SCALE, patch_size=PATCH, patches_per_image=20,
                               progress=False)
    for k in range(len(ds)):
        ds[k]
    assert sorted(loads.paths) == ["a.png", "b.png"]


def test_train_errors(train_dir, tmp_path):
    _save(train_dir / "tiny.png", _noise(30, 90, 4))
    with pytest.raises(ValueError, match="tiny.png"):
        datasets.TrainDataset(train_dir, patch_size=PATCH, progress=False)
    with pytest.warns(UserWarning, match="tiny.png"):
        ds = datasets.TrainDataset(train_dir, patch_size=PATCH, skip_small=True, progress=False)
    assert len(ds.pairs) == 2
    (train_dir / "tiny.png").unlink()
    (train_dir / "notes.txt").write_text("hello")
    with pytest.warns(UserWarning, match="notes.txt"):
        ds = datasets.TrainDataset(train_dir, patch_size=PATCH, patches_per_image=1, progress=False)
    assert len(ds) == 2
    lr_dir = tmp_path / "LR"
    _save(lr_dir / "ax4.png", _noise(24, 20, 0))
    _save(lr_dir / "bx4.png", _noise(16, 17, 0))       # should be 16x18
    with pytest.raises(ValueError, match="bx4.png"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        datasets.TrainDataset(train_dir, lr_dir, patch_size=PATCH, progress=False)
    (lr_dir / "bx4.png").unlink()
    with pytest.raises(FileNotFoundError, match="bx4"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        datasets.TrainDataset(train_dir, lr_dir, patch_size=PATCH, progress=False)


def test_train_from_list(train_dir, tmp_path):
    lst = tmp_path / "t.json"
    lst.write_text(json.dumps({"name": "t", "scale": 4, "hr_dir": str(train_dir), "lr_dir": None,
                               "images": [{"hr": str(train_dir / "a.png"), "lr": None}]}))
    ds = datasets.TrainDataset.from_list(lst, patch_size=PATCH, patches_per_image=2, progress=False)
    assert ds.name == "t" and len(ds) == 2 and ds[0][1].shape == (3, PATCH, PATCH)
    lst.write_text("{not json")
    with pytest.raises(ValueError, match="t.json"):
        datasets.TrainDataset.from_list(lst)


RANK_SCRIPT = """
import os, sys
sys.path.insert(0, {root!r})
import torch, torch.distributed as dist
import datasets
dist.init_process_group("gloo")
ds = datasets.TrainDataset({hr!r}, scale={scale}, patch_size={patch}, patches_per_image=8,
                           augment=False, progress=False)
seen = {{}}
for epoch in (1, 2):
    loader = datasets.make_train_loader(ds, 2, workers=1, seed=100 + epoch, distributed=True)
    loader.sampler.set_epoch(epoch)
    seen[epoch] = torch.cat([lr for lr, hr in loader])
torch.save(seen, os.path.join({out!r}, "rank" + os.environ["RANK"] + ".pt"))
dist.destroy_process_group()
"""


def test_worker_crops_differ_between_ranks_and_epochs(tmp_path):
    # two gloo ranks with a DataLoader worker each, one image without augmentation: the crops
    # depend only on the workers' seeds. With seed + rank, rank 1 in epoch 1 repeated rank 0's
    # crops of epoch 2.
    import socket
    import subprocess
    import sys
    from pathlib import Path

    _save(tmp_path / "HR" / "a.png", _noise(96, 96, 3))
    script = tmp_path / "ranks.py"
    root = str(Path(datasets.__file__).resolve().parent)
    script.write_text(RANK_SCRIPT.format(root=root, hr=str(tmp_path / "HR"), scale=SCALE,
                                         patch=PATCH, out=str(tmp_path)))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                    f"--master_port={port}", str(script)], check=True, timeout=120,
                   capture_output=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    crops = {(0, 1): r0[1], (0, 2): r0[2], (1, 1): r1[1], (1, 2): r1[2]}
    assert all(c.shape == (4, 3, PATCH // SCALE, PATCH // SCALE) for c in crops.values())
    keys = list(crops)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            assert not torch.equal(crops[a], crops[b]), (a, b)
