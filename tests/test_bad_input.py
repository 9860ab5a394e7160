"""Bad input, through the public entry points: every case gives the user one clear message
naming the file and the problem (or the documented handling), and nothing already written is lost.

Cases: corrupt / truncated images (``utils.load_image``, ``TestDataset``, ``TrainDataset``,
``evaluate.py``), non-image files in a data folder, gray / RGBA / palette / 16-bit images in
training and testing, images smaller than the training patch (or than the scale / the metric
window), LR/HR size disagreements, checkpoints of another model or scale, files that are not
checkpoints, missing data folders, an interrupted download and a corrupt archive.
"""
import http.server
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import create_data_lists as cdl
import checkpoint
import datasets
import evaluate
import image_cache
import models
import pretrained
import utils
from imresize import imresize

ROOT = Path(evaluate.__file__).resolve().parent
SCALE = 4
SIZE = 48          # side of the small test images (a multiple of SCALE)


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------

@pytest.fixture
def rng():
    return np.random.default_rng(11)


def _image(rng, h=SIZE, w=SIZE, channels=3):
    shape = (h, w) if channels == 1 else (h, w, channels)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _make_set(root, name, rng, n=2, with_lr=True, size=(SIZE, SIZE)):
    """EDSR layout ``root/name/{HR, LR_bicubic/X4}`` with ``n`` noise images; returns the dirs."""
    hr_dir, lr_dir = root / name / "HR", root / name / "LR_bicubic" / f"X{SCALE}"
    for i in range(n):
        hr = _image(rng, *size)
        utils.save_image(hr_dir / f"img{i}.png", hr)
        if with_lr:
            utils.save_image(lr_dir / f"img{i}x{SCALE}.png", datasets.make_lr(hr, SCALE))
    return hr_dir, lr_dir


def _truncate(path):
    """Keep the first half of the file: the header still parses, the pixel data is cut."""
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _checkpoint(path, scale=SCALE, arch="srresnet", arch_kwargs=None, **extra):
    """A small generator checkpoint in the solver's format; returns the generator."""
    arch_kwargs = {"n_blocks": 1, "n_channels": 8} if arch_kwargs is None else arch_kwargs
    torch.manual_seed(0)
    model = models.build_generator(arch, scale=scale, **arch_kwargs)
    torch.save({"format": checkpoint.CHECKPOINT_FORMAT, "arch": arch, "arch_kwargs": arch_kwargs,
                "scale": scale, "stage": "srresnet", "generator": model.state_dict(), **extra},
               path)
    return model


def _one_line(message, *needles):
    """``message`` is a single line holding every string of ``needles``."""
    message = str(message)
    assert "\n" not in message.strip(), message
    assert "Traceback" not in message, message
    for needle in needles:
        assert str(needle) in message, (needle, message)


def _run_cli(*args):
    """``evaluate.py`` in a fresh interpreter: ``(returncode, stdout, stderr)``."""
    proc = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def _assert_cli_failed(rc, err, *needles):
    """Non-zero exit, no traceback, one error line on stderr (the last), naming ``needles``.
    Other stderr lines may only be progress bars (downloads)."""
    assert rc != 0
    assert "Traceback" not in err, err
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip()]
    assert lines and "error:" in lines[-1], err
    assert all("%|" in ln for ln in lines[:-1]), err
    _one_line(lines[-1], *needles)


def _main_fails(capsys, main, argv, *needles):
    """An in-process CLI ``main(argv)`` returns non-zero with one stderr line naming ``needles``."""
    capsys.readouterr()
    rc = main(argv)
    _assert_cli_failed(rc, capsys.readouterr().err, *needles)


# ----------------------------------------------------------------------------------------------
# Corrupt and truncated image files
# ----------------------------------------------------------------------------------------------

def test_load_image_corrupt_truncated_empty_and_not_an_image(tmp_path, rng):
    png, jpg = tmp_path / "cut.png", tmp_path / "cut.jpg"
    utils.save_image(png, _image(rng))
    Image.fromarray(_image(rng)).save(jpg, quality=95)
    _truncate(png)
    _truncate(jpg)
    noise = tmp_path / "noise.png"
    noise.write_bytes(rng.bytes(2000))
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for path, problem in [(png, "truncated"), (jpg, "truncated"), (noise, "not an image"),
                          (text, "not an image"), (empty, "not an image"),
                          (tmp_path / "gone.png", "no such")]:
        with pytest.raises(utils.ImageReadError) as info:
            utils.load_image(path)
        _one_line(info.value, path, problem)


def test_test_dataset_names_the_corrupt_or_truncated_file(tmp_path, rng):
    hr_dir, lr_dir = _make_set(tmp_path, "Set", rng)
    noise = hr_dir / "img1.png"
    noise.write_bytes(rng.bytes(3000))                  # header unreadable: fails at once
    with pytest.raises(utils.ImageReadError) as info:
        datasets.TestDataset(hr_dir, lr_dir, SCALE)
    _one_line(info.value, noise)

    hr_dir, lr_dir = _make_set(tmp_path, "Cut", rng)
    _truncate(lr_dir / f"img1x{SCALE}.png")               # header fine: fails when decoded
    data = datasets.TestDataset(hr_dir, lr_dir, SCALE)
    lr, hr, name = data[0]                              # the intact image still loads
    assert name == "img0" and hr.shape == (SIZE, SIZE, 3)
    with pytest.raises(utils.ImageReadError) as info:
        data[1]
    _one_line(info.value, lr_dir / f"img1x{SCALE}.png", "truncated")


def test_train_dataset_corrupt_file_keeps_the_cache_of_the_others(tmp_path, rng):
    hr_dir, _ = _make_set(tmp_path, "Train", rng, n=3, with_lr=False)
    good = utils.load_image(hr_dir / "img1.png")
    _truncate(hr_dir / "img1.png")
    cache = tmp_path / "cache"
    with pytest.raises(utils.ImageReadError) as info:
        datasets.TrainDataset(hr_dir, scale=SCALE, patch_size=SIZE, patches_per_image=1,
                              cache_dir=cache, progress=False)
    _one_line(info.value, hr_dir / "img1.png", "truncated")
    # what was cached before the failure is complete (an HR and an LR array and their record
    # per image, never of the bad image); no temporary file is left behind
    files = sorted(p.name for p in cache.iterdir())
    assert files and all(f.endswith(("-hr.npy", "-lr.npy", ".json")) for f in files), files
    assert not any(f.startswith("img1-") for f in files)
    cached = {f.split("-")[0] for f in files}
    assert len(files) == 3 * len(cached)
    for f in cache.glob("*.npy"):
        assert np.load(f).dtype == np.uint8
    # repaired: the cached images are not decoded again
    utils.save_image(hr_dir / "img1.png", good)
    data = datasets.TrainDataset(hr_dir, scale=SCALE, patch_size=SIZE, patches_per_image=1,
                                 cache_dir=cache, progress=False)
    assert data.decoded == 3 - len(cached) and len(data) == 3


def test_evaluate_cli_truncated_image_keeps_the_previous_json(tmp_path, rng):
    hr_dir, _ = _make_set(tmp_path, "Fake", rng)
    _truncate(hr_dir / "img1.png")
    previous = tmp_path / "results.json"
    previous.write_text('{"kept": true}\n')
    rc, _, err = _run_cli("--model", "bicubic", "--data-root", tmp_path, "--sets", "Fake",
                          "--quiet", "--json", previous)
    _assert_cli_failed(rc, err, hr_dir / "img1.png", "truncated")
    assert previous.read_text() == '{"kept": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Fake", "results.json"]


# ----------------------------------------------------------------------------------------------
# Non-image files in a data folder
# ----------------------------------------------------------------------------------------------

JUNK = ("Thumbs.db", "notes.txt", ".DS_Store")


def _add_junk(folder):
    for name in JUNK:
        (folder / name).write_bytes(b"\x00junk\n")
    (folder / "subfolder").mkdir()
    (folder / "subfolder" / "deep.png").write_bytes(b"ignored: sub-folders are not read")


def _assert_warned_about(record, folder):
    messages = [str(w.message) for w in record]
    for name in JUNK:
        assert any(str(folder / name) in m and "skipping" in m for m in messages), messages
    assert not any("subfolder" in m for m in messages)


def test_non_image_files_are_skipped_with_a_warning(tmp_path, rng):
    hr_dir, lr_dir = _make_set(tmp_path, "Set", rng)
    _add_junk(hr_dir)
    _add_junk(lr_dir)
    with pytest.warns(UserWarning) as record:
        test = datasets.TestDataset(hr_dir, lr_dir, SCALE)
    _assert_warned_about(record, hr_dir)
    _assert_warned_about(record, lr_dir)
    assert [p[0].name for p in test.pairs] == ["img0.png", "img1.png"]

    with pytest.warns(UserWarning) as record:
        train = datasets.TrainDataset(hr_dir, lr_dir, SCALE, patch_size=SIZE,
                                      patches_per_image=1, progress=False)
    _assert_warned_about(record, hr_dir)
    assert len(train) == 2

    with pytest.warns(UserWarning) as record:
        listed = cdl.list_from_folder(hr_dir, lr_dir, "junk", tmp_path / "lists", SCALE)
    _assert_warned_about(record, hr_dir)
    info = json.loads(listed.read_text())
    assert [Path(e["hr"]).name for e in info["images"]] == ["img0.png", "img1.png"]

    with pytest.warns(UserWarning):
        results = evaluate.evaluate("bicubic", tmp_path, ["Set"], SCALE, progress=False)
    assert results["Set"]["images"] == 2


# ----------------------------------------------------------------------------------------------
# Gray, RGBA, palette and 16-bit images
# ----------------------------------------------------------------------------------------------

@pytest.fixture
def modes_dir(tmp_path, rng):
    """One image per PIL mode (L, RGBA, P, I;16) and the RGB/gray uint8 arrays documented for
    each by ``utils.load_image``: gray stays ``(H,W)``, alpha dropped, palette looked up, 16-bit
    ``round(v / 257)``."""
    hr_dir = tmp_path / "Modes" / "HR"
    hr_dir.mkdir(parents=True)
    gray = _image(rng, channels=1)
    Image.fromarray(gray, "L").save(hr_dir / "a_gray.png")
    rgba = _image(rng, channels=4)
    Image.fromarray(rgba, "RGBA").save(hr_dir / "b_rgba.png")
    pal = Image.fromarray(_image(rng)).quantize(colors=16)
    pal.save(hr_dir / "c_palette.png")
    lut = np.array(pal.getpalette(), dtype=np.uint8).reshape(-1, 3)
    deep = rng.integers(0, 65536, (SIZE, SIZE), dtype=np.uint16)
    Image.fromarray(deep).save(hr_dir / "d_16bit.png")
    with Image.open(hr_dir / "d_16bit.png") as im:
        assert im.mode.startswith("I"), im.mode          # really a 16-bit gray file
    expected = {"a_gray": gray, "b_rgba": rgba[..., :3],
                "c_palette": lut[np.asarray(pal)],
                "d_16bit": np.round(deep / 257.0).astype(np.uint8)}
    return hr_dir, expected


def test_modes_in_testing_are_converted_as_documented(modes_dir):
    hr_dir, expected = modes_dir
    data = datasets.TestDataset(hr_dir, None, SCALE)
    assert len(data) == 4
    for lr, hr, name in (data[i] for i in range(len(data))):
        np.testing.assert_array_equal(hr, expected[name], err_msg=name)
        assert lr.dtype == np.uint8 and lr.ndim == hr.ndim          # gray stays single-channel
        np.testing.assert_array_equal(lr, imresize(expected[name], 1 / SCALE), err_msg=name)
    results = evaluate.evaluate("bicubic", hr_dir.parent.parent, ["Modes"], SCALE,
                                progress=False, per_image=True)
    scores = results["Modes"]["per_image"]
    assert [s["name"] for s in scores] == list(expected)
    assert all(np.isfinite(s["psnr"]) and 0 < s["ssim"] < 1 for s in scores)


def test_modes_in_training_become_rgb_tensors(modes_dir):
    hr_dir, expected = modes_dir
    data = datasets.TrainDataset(hr_dir, None, SCALE, patch_size=SIZE, patches_per_image=1,
                                 augment=False, progress=False)
    for k, name in enumerate(expected):               # item k = whole image k (patch = image)
        lr, hr = data[k]
        rgb = expected[name] if expected[name].ndim == 3 else np.repeat(
            expected[name][:, :, None], 3, axis=2)
        assert hr.shape == (3, SIZE, SIZE) and hr.dtype == torch.float32
        want_hr = torch.from_numpy(rgb.transpose(2, 0, 1).astype(np.float32) / 255)
        want_lr = torch.from_numpy(imresize(rgb, 1 / SCALE).transpose(2, 0, 1)
                                   .astype(np.float32) / 255)
        torch.testing.assert_close(hr, want_hr, rtol=0, atol=0, msg=name)
        torch.testing.assert_close(lr, want_lr, rtol=0, atol=0, msg=name)


# ----------------------------------------------------------------------------------------------
# Too-small images, LR/HR size disagreements
# ----------------------------------------------------------------------------------------------

def test_images_smaller_than_the_patch(tmp_path, rng):
    hr_dir, _ = _make_set(tmp_path, "Train", rng, with_lr=False)
    small = hr_dir / "small.png"
    utils.save_image(small, _image(rng, SIZE - SCALE, 2 * SIZE))
    kw = dict(scale=SCALE, patch_size=SIZE, patches_per_image=1, progress=False)
    with pytest.raises(ValueError) as info:
        datasets.TrainDataset(hr_dir, **kw)
    _one_line(info.value, small, f"{SIZE - SCALE}x{2 * SIZE}", f"{SIZE}x{SIZE} patch")
    with pytest.warns(UserWarning, match="small.png"):
        data = datasets.TrainDataset(hr_dir, skip_small=True, **kw)
    assert [p[0].name for p in data.pairs] == ["img0.png", "img1.png"]
    with pytest.raises(ValueError) as info, pytest.warns(UserWarning):    # nothing left
        datasets.TrainDataset(hr_dir, skip_small=True, **{**kw, "patch_size": 4 * SIZE})
    _one_line(info.value, "no image is large enough")


def test_test_images_too_small_for_the_scale_or_the_metrics(tmp_path, rng):
    # smaller than the scale: nothing is left after modcrop
    # 12x12: less than the 11x11 SSIM window once SCALE px are shaved from every side
    for name, size, problem in [("Tiny", (SCALE - 1, SCALE + 2), "smaller than the scale"),
                                ("Small", (12, 12), "11x11 window")]:
        hr_dir, _ = _make_set(tmp_path, name, rng, n=1, with_lr=False, size=size)
        with pytest.raises(ValueError) as info:
            evaluate.evaluate("bicubic", tmp_path, [name], SCALE, progress=False)
        _one_line(info.value, hr_dir / "img0.png", problem)


def test_lr_hr_sizes_that_disagree(tmp_path, rng, capsys):
    hr_dir, lr_dir = _make_set(tmp_path, "Pairs", rng)
    bad_lr = lr_dir / f"img1x{SCALE}.png"
    utils.save_image(bad_lr, _image(rng, SIZE // SCALE, SIZE // SCALE + 2))
    needles = (bad_lr, hr_dir / "img1.png", f"{SIZE // SCALE}x{SIZE // SCALE + 2}")
    for build in (lambda: datasets.TestDataset(hr_dir, lr_dir, SCALE),
                  lambda: datasets.TrainDataset(hr_dir, lr_dir, SCALE, patch_size=SIZE,
                                                patches_per_image=1, progress=False)):
        with pytest.raises(ValueError) as info:
            build()
        _one_line(info.value, *needles)
    # an existing list of the same name is not overwritten by a failing rebuild
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "pairs.json").write_text("previous list\n")
    with pytest.raises(ValueError) as info:
        cdl.list_from_folder(hr_dir, lr_dir, "pairs", lists, SCALE)
    _one_line(info.value, *needles)
    assert [p.name for p in lists.iterdir()] == ["pairs.json"]
    assert (lists / "pairs.json").read_text() == "previous list\n"
    _main_fails(capsys, evaluate.main, ["--data-root", str(tmp_path), "--sets", "Pairs",
                                        "--quiet"], *needles)
    # an HR size that is not a multiple of the scale is fine: LR = floor(HR / scale)
    hr_dir, lr_dir = _make_set(tmp_path, "Odd", rng, n=1, size=(SIZE + 3, SIZE + 1))
    lr, hr, _ = datasets.TestDataset(hr_dir, lr_dir, SCALE)[0]
    assert hr.shape[:2] == (SIZE, SIZE) and lr.shape[:2] == (SIZE // SCALE, SIZE // SCALE)


# ----------------------------------------------------------------------------------------------
# Checkpoints of another model or scale; files that are not checkpoints
# ----------------------------------------------------------------------------------------------

def test_checkpoint_of_another_scale(tmp_path, rng):
    x4 = tmp_path / "x4.pth"
    _checkpoint(x4, scale=4)
    with pytest.raises(ValueError) as info:
        checkpoint.load_generator(x4, expect_scale=2)
    _one_line(info.value, x4, "x4", "x2")
    _make_set(tmp_path, "Fake", rng, n=1)
    rc, out, err = _run_cli("--model", x4, "--scale", "2", "--data-root", tmp_path,
                            "--sets", "Fake", "--quiet")
    _assert_cli_failed(rc, err, x4, "x4", "x2")
    assert out == ""


def test_checkpoint_of_another_model(tmp_path):
    srresnet = tmp_path / "srresnet.pth"
    _checkpoint(srresnet)
    ckpt = torch.load(srresnet, weights_only=True)
    cases = {
        # SRResNet weights labelled as an SRCNN
        "as_srcnn.pth": ({**ckpt, "arch": "srcnn", "arch_kwargs": {}},
                         ["do not fit 'srcnn'", "missing key", "unexpected key"]),
        # same arch, other width: every conv has another shape
        "wider.pth": ({**ckpt, "arch_kwargs": {"n_blocks": 1, "n_channels": 16}},
                      ["do not fit 'srresnet'", "another shape", "checkpoint (8,"]),
        # a discriminator-only file
        "disc.pth": ({"discriminator": models.Discriminator(8, 2, 16).state_dict()},
                     ["not a generator checkpoint", "discriminator"]),
        # an unknown architecture
        "esrgan.pth": ({**ckpt, "arch": "esrgan"}, ["unknown generator arch 'esrgan'"]),
    }
    for name, (obj, needles) in cases.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(ValueError) as info:
            checkpoint.load_generator(tmp_path / name)
        _one_line(info.value, tmp_path / name, *needles)
    # an SRGAN checkpoint (generator + discriminator) is a generator checkpoint too
    torch.save({**ckpt, "stage": "srgan",
                "discriminator": models.Discriminator(8, 2, 16).state_dict()}, tmp_path / "g.pth")
    model, loaded = checkpoint.load_generator(tmp_path / "g.pth", expect_scale=SCALE)
    assert isinstance(model, models.SRResNet) and loaded["stage"] == "srgan"


def test_files_that_are_not_checkpoints(tmp_path, rng):
    good = tmp_path / "good.pth"
    model = _checkpoint(good)
    data = good.read_bytes()
    files = {
        "random.pth": (rng.bytes(4096), "not written by torch.save"),
        "results.json": (json.dumps({"Set5": {"psnr": 30.0}}).encode(), "not written by torch.save"),
        "empty.pth": (b"", "empty"),
        "half.pth": (data[:len(data) // 2], "truncated or corrupt"),
    }
    for name, (payload, problem) in files.items():
        (tmp_path / name).write_bytes(payload)
    torch.save(model.state_dict(), tmp_path / "raw.pth")
    files["raw.pth"] = (None, "raw state_dict")
    torch.save(model, tmp_path / "module.pth")                # a pickled nn.Module
    files["module.pth"] = (None, "pickled models.SRResNet")
    utils.save_image(tmp_path / "photo.png", _image(rng))
    files["photo.png"] = (None, "not written by torch.save")
    for name, (_, problem) in files.items():
        with pytest.raises(ValueError) as info:
            checkpoint.load_generator(tmp_path / name)
        _one_line(info.value, tmp_path / name, problem)
    with pytest.raises(ValueError) as info:                   # the same for VGG19 weights
        pretrained.vgg19(1, 2, weights=tmp_path / "random.pth")
    _one_line(info.value, tmp_path / "random.pth", "not a readable torch file")
    with pytest.raises(FileNotFoundError) as info:
        checkpoint.load_generator(tmp_path / "missing.pth")
    _one_line(info.value, tmp_path / "missing.pth")
    assert good.read_bytes() == data                         # nothing touched the good file


def test_evaluate_cli_with_a_json_file_as_model(tmp_path, rng):
    _make_set(tmp_path, "Fake", rng, n=1)
    wrong = tmp_path / "results.json"
    wrong.write_text(json.dumps({"Set5": {"psnr": 30.0}}))
    rc, _, err = _run_cli("--model", wrong, "--data-root", tmp_path, "--sets", "Fake",
                          "--quiet")
    _assert_cli_failed(rc, err, wrong, "not a readable torch file")


# ----------------------------------------------------------------------------------------------
# Missing data folders and lists
# ----------------------------------------------------------------------------------------------

def test_missing_data_folders(tmp_path, rng, capsys):
    missing = tmp_path / "nowhere" / "HR"
    for build in (lambda: datasets.TestDataset(missing),
                  lambda: datasets.TrainDataset(missing, progress=False)):
        with pytest.raises(FileNotFoundError) as info:
            build()
        _one_line(info.value, missing)
    hr_dir, _ = _make_set(tmp_path, "Set", rng, n=1, with_lr=False)
    with pytest.raises(FileNotFoundError) as info:            # LR folder given but absent
        datasets.TestDataset(hr_dir, tmp_path / "Set" / "LR_gone", SCALE)
    _one_line(info.value, tmp_path / "Set" / "LR_gone")
    with pytest.raises(FileNotFoundError) as info:
        datasets.TrainDataset.from_list(tmp_path / "lists" / "DIV2K_train.json")
    _one_line(info.value, "DIV2K_train.json", "create_data_lists.py")
    # a list whose image was deleted since
    listed = cdl.list_from_folder(hr_dir, None, "set", tmp_path / "lists", SCALE)
    (hr_dir / "img0.png").unlink()
    with pytest.raises(FileNotFoundError) as info:
        datasets.TestDataset.from_list(listed)
    _one_line(info.value, hr_dir / "img0.png", listed)
    # the command lines
    _main_fails(capsys, evaluate.main, ["--data-root", str(tmp_path / "nowhere"),
                                        "--sets", "Set5", "--quiet"],
                tmp_path / "nowhere" / "Set5" / "HR", "create_data_lists.py --download")
    _main_fails(capsys, cdl.main, ["--from-folder", str(missing), "--name", "x",
                                   "--lists-dir", str(tmp_path / "lists")], missing)


# ----------------------------------------------------------------------------------------------
# Interrupted downloads, corrupt archives
# ----------------------------------------------------------------------------------------------

def _zip(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _tar(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _png_bytes(img):
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def archives(rng):
    """The five official archives (DIV2K x4 + EDSR benchmark), one tiny image pair each."""
    files = {}
    for split, stem in (("train", "0001"), ("valid", "0801")):
        hr = _image(rng, 2 * SIZE, 2 * SIZE)
        files[f"DIV2K_{split}_HR.zip"] = _zip({f"DIV2K_{split}_HR/{stem}.png": _png_bytes(hr)})
        files[f"DIV2K_{split}_LR_bicubic_X4.zip"] = _zip({
            f"DIV2K_{split}_LR_bicubic/X4/{stem}x4.png": _png_bytes(datasets.make_lr(hr, 4))})
    hr = _image(rng)
    files["benchmark.tar"] = _tar({"benchmark/Set5/HR/baby.png": _png_bytes(hr),
                                   "benchmark/Set5/LR_bicubic/X4/babyx4.png":
                                       _png_bytes(datasets.make_lr(hr, 4))})
    assert set(files) == set(cdl.DIV2K_ARCHIVES) | {"benchmark.tar"}
    return files


class _ArchiveServer(http.server.BaseHTTPRequestHandler):
    files = {}             # name -> bytes
    drop_once = set()      # names whose next GET sends half the body, then hangs up
    requests = []          # (name, Range header)

    def log_message(self, *args):
        pass

    def do_GET(self):
        name = self.path.rsplit("/", 1)[1]
        if name not in self.files:
            self.send_error(404)
            return
        data, rng = self.files[name], self.headers.get("Range")
        type(self).requests.append((name, rng))
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        self.send_response(206 if rng else 200)
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if name in self.drop_once:
            self.drop_once.discard(name)
            self.wfile.write(body[:len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server(archives, monkeypatch):
    """A local HTTP server (Range support) posing as the DIV2K and EDSR download sites."""
    _ArchiveServer.files, _ArchiveServer.drop_once, _ArchiveServer.requests = (
        dict(archives), set(), [])
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ArchiveServer)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    # the mirror options of --download point at it (no module constant patched); the default
    # URLs are made unreachable so that a path forgetting the options fails loudly
    _ArchiveServer.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    monkeypatch.setattr(cdl, "DIV2K_URL", "http://127.0.0.1:9/unreachable/")
    monkeypatch.setattr(cdl, "BENCHMARK_URL", "http://127.0.0.1:9/unreachable.tar")
    yield _ArchiveServer
    httpd.shutdown()
    httpd.server_close()


def _download_cli(root, capsys):
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = cdl.main(["--download", "--data-root", str(root), "--lists-dir", str(root / "lists"),
                       "--div2k-url", f"{_ArchiveServer.url}/div2k",
                       "--benchmark-url", f"{_ArchiveServer.url}/edsr/benchmark.tar"])
    return rc, capsys.readouterr().err


def test_interrupted_download_resumes(server, archives, tmp_path, capsys):
    name = "DIV2K_valid_HR.zip"
    server.drop_once.add(name)
    rc, err = _download_cli(tmp_path, capsys)
    part = tmp_path / "downloads" / f"{name}.part"
    _assert_cli_failed(rc, err, name, "interrupted", "resume")
    assert 0 < part.stat().st_size < len(archives[name])
    assert not (tmp_path / "downloads" / name).exists()
    assert not (tmp_path / "DIV2K" / "DIV2K_valid_HR").exists()
    # the archive before it was finished and extracted, and is kept
    assert (tmp_path / "DIV2K" / "DIV2K_train_HR" / "0001.png").is_file()

    kept = part.stat().st_size
    rc, err = _download_cli(tmp_path, capsys)
    assert rc == 0, err
    assert (name, f"bytes={kept}-") in server.requests                  # resumed, not restarted
    assert [r for r in server.requests if r[0] == "DIV2K_train_HR.zip"] == [
        ("DIV2K_train_HR.zip", None)]                                   # not fetched twice
    assert (tmp_path / "downloads" / name).read_bytes() == archives[name]
    for list_name in ("DIV2K_train", "DIV2K_valid", "Set5"):
        info = json.loads((tmp_path / "lists" / f"{list_name}.json").read_text())
        assert len(info["images"]) == 1 and info["images"][0]["lr"], list_name


def test_corrupt_archive_is_refused_and_not_extracted(server, archives, tmp_path, capsys):
    name = "DIV2K_train_LR_bicubic_X4.zip"
    data = bytearray(archives[name])
    data[len(data) // 3] ^= 0xFF                         # inside the stored PNG: CRC fails
    server.files[name] = bytes(data)
    rc, err = _download_cli(tmp_path, capsys)
    archive = tmp_path / "downloads" / name
    _assert_cli_failed(rc, err, archive, "corrupt", "nothing was extracted", "delete")
    assert not (tmp_path / "DIV2K" / "DIV2K_train_LR_bicubic").exists()
    assert not (tmp_path / "DIV2K" / f".extracted-{name}").exists()
    assert not (tmp_path / "lists").exists()
    # what was extracted before is kept; a second run refuses the same file again
    assert (tmp_path / "DIV2K" / "DIV2K_train_HR" / "0001.png").is_file()
    rc, err = _download_cli(tmp_path, capsys)
    _assert_cli_failed(rc, err, archive, "corrupt")
    # deleted as the message says: downloaded anew, verified and extracted
    archive.unlink()
    server.files[name] = archives[name]
    rc, err = _download_cli(tmp_path, capsys)
    assert rc == 0, err
    assert (tmp_path / "DIV2K" / "DIV2K_train_LR_bicubic" / "X4" / "0001x4.png").is_file()


# ----------------------------------------------------------------------------------------------
# Round two (issue 9): every class through the command lines, one line, nothing lost
# ----------------------------------------------------------------------------------------------

import config            # noqa: E402  (kept with the tests that use them)
import super_resolve     # noqa: E402
import tiling     # noqa: E402


def _tool(script, *args):
    """``script`` (a command-line tool of the project) in a fresh interpreter:
    ``(returncode, stdout, stderr)``."""
    proc = subprocess.run([sys.executable, str(ROOT / script), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def _tree(folder):
    """``{relative path: bytes}`` of every file under ``folder`` (to prove nothing changed)."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()} if folder.exists() else {}


def _nan_checkpoint(path, key="body.0.body.0.weight", value=float("nan")):
    _checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    ckpt["generator"][key].view(-1)[3] = value
    torch.save(ckpt, path)
    return key


def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path, rng):
    for value in (float("nan"), float("inf")):
        bad = tmp_path / f"bad_{value}.pth"
        key = _nan_checkpoint(bad, value=value)
        with pytest.raises(ValueError) as info:
            checkpoint.load_generator(bad)
        _one_line(info.value, bad, repr(key), "non-finite")
    # the command lines: one line, non-zero, nothing written / previous results kept
    utils.save_image(tmp_path / "in.png", _image(rng, 12, 12))
    out = tmp_path / "out"
    out.mkdir()
    (out / "in.png").write_bytes(b"previous result")
    rc, _, err = _tool("super_resolve.py", "--checkpoint", bad, "--input", tmp_path / "in.png",
                       "--output", out, "--overwrite", "--device", "cpu")
    _assert_cli_failed(rc, err, bad, repr(key), "non-finite")
    assert (out / "in.png").read_bytes() == b"previous result"
    _make_set(tmp_path, "Fake", rng, n=1)
    (tmp_path / "r.json").write_text("{}")
    rc, out_text, err = _tool("evaluate.py", "--model", bad, "--data-root", tmp_path, "--sets",
                              "Fake", "--json", tmp_path / "r.json", "--quiet")
    _assert_cli_failed(rc, err, bad, repr(key))
    assert "dB" not in out_text and (tmp_path / "r.json").read_text() == "{}"


class _Overflow(torch.nn.Module):
    """x4 nearest upscaling that overflows to inf/NaN (finite weights, broken output)."""
    scale = SCALE

    def forward(self, x):
        y = torch.nn.functional.interpolate(x, scale_factor=SCALE, mode="nearest")
        return y * 1e38 * 1e38 - y * 1e38 * 1e38      # inf - inf = NaN


def test_non_finite_output_is_an_error_never_an_image_or_a_score(tmp_path, rng):
    img = _image(rng, 20, 20)
    for tile in (None, 8):       # whole image and every tile pass through the same check
        with pytest.raises(tiling.NonFiniteOutputError, match="non-finite"):
            tiling.upscale_image(_Overflow(), img, tile=tile, overlap=2)
    _make_set(tmp_path, "Fake", rng, n=1)
    with pytest.raises(ValueError, match="non-finite"):
        evaluate.evaluate(_Overflow(), tmp_path, ["Fake"], SCALE, progress=False)


def _exif_png(path, img, orientation):
    pil = Image.fromarray(img)
    exif = Image.Exif()
    exif[utils.EXIF_ORIENTATION] = orientation
    pil.save(path, exif=exif)


def test_exif_orientation_is_applied_and_said(tmp_path, rng, capsys):
    img = _image(rng, 12, 20)                          # 12 rows x 20 columns as stored
    _exif_png(tmp_path / "phone.png", img, 6)          # 6: shown rotated 90 degrees clockwise
    with pytest.warns(UserWarning, match="phone.png: EXIF orientation 6 applied"):
        shown = utils.load_image(tmp_path / "phone.png")
    np.testing.assert_array_equal(shown, np.rot90(img, k=-1))
    assert datasets.image_size(tmp_path / "phone.png") == shown.shape[:2]   # header: the same
    _exif_png(tmp_path / "plain.png", img, 1)          # 1: as stored, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(utils.load_image(tmp_path / "plain.png"), img)
    # an alpha channel is turned with the image
    rgba = np.dstack([img, np.arange(12 * 20, dtype=np.uint8).reshape(12, 20)])
    _exif_png(tmp_path / "alpha.png", rgba, 6)
    with pytest.warns(UserWarning):
        got, alpha = super_resolve.read_image(tmp_path / "alpha.png")
    np.testing.assert_array_equal(alpha, np.rot90(rgba[:, :, 3], k=-1))
    # the command line says so on one line and writes the upright result
    ckpt = tmp_path / "g.pth"
    _checkpoint(ckpt)
    rc, out, err = _tool("super_resolve.py", "--checkpoint", ckpt, "--input", tmp_path / "phone.png",
                         "--output", tmp_path / "out", "--device", "cpu", "--quiet")
    assert rc == 0, err
    assert "warning: " in err and "EXIF orientation 6 applied" in err and "Traceback" not in err
    with Image.open(tmp_path / "out" / "phone.png") as result:
        assert result.size == (12 * SCALE, 20 * SCALE)   # upright: 48 wide, 80 high


def test_multi_frame_files_say_only_the_first_frame_is_used(tmp_path, rng):
    frames = [Image.fromarray(_image(rng, 16, 16)) for _ in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning, match="anim.gif: has 3 frames .* only the first"):
        first = utils.load_image(tmp_path / "anim.gif")
    np.testing.assert_array_equal(first, np.asarray(frames[0].convert("RGB")))


def test_tiny_images_are_padded_not_turned_into_border_effect(tmp_path, rng):
    torch.manual_seed(0)
    model = models.SRResNet(scale=SCALE, n_blocks=1, n_channels=8).eval()
    side = tiling.MIN_INPUT_SIDE
    for h, w in ((1, 1), (1, 5), (3, 3), (side - 1, 2 * side), (2 * side, 2)):
        img = _image(rng, h, w)
        got = tiling.upscale_image(model, img)
        assert got.shape == (SCALE * h, SCALE * w, 3)
        # exactly what the model gives on the image edge-padded by its receptive field
        pad = tiling.receptive_margin(model)
        padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
        want = tiling.upscale_image(model, padded)
        np.testing.assert_array_equal(
            got, want[SCALE * pad:SCALE * (pad + h), SCALE * pad:SCALE * (pad + w)])
        # gray follows the same path
        assert tiling.upscale_image(model, img[:, :, 0]).shape == (SCALE * h, SCALE * w)
    # a 9x9 averaging model (zero padding) keeps a flat 1x1 pixel: no output pixel sees the
    # zeros (padded to 8 px only, 200 came out as 158)
    average = _AveragingModel().eval()
    np.testing.assert_array_equal(tiling.upscale_image(
        average, np.full((1, 1, 3), 200, np.uint8)), np.full((SCALE, SCALE, 3), 200, np.uint8))
    # a model whose output is the nearest-upscaled input keeps a 1x1 colour exactly
    colour = np.array([[[200, 120, 40]]], np.uint8)
    nearest = evaluate.load_method(_NearestModel(), scale=SCALE)
    np.testing.assert_array_equal(nearest(colour), np.broadcast_to(colour, (4, 4, 3)))
    # the command line takes a 1x1 image
    utils.save_image(tmp_path / "dot.png", colour[0:1, 0:1])
    ckpt = tmp_path / "g.pth"
    _checkpoint(ckpt)
    rc, _, err = _tool("super_resolve.py", "--checkpoint", ckpt, "--input", tmp_path / "dot.png",
                       "--output", tmp_path / "out", "--device", "cpu", "--quiet")
    assert rc == 0, err
    with Image.open(tmp_path / "out" / "dot.png") as result:
        assert result.size == (SCALE, SCALE)


class _AveragingModel(torch.nn.Module):
    """A 9x9 box filter with zero padding, then nearest upscaling."""
    scale = SCALE

    def __init__(self):
        super().__init__()
        self.box = torch.nn.Conv2d(3, 3, 9, padding=4, bias=False, groups=3)
        torch.nn.init.constant_(self.box.weight, 1 / 81)

    def forward(self, x):
        return torch.nn.functional.interpolate(self.box(x), scale_factor=SCALE, mode="nearest")


class _NearestModel(torch.nn.Module):
    scale = SCALE

    def forward(self, x):
        return torch.nn.functional.interpolate(x, scale_factor=SCALE, mode="nearest")


def _write_png16(path, arr):
    """uint16 ``(H,W,3)`` / ``(H,W,4)`` -> a 48-bit RGB / 64-bit RGBA PNG (big-endian samples,
    filter 0), written by hand: PIL cannot write 16-bit colour."""
    import struct
    import zlib
    h, w, c = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    header = struct.pack(">IIBBBBB", w, h, 16, {3: 2, 4: 6}[c], 0, 0, 0)
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_16_bit_images_are_rounded_not_truncated(tmp_path):
    # v -> round(v / 257): known values, including the ones where v >> 8 differs
    values = np.array([[0, 128, 129, 255, 385, 386, 32767, 32896, 65279, 65535]], np.uint16)
    want = np.array([[0, 0, 1, 1, 1, 2, 127, 128, 254, 255]], np.uint8)
    assert not np.array_equal(want, (values >> 8).astype(np.uint8))
    Image.fromarray(values).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as check:
        assert check.mode.startswith("I")
    np.testing.assert_array_equal(utils.load_image(tmp_path / "g16.png"), want)
    assert utils.UINT16_TO_UINT8 == 257
    # 16-bit colour (48-bit RGB / 64-bit RGBA PNG, 16-bit TIFF): PIL alone keeps the high byte
    rgb16 = np.stack([values[0], values[0][::-1], np.full(10, 385, np.uint16)], axis=1)[None]
    want_rgb = np.round(rgb16 / 257).astype(np.uint8)
    _write_png16(tmp_path / "rgb48.png", rgb16)
    with Image.open(tmp_path / "rgb48.png") as pil_only:
        assert not np.array_equal(np.asarray(pil_only), want_rgb)      # v >> 8 there
    np.testing.assert_array_equal(utils.load_image(tmp_path / "rgb48.png"), want_rgb)
    _write_png16(tmp_path / "rgba64.png", np.dstack([rgb16, rgb16[..., :1]]))
    np.testing.assert_array_equal(utils.load_image(tmp_path / "rgba64.png"), want_rgb)
    img, alpha = super_resolve.read_image(tmp_path / "rgba64.png")      # alpha: the same rule
    np.testing.assert_array_equal(alpha, want_rgb[..., 0])
    tifffile = pytest.importorskip("tifffile")
    for name, kwargs in (("plain.tif", {}), ("zlib.tif", {"compression": "zlib"}),
                         ("big.tif", {"byteorder": ">"})):
        tifffile.imwrite(tmp_path / name, rgb16, photometric="rgb", **kwargs)
        np.testing.assert_array_equal(utils.load_image(tmp_path / name), want_rgb, err_msg=name)
    readme = (ROOT / "README.md").read_text() + (ROOT / "super_resolve.py").read_text()
    assert "round(v / 257)" in readme and ">> 8" not in readme


@pytest.mark.parametrize("key, value, words", [
    ("stage1.epochs", 0, ">= 1"), ("stage2.epochs", -3, ">= 1"),
    ("stage1.batch_size", 0, ">= 1"), ("stage1.lr", 0.0, "> 0"), ("stage2.lr", -1e-4, "> 0"),
    ("stage1.lr", "fast", "must be a number"), ("stage1.epochs", 2.5, "must be an integer"),
    ("stage1.epochs", True, "must be an integer"), ("data.patch_size", 0, ">= 1"),
    ("data.patch_size", 50, "multiple of scale"), ("data.workers", -1, ">= 0"),
    ("scale", 1, ">= 2"), ("stage2.ema_decay", 1.0, "< 1"), ("stage2.d_steps", 0, ">= 1"),
    ("stage1.lr_decay_factor", 0, "> 0"), ("train.time_budget_s", 0, ">= 1.0"),
    ("train.val_every", 0, ">= 1"), ("stage1.lr", float("nan"), "finite"),
    ("vgg.j", 4, "VGG19 block 2"), ("stage1.lr_min", 1.0, "above stage1.lr"),
    ("stage1.betas", (0.9, 1.5), "[0, 1)"),
    ("generator.arch", "esrgan", "one of ['srresnet'"), ("train.amp", "fp8", "one of [None"),
    ("stage1.lr_schedule", "linear", "one of"), ("train.compile", 1, "True or False"),
])
def test_validate_config_refuses_nonsensical_numbers(key, value, words):
    cfg = config.get_config("demo")
    section, _, name = key.rpartition(".")
    (cfg[section] if section else cfg)[name] = value
    with pytest.raises(ValueError) as info:
        config.validate_config(cfg)
    _one_line(info.value, key.split(".")[-1] if key == "vgg.j" else key, words)


def test_every_preset_and_variant_is_valid():
    for preset in config.PRESETS:
        config.validate_config(config.get_config(preset))
        for variant in config.VARIANTS:
            config.build_config(preset, variant=variant)   # validated inside


def test_numeric_settings_refused_at_the_command_lines(tmp_path, rng):
    ckpt = tmp_path / "g.pth"
    _checkpoint(ckpt)
    utils.save_image(tmp_path / "in.png", _image(rng, 40, 40))
    margin = tiling.receptive_margin(checkpoint.load_generator(ckpt)[0])
    sr = ["super_resolve.py", "--checkpoint", ckpt, "--input", tmp_path / "in.png",
          "--output", tmp_path / "out", "--device", "cpu", "--quiet"]
    cases = [
        (sr + ["--tile", "16", "--overlap", "0"], ["--overlap 0", f"radius {margin}", "seams"]),
        (sr + ["--tile", str(margin - 1)], [f"--tile {margin - 1}", "smaller than the overlap"]),
        (sr + ["--tile", "-1"], ["--tile", ">= 0"]),
        (sr + ["--device", "tpu"], ["--device 'tpu'", "not a device name", "cuda:N"]),
        (["evaluate.py", "--device", "cuda:x"], ["--device 'cuda:x'", "cuda:N"]),
        (["evaluate.py", "--scale", "0", "--sets", "Set5"], ["--scale", ">= 2"]),
        (["create_data_lists.py", "--scale", "0", "--benchmark-root", tmp_path],
         ["--scale", ">= 2"]),
        (["train.py", "--config", "smoke", "--out", tmp_path / "run", "--epochs", "0"],
         ["stage1.epochs=0", ">= 1"]),
        (["train.py", "--config", "smoke", "--out", tmp_path / "run", "--set",
          "stage1.batch_size=0"], ["stage1.batch_size=0", ">= 1"]),
        (["train.py", "--config", "smoke", "--out", tmp_path / "run", "--set",
          "stage1.lr=-1"], ["stage1.lr=-1", "> 0"]),
    ]
    for argv, needles in cases:
        rc, _, err = _tool(*argv)
        assert rc != 0 and "Traceback" not in err, (argv, err)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert lines and all(n in lines[-1] for n in needles), (argv, err)
    assert not (tmp_path / "out").exists() and not (tmp_path / "run" / "srresnet.pth").exists()
    # with the default overlap (the receptive field) and a tile >= it, the tiled run works
    rc, _, err = _tool(*sr, "--tile", str(margin))
    assert rc == 0, err


def test_output_locations_are_checked_before_work(tmp_path, rng):
    ckpt = tmp_path / "g.pth"
    _checkpoint(ckpt)
    utils.save_image(tmp_path / "in.png", _image(rng, 12, 12))
    (tmp_path / "a_file").write_text("keep me")
    sr = ["super_resolve.py", "--checkpoint", ckpt, "--input", tmp_path / "in.png",
          "--device", "cpu", "--quiet", "--output"]
    for output, needles in ((tmp_path / "a_file", ["a_file", "existing file", "folder"]),
                            (tmp_path / "result.png", ["result.png", "file name", "folder"]),
                            (tmp_path / "a_file" / "sub", ["a_file", "cannot write"])):
        rc, _, err = _tool(*sr, output)
        _assert_cli_failed(rc, err, *needles)
    assert (tmp_path / "a_file").read_text() == "keep me"
    assert not (tmp_path / "result.png").exists()
    # evaluate --json: a folder, or under a file -> refused before any set is scored
    _make_set(tmp_path, "Fake", rng, n=1)
    (tmp_path / "jdir").mkdir()
    for target, needles in ((tmp_path / "jdir", ["--json", "jdir", "is a folder"]),
                            (tmp_path / "a_file" / "r.json", ["--json", "cannot write"])):
        rc, out, err = _tool("evaluate.py", "--data-root", tmp_path, "--sets", "Fake", "--json",
                             target, "--quiet")
        _assert_cli_failed(rc, err, *needles)
        assert "PSNR" not in out                  # no work was done
    assert list((tmp_path / "jdir").iterdir()) == []


def test_data_list_names_scale_roots_and_truncated_images(tmp_path, rng, capsys):
    hr_dir, _ = _make_set(tmp_path, "Set", rng, n=2, with_lr=False)
    lists = tmp_path / "data" / "lists"
    for name in ("../escape", "a/b", "..", ".hidden", "", "x\\y"):
        with pytest.raises(ValueError, match="list name"):
            cdl.list_from_folder(hr_dir, None, name, lists, SCALE)
    rc, _, err = _tool("create_data_lists.py", "--from-folder", hr_dir, "--name", "../escape",
                       "--lists-dir", lists)
    assert rc != 0 and "Traceback" not in err
    _one_line(err.strip().splitlines()[-1], "--name '../escape'", "no path separator")
    assert not (tmp_path / "data" / "escape.json").exists() and not lists.exists()
    # a truncated HR image is found when the list is built, not at training time
    good = cdl.list_from_folder(hr_dir, None, "Good", lists, SCALE)
    before = good.read_bytes()
    _truncate(hr_dir / "img1.png")
    _main_fails(capsys, cdl.main, ["--from-folder", str(hr_dir), "--name", "Good",
                                   "--lists-dir", str(lists)], hr_dir / "img1.png")
    assert good.read_bytes() == before                     # the previous list is kept
    # one permission policy: lists are written like checkpoints (0666 minus the umask)
    umask = os.umask(0)
    os.umask(umask)
    assert good.stat().st_mode & 0o777 == 0o666 & ~umask
    # a benchmark root that does not exist, or holds none of the sets
    _main_fails(capsys, cdl.main, ["--benchmark-root", str(tmp_path / "nowhere"),
                                   "--lists-dir", str(lists)], "nowhere", "no such folder")
    _main_fails(capsys, cdl.main, ["--benchmark-root", str(hr_dir), "--lists-dir", str(lists)],
                "none of the sets")


def test_pickled_code_is_refused_never_run_nor_advised(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pth"
    torch.save({"format": checkpoint.CHECKPOINT_FORMAT, "generator": Evil()}, evil)
    utils.save_image(tmp_path / "in.png", np.zeros((8, 8, 3), np.uint8))
    for argv in (["super_resolve.py", "--checkpoint", evil, "--input", tmp_path / "in.png",
                  "--output", tmp_path / "out"],
                 ["evaluate.py", "--model", evil, "--data-root", tmp_path, "--sets", "in"]):
        if argv[0] == "evaluate.py":
            _make_set(tmp_path, "in", np.random.default_rng(0), n=1)
        rc, _, err = _tool(*argv)
        _assert_cli_failed(rc, err, evil, "pickled posix.system", "will not be loaded")
        assert "weights_only" not in err and "truncated" not in err
        assert not marker.exists()


def test_debug_shows_the_traceback_otherwise_one_line(tmp_path, rng):
    ckpt = tmp_path / "bad.pth"
    _nan_checkpoint(ckpt)
    utils.save_image(tmp_path / "in.png", _image(rng, 12, 12))
    argv = ["super_resolve.py", "--checkpoint", ckpt, "--input", tmp_path / "in.png",
            "--output", tmp_path / "out", "--device", "cpu"]
    rc, _, err = _tool(*argv)
    _assert_cli_failed(rc, err, "non-finite")
    rc, _, err = _tool(*argv, "--debug")                # the same failure, with its traceback
    assert rc != 0 and "Traceback" in err and "non-finite" in err
    # an unexpected failure inside main: still one line through cli.run ...
    import cli
    rc = cli.run("x.py", lambda argv: {}["missing"], [])
    assert rc == cli.EXIT_FAILURE
    # ... and a traceback only with --debug
    with pytest.raises(KeyError):
        cli.run("x.py", lambda argv: {}["missing"], ["--debug"])


def test_one_rule_for_image_kinds_in_folders(tmp_path, rng):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(_image(rng, 16, 16)).save(folder / "a.gif")      # read alone and in folders
    (folder / "b.png").mkdir()                                       # a folder named like an image
    (folder / "c.png").symlink_to(folder / "c.png")                  # a symlink loop
    with pytest.warns(UserWarning) as record:
        found = datasets.list_images(folder)
    assert found == [folder / "a.gif"]
    said = " | ".join(str(w.message) for w in record)
    assert "b.png" in said and "c.png" in said and "not a readable file" in said


def test_one_permission_policy_for_lists_caches_and_checkpoints(tmp_path, rng):
    umask = os.umask(0)
    os.umask(umask)
    want = 0o666 & ~umask
    image_cache.save_npy_atomic(tmp_path / "cache.npy", np.zeros(3, np.uint8))
    hr_dir, _ = _make_set(tmp_path, "Set", rng, n=1, with_lr=False)
    listed = cdl.list_from_folder(hr_dir, None, "Set", tmp_path / "lists", SCALE)
    for path in (tmp_path / "cache.npy", listed):
        assert path.stat().st_mode & 0o777 == want, path
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


# ----------------------------------------------------------------------------------------------
# Output options never destroy inputs (cli.check_output_file, one rule for every tool)
# ----------------------------------------------------------------------------------------------

def test_output_options_never_overwrite_inputs_or_foreign_files(tmp_path, rng):
    hr_dir, lr_dir = _make_set(tmp_path, "Fake", rng, n=1)
    ckpt = tmp_path / "g.pth"
    _checkpoint(ckpt)
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    before = _tree(tmp_path)
    evaluate = ["evaluate.py", "--model", ckpt, "--data-root", tmp_path, "--sets", "Fake",
                "--quiet", "--json"]
    for target, needles in ((ckpt, ["--json", "g.pth", "inputs"]),
                            (hr_dir / "img0.png", ["--json", "img0.png", "inputs"]),
                            (notes, ["--json", "notes.txt", "not a JSON results file"])):
        rc, out, err = _tool(*evaluate, target)
        _assert_cli_failed(rc, err, *needles)
        assert "PSNR" not in out                           # refused before any work
    for target, needles in ((ckpt, ["g.pth", "inputs"]),
                            (notes, ["notes.txt", "not a torch checkpoint file"]),
                            (hr_dir / "img0.png", ["img0.png", "not a torch checkpoint file"])):
        rc, _, err = _tool("export.py", ckpt, target)
        _assert_cli_failed(rc, err, *needles)
    assert _tree(tmp_path) == before                       # nothing changed anywhere
    # an earlier JSON result and an earlier export may be replaced
    (tmp_path / "r.json").write_text("{}")
    rc, _, err = _tool(*evaluate, tmp_path / "r.json")
    assert rc == 0, err
    assert "Fake" in json.loads((tmp_path / "r.json").read_text())["results"]
    assert _tool("export.py", ckpt, tmp_path / "e.pth")[0] == 0
    assert _tool("export.py", ckpt, tmp_path / "e.pth")[0] == 0


def test_super_resolve_refuses_an_output_name_that_is_a_folder(tmp_path, rng):
    ckpt = tmp_path / "g.pth"
    _checkpoint(ckpt)
    utils.save_image(tmp_path / "a.png", _image(rng, 12, 12))
    (tmp_path / "out" / "a.png").mkdir(parents=True)
    rc, _, err = _tool("super_resolve.py", "--checkpoint", ckpt, "--input", tmp_path / "a.png",
                       "--output", tmp_path / "out", "--quiet")
    _assert_cli_failed(rc, err, "a.png", "is a folder")
    assert (tmp_path / "out" / "a.png").is_dir() and not list((tmp_path / "out" / "a.png").iterdir())


@pytest.mark.parametrize("field,value", [("arch", ["srresnet"]), ("scale", "4"), ("scale", True),
                                         ("arch_kwargs", [1, 2]), ("generator", {"w": 1}),
                                         ("epoch", "one"), ("history", "rows")])
def test_checkpoint_fields_of_the_wrong_type_are_named(tmp_path, capsys, field, value):
    ckpt = tmp_path / "g.pth"
    _checkpoint(ckpt)
    state = torch.load(ckpt, weights_only=True)
    state[field] = value
    torch.save(state, ckpt)
    utils.save_image(tmp_path / "in.png", np.full((12, 12, 3), 100, np.uint8))
    _main_fails(capsys, super_resolve.main, ["--checkpoint", str(ckpt), "--input",
                                             str(tmp_path / "in.png"), "--output",
                                             str(tmp_path / "out"), "--quiet"],
                str(ckpt), repr(field), "damaged")


def test_huge_outputs_need_force(tmp_path, capsys, monkeypatch):
    ckpt = tmp_path / "g.pth"
    _checkpoint(ckpt)
    Image.new("RGB", (4200, 4100)).save(tmp_path / "bomb.png")     # small file, 275 MP output
    assert (tmp_path / "bomb.png").stat().st_size < 1_000_000
    args = ["--checkpoint", str(ckpt), "--output", str(tmp_path / "out"), "--quiet"]
    _main_fails(capsys, super_resolve.main, args + ["--input", str(tmp_path / "bomb.png")],
                "bomb.png", "16800x16400", "--force")
    assert not (tmp_path / "out").exists()                            # refused before any work
    # at the limit's edge: refused without --force, written with it
    utils.save_image(tmp_path / "small.png", np.full((20, 20, 3), 90, np.uint8))
    monkeypatch.setattr(super_resolve, "MAX_OUTPUT_PIXELS", (4 * 20) ** 2 - 1)
    _main_fails(capsys, super_resolve.main, args + ["--input", str(tmp_path / "small.png")],
                "small.png", "--force")
    assert super_resolve.main(args + ["--input", str(tmp_path / "small.png"), "--force"]) == 0
    assert utils.load_image(tmp_path / "out" / "small.png").shape == (80, 80, 3)


def test_a_file_name_that_is_not_utf8_is_printed_not_fatal(tmp_path):
    ckpt = tmp_path / "g.pth"
    _checkpoint(ckpt)
    folder = os.fsencode(tmp_path / "in")
    os.makedirs(folder)
    name = os.path.join(folder, b"caf\xe9.png")              # Latin-1 bytes in the name
    Image.fromarray(np.full((10, 10, 3), 80, np.uint8)).save(os.fsdecode(name))
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict", "LC_ALL": "C.UTF-8"}
    proc = subprocess.run([sys.executable, str(ROOT / "super_resolve.py"), "--checkpoint",
                           str(ckpt), "--input", os.fsdecode(name), "--output",
                           str(tmp_path / "out"), "--quiet"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "caf" in proc.stdout and os.listdir(tmp_path / "out") == [os.fsdecode(b"caf\xe9.png")]


@pytest.mark.parametrize("images,needles", [
    ("a.png", ["'images' should be a list"]),
    (["a.png"], ["image entry 1", "{\"hr\": path"]),
    ([{"lr": None}], ["image entry 1"]),
    ([{"hr": 5, "lr": None}], ["image entry 1"]),
    ([{"hr": "x.png", "lr": 3}], ["image entry 1"]),
])
def test_data_list_entries_of_the_wrong_shape_are_named(tmp_path, images, needles):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"name": "bad", "scale": SCALE, "hr_dir": "", "lr_dir": None,
                                "images": images}))
    with pytest.raises(ValueError) as info:
        datasets.read_data_list(path)
    _one_line(info.value, path, *needles)


def test_a_checkpoint_write_failing_inside_torch_is_one_line(tmp_path, monkeypatch):
    # torch.save's C++ writer reports a full disk as a RuntimeError with its own text
    def failing_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0\n"
                           "PytorchStreamWriter failed writing file data/0: file write failed")

    ckpt = tmp_path / "g.pth"
    _checkpoint(ckpt)
    before = ckpt.read_bytes()
    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(utils.WriteError) as info:
        checkpoint.save_checkpoint(ckpt, {"x": 1})
    _one_line(info.value, ckpt, "disk may be full", "intact")
    assert ckpt.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["g.pth"]
