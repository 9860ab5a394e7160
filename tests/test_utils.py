"""Tests of utils.py: image files, colour conversions, tensor conversions, PSNR/SSIM."""
import io
import struct
import os

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

import utils
from utils import (ImageReadError, image_to_tensor, load_image, modcrop, rgb2ycbcr,
                   rgb2ycbcr_torch, rgb_to_luma, save_image, tensor_to_image,
                   ycbcr2rgb_torch)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def _rgb(rng, h=12, w=10):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------
# load_image
# ------------------------------------------------------------------------------------------

def test_load_rgb_and_gray(tmp_path, rng):
    rgb = _rgb(rng)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    gray = rng.integers(0, 256, (7, 9), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "gray.png")

    out = load_image(tmp_path / "rgb.png")
    assert out.dtype == np.uint8 and out.shape == (12, 10, 3)
    np.testing.assert_array_equal(out, rgb)

    out = load_image(str(tmp_path / "gray.png"))
    assert out.dtype == np.uint8 and out.shape == (7, 9)
    np.testing.assert_array_equal(out, gray)

    out = load_image(tmp_path / "gray.png", rgb=True)
    assert out.shape == (7, 9, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)


def test_load_drops_alpha(tmp_path, rng):
    rgba = rng.integers(0, 256, (6, 5, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    out = load_image(tmp_path / "rgba.png")
    assert out.shape == (6, 5, 3)
    np.testing.assert_array_equal(out, rgba[:, :, :3])

    la = rng.integers(0, 256, (6, 5, 2), dtype=np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    out = load_image(tmp_path / "la.png")
    assert out.shape == (6, 5)
    np.testing.assert_array_equal(out, la[:, :, 0])


def test_load_palette(tmp_path, rng):
    rgb = _rgb(rng, 16, 16)
    pal = Image.fromarray(rgb).quantize(colors=8)
    assert pal.mode == "P"
    pal.save(tmp_path / "p.png")
    out = load_image(tmp_path / "p.png")
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.asarray(pal.convert("RGB")))
    assert len(np.unique(out.reshape(-1, 3), axis=0)) <= 8


def test_load_16bit_gray(tmp_path):
    k = np.arange(256, dtype=np.int64)
    # 257k + 128 -> k (128/257 < 0.5);  257k + 129 -> k + 1 (129/257 > 0.5), capped in range
    vals = np.stack([257 * k, np.minimum(257 * k + 128, 65535), np.minimum(257 * k + 129, 65535)])
    Image.fromarray(vals.astype(np.uint16)).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode in ("I;16", "I")
    out = load_image(tmp_path / "g16.png")
    assert out.dtype == np.uint8 and out.shape == (3, 256)
    np.testing.assert_array_equal(out[0], k)
    np.testing.assert_array_equal(out[1], k)
    np.testing.assert_array_equal(out[2, :255], k[:255] + 1)
    assert out[2, 255] == 255

    # mode 'I' (32-bit integer storage of 16-bit data, here a TIFF) follows the same rule
    Image.fromarray(vals.astype(np.int32)).save(tmp_path / "gi.tif")
    assert Image.open(tmp_path / "gi.tif").mode == "I"
    np.testing.assert_array_equal(load_image(tmp_path / "gi.tif"), out)


def test_load_cmyk_jpeg(tmp_path):
    # a flat cyan/magenta/yellow/black/white strip survives JPEG almost exactly
    cmyk = np.zeros((16, 80, 4), dtype=np.uint8)
    for i, ink in enumerate([(255, 0, 0, 0), (0, 255, 0, 0), (0, 0, 255, 0), (0, 0, 0, 255),
                             (0, 0, 0, 0)]):
        cmyk[:, 16 * i:16 * (i + 1)] = ink
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    out = load_image(tmp_path / "cmyk.jpg")
    assert out.shape == (16, 80, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.asarray(Image.open(tmp_path / "cmyk.jpg").convert("RGB")))
    expected = [(0, 255, 255), (255, 0, 255), (255, 255, 0), (0, 0, 0), (255, 255, 255)]
    for i, rgb in enumerate(expected):
        centre = out[8, 16 * i + 8].astype(int)
        assert np.abs(centre - rgb).max() <= 3, (i, centre, rgb)


def _assert_read_error(path):
    with pytest.raises(ImageReadError) as info:
        load_image(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_load_errors_name_the_file(tmp_path, rng):
    _assert_read_error(tmp_path / "missing.png")

    (tmp_path / "notes.png").write_text("this is not an image\n")
    _assert_read_error(tmp_path / "notes.png")

    (tmp_path / "noise.png").write_bytes(rng.integers(0, 256, 500, dtype=np.uint8).tobytes())
    _assert_read_error(tmp_path / "noise.png")

    _assert_read_error(tmp_path)  # a folder


def test_load_truncated_and_corrupt(tmp_path, rng):
    Image.fromarray(_rgb(rng, 64, 64)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[:len(data) // 2])
    _assert_read_error(tmp_path / "truncated.png")

    Image.fromarray(_rgb(rng, 64, 64)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[:len(data) // 2])
    _assert_read_error(tmp_path / "truncated.jpg")

    # valid header, garbage image data
    png = bytearray((tmp_path / "full.png").read_bytes())
    idat = png.index(b"IDAT") + 4
    png[idat:idat + 200] = bytes(200)
    (tmp_path / "corrupt.png").write_bytes(bytes(png))
    _assert_read_error(tmp_path / "corrupt.png")


# ------------------------------------------------------------------------------------------
# save_image
# ------------------------------------------------------------------------------------------

def test_save_round_trip_and_parent_dirs(tmp_path, rng):
    rgb = _rgb(rng)
    gray = rng.integers(0, 256, (5, 8), dtype=np.uint8)
    save_image(tmp_path / "a" / "b" / "rgb.png", rgb)
    save_image(tmp_path / "gray.png", gray)
    save_image(tmp_path / "gray1.png", gray[:, :, None])
    np.testing.assert_array_equal(load_image(tmp_path / "a" / "b" / "rgb.png"), rgb)
    np.testing.assert_array_equal(load_image(tmp_path / "gray.png"), gray)
    np.testing.assert_array_equal(load_image(tmp_path / "gray1.png"), gray)
    assert sorted(os.listdir(tmp_path)) == ["a", "gray.png", "gray1.png"]  # no temp files
    assert os.listdir(tmp_path / "a" / "b") == ["rgb.png"]


def test_save_bad_input_keeps_existing_file(tmp_path, rng):
    target = tmp_path / "keep.png"
    good = _rgb(rng)
    save_image(target, good)
    before = target.read_bytes()
    with pytest.raises(TypeError, match="uint8"):
        save_image(target, good.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        save_image(target, np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="extension"):
        save_image(tmp_path / "keep.xyz", good)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["keep.png"]


def test_save_failure_during_write_is_atomic(tmp_path, rng, monkeypatch):
    target = tmp_path / "keep.png"
    save_image(target, _rgb(rng))
    before = target.read_bytes()

    def broken_save(self, fp, format=None, **kw):
        fp.write(b"\x89PNG partial data")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="simulated"):
        save_image(target, _rgb(rng))
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["keep.png"]


# ------------------------------------------------------------------------------------------
# modcrop and colour
# ------------------------------------------------------------------------------------------

def test_modcrop_top_left(rng):
    img = _rgb(rng, 13, 10)
    out = modcrop(img, 4)
    assert out.shape == (12, 8, 3)
    np.testing.assert_array_equal(out, img[:12, :8])
    gray = img[:, :, 0]
    assert modcrop(gray, 5).shape == (10, 10)
    np.testing.assert_array_equal(modcrop(gray, 5), gray[:10, :10])
    assert modcrop(img[:12, :8], 4).shape == (12, 8, 3)
    with pytest.raises(ValueError):
        modcrop(img, 0)


def test_rgb2ycbcr_known_values():
    px = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 0, 255]]], dtype=np.uint8)
    out = rgb2ycbcr(px)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0], [16, 128, 128])
    np.testing.assert_array_equal(out[0, 1], [235, 128, 128])
    # pure red: Y = 16 + 65.481, Cb = 128 - 37.797, Cr = 128 + 112
    np.testing.assert_array_equal(out[0, 2], [81, 90, 240])
    # pure blue: Y = 16 + 24.966, Cb = 128 + 112, Cr = 128 - 18.214
    np.testing.assert_array_equal(out[0, 3], [41, 240, 110])
    np.testing.assert_array_equal(rgb2ycbcr(px, y_only=True), [[16, 235, 81, 41]])

    f = rgb2ycbcr(px.astype(np.float64) / 255)
    assert f.dtype == np.float64
    np.testing.assert_allclose(f[0, 0], np.array([16, 128, 128]) / 255)
    np.testing.assert_allclose(f[0, 1], np.array([235, 128, 128]) / 255)
    np.testing.assert_allclose(f[0, 2], np.array([16 + 65.481, 128 - 37.797, 240]) / 255)



def ycbcr2rgb(img):
    """MATLAB ``ycbcr2rgb`` (the inverse of ``utils.rgb2ycbcr``), the reference the colour tests
    check against: ``(H,W,3)`` uint8 -> uint8 (rounded, clipped), float in [0,1] -> float64
    clipped to [0,1]."""
    is_uint8 = img.dtype == np.uint8
    x = img.astype(np.float64) * (1.0 if is_uint8 else 255)          # on the 0..255 scale
    out = (x - utils.YCBCR_OFFSET) @ (utils.YCBCR_TO_RGB_MATRIX.T * 255)
    if is_uint8:
        return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)
    return np.clip(out / 255, 0.0, 1.0)


def test_ycbcr2rgb_inverts(rng):
    rgb = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    # through float YCbCr the inverse is exact to within the final rounding
    back = ycbcr2rgb(rgb2ycbcr(rgb.astype(np.float64) / 255))
    assert np.abs(np.round(back * 255) - rgb).max() == 0
    # through uint8 YCbCr the Y/Cb/Cr rounding (up to 0.5 each, amplified by the inverse matrix,
    # e.g. dB = 1.164 dY + 2.017 dCb) can move a channel by 2 levels; mostly by 0 or 1
    ycc = rgb2ycbcr(rgb)
    back = ycbcr2rgb(ycc)
    assert back.dtype == np.uint8
    err = np.abs(back.astype(int) - rgb)
    assert err.max() <= 2 and err.mean() < 0.6 and (err <= 1).mean() > 0.9
    # the uint8 path is the float path on the same YCbCr values, rounded
    exact = ycbcr2rgb(ycc.astype(np.float64) / 255) * 255
    assert np.abs(back - exact).max() <= 0.5 + 1e-9
    f = rng.random((9, 7, 3))
    np.testing.assert_allclose(ycbcr2rgb(rgb2ycbcr(f)), f, atol=1e-12)
    # out-of-gamut YCbCr is clipped like MATLAB
    assert ycbcr2rgb(np.array([[[1.0, 0.0, 1.0]]])).min() >= 0


def test_torch_colour_matches_numpy(rng):
    f = rng.random((2, 5, 6, 3))
    x = torch.from_numpy(f.transpose(0, 3, 1, 2).copy()).requires_grad_()
    y = rgb2ycbcr_torch(x)
    for i in range(2):
        np.testing.assert_allclose(y[i].detach().numpy().transpose(1, 2, 0), rgb2ycbcr(f[i]),
                                   atol=1e-12)
    np.testing.assert_allclose(ycbcr2rgb_torch(y).detach().numpy(), x.detach().numpy(), atol=1e-12)
    y[:, 0].sum().backward()  # differentiable: dY/dR = 65.481 / 255
    np.testing.assert_allclose(x.grad[:, 0].numpy(), 65.481 / 255)
    y32 = rgb2ycbcr_torch(x.detach().float())
    assert y32.dtype == torch.float32 and y32.shape == (2, 3, 5, 6)
    assert rgb2ycbcr_torch(x.detach()[0]).shape == (3, 5, 6)


def test_rgb_to_luma_matches_pil(rng):
    rgb = rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)
    np.testing.assert_array_equal(rgb_to_luma(rgb), np.asarray(Image.fromarray(rgb).convert("L")))


# ------------------------------------------------------------------------------------------
# tensors
# ------------------------------------------------------------------------------------------

def test_tensor_round_trip(rng):
    rgb = _rgb(rng, 11, 13)
    t = image_to_tensor(rgb)
    assert t.shape == (1, 3, 11, 13) and t.dtype == torch.float32
    assert float(t.min()) >= 0 and float(t.max()) <= 1
    np.testing.assert_array_equal(tensor_to_image(t), rgb)
    np.testing.assert_array_equal(tensor_to_image(t[0]), rgb)
    gray = rgb[:, :, 0]
    tg = image_to_tensor(gray)
    assert tg.shape == (1, 1, 11, 13)
    out = tensor_to_image(tg)
    assert out.shape == (11, 13)
    np.testing.assert_array_equal(out, gray)


def test_tensor_to_image_clamps_and_rounds():
    t = torch.tensor([-0.5, 0.0, 0.49 / 255, 0.51 / 255, 1.0, 2.0]).view(1, 1, 1, 6)
    np.testing.assert_array_equal(tensor_to_image(t), [[0, 0, 0, 1, 255, 255]])
    with pytest.raises(ValueError):
        tensor_to_image(torch.zeros(2, 3, 4, 4))
    with pytest.raises(TypeError):
        image_to_tensor(np.zeros((4, 4, 3), np.float32))


def _s15(x):
    return struct.pack(">i", round(x * 65536))


def icc_matrix_profile(desc, red, green, blue, gamma, white=(0.9642, 1.0, 0.8249)):
    """A minimal ICC v2 RGB display profile (matrix + gamma curves), as cameras embed them."""
    xyz = lambda v: b"XYZ " + bytes(4) + b"".join(_s15(c) for c in v)
    curv = b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)
    text = desc.encode("ascii")
    tags = [(b"desc", b"desc" + bytes(4) + struct.pack(">I", len(text) + 1) + text + bytes(80)),
            (b"wtpt", xyz(white)), (b"rXYZ", xyz(red)), (b"gXYZ", xyz(green)),
            (b"bXYZ", xyz(blue)), (b"rTRC", curv), (b"gTRC", curv), (b"bTRC", curv),
            (b"cprt", b"text" + bytes(4) + b"none\0")]
    offset, table, data = 128 + 4 + 12 * len(tags), b"", b""
    for sig, body in tags:
        data += bytes(-(offset + len(data)) % 4)
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    body = struct.pack(">I", len(tags)) + table + data
    header = (struct.pack(">I", 128 + len(body)) + b"none" + struct.pack(">I", 0x02100000)
              + b"mntrRGB XYZ " + bytes(12) + b"acsp" + bytes(28) + _s15(0.9642) + _s15(1.0)
              + _s15(0.8249) + bytes(48))
    return header + body


# Adobe RGB (1998), D50-adapted colorants, gamma 563/256
ADOBE_RGB = icc_matrix_profile("Adobe RGB (1998)", (0.6097, 0.3111, 0.0195),
                               (0.2053, 0.6257, 0.0609), (0.1492, 0.0632, 0.7446), 563 / 256)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_non_srgb_profile_is_converted_to_srgb_on_load(tmp_path, fmt):
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    raw[:8] = (200, 60, 60)                           # a saturated red: Adobe RGB is wider
    path = tmp_path / f"adobe.{fmt.lower()}"
    Image.fromarray(raw).save(path, fmt, icc_profile=ADOBE_RGB, **({"quality": 100}
                                                                   if fmt == "JPEG" else {}))
    with Image.open(path) as pil:
        stored = np.asarray(pil.convert("RGB"))        # the file's own (Adobe RGB) values
        expect = np.asarray(ImageCms.profileToProfile(
            pil.convert("RGB"), ImageCms.ImageCmsProfile(io.BytesIO(ADOBE_RGB)),
            utils.SRGB_PROFILE, outputMode="RGB"))
    with pytest.warns(UserWarning, match="Adobe RGB .* converted to sRGB"):
        got = load_image(path)
    assert np.array_equal(got, expect)
    assert got[:8, :, 0].mean() > stored[:8, :, 0].mean() + 20   # redder: what it looks like
    # without a profile, or with an sRGB one, the values are the file's
    plain, tagged = tmp_path / "plain.png", tmp_path / "srgb.png"
    Image.fromarray(raw).save(plain)
    Image.fromarray(raw).save(tagged, icc_profile=utils.SRGB_PROFILE.tobytes())
    assert np.array_equal(load_image(plain), raw) and np.array_equal(load_image(tagged), raw)
