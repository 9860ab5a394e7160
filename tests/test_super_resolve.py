"""Tests of tiling.py (receptive field, tiled inference) and super_resolve.py: image modes
(gray, alpha, 16-bit, palette), folder mode and the command line."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

import models
import super_resolve
import tiling
from checkpoint import CHECKPOINT_FORMAT, load_generator
from imresize import imresize
from tiling import receptive_margin, tile_grid, upscale_image
from utils import modcrop

ROOT = Path(super_resolve.__file__).resolve().parent
SCALE = 4
TINY = {"n_blocks": 1, "n_channels": 8}   # a small SRResNet for the file tests (fast)


def _random_srresnet(seed=0, **kwargs):
    """A random-weight SRResNet in eval mode whose BatchNorms have random running statistics
    (so they are not identities) and whose output sits mid-range (so few pixels are clipped)."""
    torch.manual_seed(seed)
    model = models.SRResNet(scale=SCALE, **kwargs)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        model.tail.bias.add_(0.5)
    return model.eval()


def _photo_lr(h, w):
    """A real photo (scikit-image's astronaut) downscaled x4 and cropped to ``h`` x ``w``."""
    hr = modcrop(skimage.data.astronaut()[..., :3], SCALE)
    return imresize(hr, 1 / SCALE)[:h, :w]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint of a tiny random SRResNet in the format of ``checkpoint.load_generator``."""
    model = _random_srresnet(**TINY)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    torch.save({"format": CHECKPOINT_FORMAT, "arch": "srresnet", "arch_kwargs": TINY,
                "scale": SCALE, "stage": "srresnet", "generator": model.state_dict()}, path)
    return path


def _load(checkpoint):
    return load_generator(checkpoint)[0]


# ----------------------------------------------------------------------------------------------
# Tiling
# ----------------------------------------------------------------------------------------------

def test_receptive_margin_of_the_paper_srresnet():
    # 9x9 conv (4 px) + 33 3x3 convs at LR (33) + sub-pixel conv at LR (1) + 3x3 conv at 2x
    # (0.5) + 9x9 conv at 4x (1) = 39.5 -> 40 LR pixels, plus RESAMPLE_MARGIN
    assert receptive_margin(models.SRResNet()) == 40 + tiling.RESAMPLE_MARGIN
    # VDSR: 20 3x3 convs at 4x = 5 LR pixels
    assert receptive_margin(models.VDSR()) == 5 + tiling.RESAMPLE_MARGIN


def test_tile_grid_covers_the_image_once():
    cover = np.zeros((70, 45), int)
    for y0, y1, x0, x1 in tile_grid(70, 45, 32):
        assert 0 < y1 - y0 <= 32 and 0 < x1 - x0 <= 32
        cover[y0:y1, x0:x1] += 1
    assert (cover == 1).all()


def test_tiled_equals_untiled_srresnet():
    model = _random_srresnet(n_blocks=4, n_channels=16)   # margin 4+9+1+0.5+1 -> 16 (+2)
    lr = _photo_lr(70, 80)                      # real photo, not a multiple of the tile
    whole = upscale_image(model, lr)
    assert whole.shape == (280, 320, 3)
    assert 0.5 < np.mean((whole > 0) & (whole < 255))   # mostly unclipped: a real comparison
    tiled = upscale_image(model, lr, tile=40)   # 2x2 tiles, default overlap (18 px)
    assert np.abs(tiled.astype(int) - whole).max() <= 1
    # the overlap matters: without context the tile seams differ by many gray levels
    with pytest.warns(UserWarning, match="overlap 0 is below .* radius 18 .* seams"):
        seams = upscale_image(model, lr, tile=40, overlap=0)
    assert np.abs(seams.astype(int) - whole).max() > 8


@pytest.mark.parametrize("arch,kwargs", [
    ("tconv", {"n_channels": 16}), ("tconv", {"n_channels": 16, "bicubic_skip": True}),
    ("srcnn", {}), ("fsrcnn", {}), ("vdsr", {"n_layers": 6, "n_channels": 16})])
def test_tiled_equals_untiled_every_generator(arch, kwargs):
    # TransposedConvSR's transposed convs reach into their input too, and its stride-2 encoder
    # samples every other LR pixel: tiles must start on even rows and columns (tile_alignment)
    torch.manual_seed(0)
    model = models.build_generator(arch, scale=4, **kwargs).eval()
    lr = _photo_lr(61, 75)                      # odd sides, odd tile: contexts start anywhere
    whole = upscale_image(model, lr)
    tiled = upscale_image(model, lr, tile=23)
    assert np.abs(tiled.astype(int) - whole).max() <= 1
    assert tiling.tile_alignment(model) == (2 if arch == "tconv" else 1)


def test_tiled_equals_untiled_full_srresnet():
    model = _random_srresnet()                  # the paper's SRResNet (margin 42)
    lr = _photo_lr(12, 90)                      # two tiles, each with an inner edge
    whole = upscale_image(model, lr)
    assert 0.5 < np.mean((whole > 0) & (whole < 255))
    tiled = upscale_image(model, lr, tile=45)
    assert np.abs(tiled.astype(int) - whole).max() <= 1


def test_tiled_gray_and_small_images():
    model = _random_srresnet(**TINY)
    gray = _photo_lr(40, 52)[:, :, 1]
    whole = upscale_image(model, gray)
    tiled = upscale_image(model, gray, tile=16)
    assert tiled.shape == whole.shape == (160, 208)
    assert np.abs(tiled.astype(int) - whole).max() <= 1
    # an image no larger than a tile is processed whole
    np.testing.assert_array_equal(upscale_image(model, gray[:10, :12], tile=16),
                                  upscale_image(model, gray[:10, :12]))
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="tile"):
            upscale_image(model, gray, tile=bad)


# ----------------------------------------------------------------------------------------------
# Image modes
# ----------------------------------------------------------------------------------------------

def test_gray_rgba_16bit_and_palette_files(checkpoint, tmp_path):
    model = _load(checkpoint)
    rgb = _photo_lr(24, 20)
    alpha = np.linspace(0, 255, 24 * 20).reshape(24, 20).astype(np.uint8)
    want_rgb = upscale_image(model, rgb)

    def run(name, pil):
        src = tmp_path / name
        pil.save(src)
        dst = tmp_path / "out" / f"{src.stem}.png"
        super_resolve.upscale_file(model, src, dst, tile=None)
        with Image.open(dst) as out:
            out.load()
            return out

    out = run("gray.png", Image.fromarray(rgb[:, :, 0]))
    assert out.mode == "L" and out.size == (80, 96)
    np.testing.assert_array_equal(np.asarray(out), upscale_image(model, rgb[:, :, 0]))

    out = run("rgba.png", Image.fromarray(np.dstack([rgb, alpha])))
    assert out.mode == "RGBA" and out.size == (80, 96)
    arr = np.asarray(out)
    np.testing.assert_array_equal(arr[:, :, :3], want_rgb)
    np.testing.assert_array_equal(arr[:, :, 3], imresize(alpha, SCALE))

    out = run("la.png", Image.fromarray(np.dstack([rgb[:, :, 0], alpha])))
    assert out.mode == "LA"
    np.testing.assert_array_equal(np.asarray(out)[:, :, 1], imresize(alpha, SCALE))

    # 16-bit gray: reduced to 8 bits (round(v / 257)) before the model, 8-bit output
    g16 = rgb[:, :, 0].astype(np.uint16) * 257 + 100
    out = run("gray16.png", Image.fromarray(g16))
    assert out.mode == "L"
    eight = np.round(g16 / 257).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(out), upscale_image(model, eight))

    pal = Image.fromarray(rgb).quantize(16)
    out = run("palette.png", pal)
    assert out.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(out),
                                  upscale_image(model, np.asarray(pal.convert("RGB"))))
    pal.info["transparency"] = 0
    out = run("palette_t.png", pal)
    assert out.mode == "RGBA"
    assert set(np.unique(np.asarray(out)[:, :, 3])) >= {0, 255}


# ----------------------------------------------------------------------------------------------
# Folders and the command line
# ----------------------------------------------------------------------------------------------

def _cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "super_resolve.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def _main(*args):
    return super_resolve.main([str(a) for a in args])


def test_folder_mode_keeps_names_and_skips_bad_files(checkpoint, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    rgb = _photo_lr(20, 16)
    Image.fromarray(rgb).save(src / "a.png")
    Image.fromarray(rgb[:, :, 0]).save(src / "b photo.jpg")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    out = tmp_path / "out"

    with pytest.warns(UserWarning, match="notes.txt"):
        (src / "notes.txt").write_text("not an image")
        rc = _main("--checkpoint", checkpoint, "--input", src, "--output", out, "--tile", "12",
                   "--device", "cpu", "--quiet")
    err = capsys.readouterr().err
    assert rc == 1                                   # something was skipped
    assert "broken.png" in err and "warning" in err
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b photo.png"]
    with Image.open(out / "a.png") as a, Image.open(out / "b photo.png") as b:
        assert a.size == (64, 80) and a.mode == "RGB" and b.mode == "L"
        np.testing.assert_array_equal(np.asarray(a), upscale_image(_load(checkpoint), rgb))

    # existing outputs are kept without --overwrite; an output may not replace an input
    before = (out / "a.png").stat().st_mtime_ns
    (src / "broken.png").unlink()
    (src / "notes.txt").unlink()
    assert _main("--checkpoint", checkpoint, "--input", src, "--output", out, "--device", "cpu",
                 "--quiet") == 0
    assert (out / "a.png").stat().st_mtime_ns == before
    assert _main("--checkpoint", checkpoint, "--input", src / "a.png", "--output", src,
                 "--device", "cpu") == 1
    assert "overwrite the input" in capsys.readouterr().err


def test_cli_single_file_and_clear_errors(checkpoint, tmp_path):
    img = tmp_path / "photo.jpg"
    Image.fromarray(_photo_lr(12, 10)).save(img)
    proc = _cli("--checkpoint", checkpoint, "--input", img, "--output", tmp_path / "o",
                "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    with Image.open(tmp_path / "o" / "photo.png") as out:
        assert out.size == (40, 48)

    bad = tmp_path / "bad.pth"
    torch.save({"weights": torch.zeros(1)}, bad)
    proc = _cli("--checkpoint", bad, "--input", img, "--output", tmp_path / "o2")
    assert proc.returncode == 1
    assert str(bad) in proc.stderr and "not a generator checkpoint" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o2").exists()


def test_a_failure_mid_folder_stops_with_one_line_and_keeps_written_outputs(checkpoint, tmp_path,
                                                                            capsys, monkeypatch):
    import errno
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a", "b", "c"):
        Image.fromarray(_photo_lr(12, 12)).save(src / f"{name}.png")
    out = tmp_path / "out"
    real = super_resolve.upscale_file

    def disk_full_at_b(model, s, d, *args, **kwargs):
        if Path(s).stem == "b":
            raise OSError(errno.ENOSPC, "No space left on device", str(d))
        return real(model, s, d, *args, **kwargs)

    monkeypatch.setattr(super_resolve, "upscale_file", disk_full_at_b)
    rc = _main("--checkpoint", checkpoint, "--input", src, "--output", out, "--device", "cpu",
               "--quiet")
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 1 and len(err) == 1
    assert "No space left" in err[0] and "b.png" in err[0] and "kept" in err[0]
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]     # written before: kept
    # the checks before any work: a folder as --checkpoint, an --output that is a file
    capsys.readouterr()
    assert _main("--checkpoint", tmp_path, "--input", src, "--output", out) == 1
    assert "is a folder, not a checkpoint file" in capsys.readouterr().err


def test_probing_the_receptive_field_leaves_a_training_model_untouched():
    model = models.SRResNet(n_blocks=2, n_channels=8).train()      # BatchNorm in train mode
    before = {k: v.clone() for k, v in model.state_dict().items()}
    receptive_margin(model)
    tiling.tile_alignment(model)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
