"""Tests of imresize.py: MATLAB-exact bicubic resizing (numpy and torch)."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imresize import imresize, imresize_torch

SCALE = 4


# --------------------------------------------------------------------------- helpers
def _load(path):
    return np.array(Image.open(path))


def _modcrop(img, scale):
    h, w = img.shape[:2]
    return img[:h - h % scale, :w - w % scale]


def _hr_lr_pairs(hr_dir, lr_dir):
    """(hr_path, lr_path) for every HR png, LR named <stem>x4.png."""
    hr_paths = sorted(Path(hr_dir).glob("*.png"))
    pairs = [(p, Path(lr_dir) / f"{p.stem}x{SCALE}.png") for p in hr_paths]
    assert pairs, f"no HR images in {hr_dir}"
    return pairs


def _ref_cubic(t):
    """Keys cubic, a = -0.5, written piecewise (independent of the module's vectorised form)."""
    t = abs(t)
    if t <= 1:
        return 1.5 * t * t * t - 2.5 * t * t + 1
    if t <= 2:
        return -0.5 * t * t * t + 2.5 * t * t - 4 * t + 2
    return 0.0


def _ref_matrix(n, m, s):
    """Dense (m, n) resampling matrix of MATLAB's imresize along one dimension, by loops."""
    mat = np.zeros((m, n))
    width = 4.0 / s if s < 1 else 4.0
    for x in range(1, m + 1):
        u = x / s + 0.5 * (1 - 1 / s)
        left = math.floor(u - width / 2)
        row = np.zeros(n)
        for j in range(math.ceil(width) + 2):
            idx = left + j
            wt = s * _ref_cubic(s * (u - idx)) if s < 1 else _ref_cubic(u - idx)
            while idx < 1 or idx > n:  # symmetric padding: 0 -> 1, -1 -> 2, n+1 -> n
                idx = 1 - idx if idx < 1 else 2 * n + 1 - idx
            row[idx - 1] += wt
        mat[x - 1] = row / row.sum()
    return mat


def _ref_round(x):
    """MATLAB uint8 cast: round half away from zero, saturate to 0..255."""
    return np.clip(np.sign(x) * np.floor(np.abs(x) + 0.5), 0, 255).astype(np.uint8)


def _ref_imresize(img, scales):
    """Slow reference of MATLAB imresize (2-D image, per-dim scales); uint8 rounded per pass."""
    out = img
    out_shape = [math.ceil(s * n) for s, n in zip(scales, img.shape)]
    for dim in sorted((0, 1), key=lambda d: scales[d]):  # stable: rows first on ties
        mat = _ref_matrix(out.shape[dim], out_shape[dim], scales[dim])
        res = mat @ out.astype(np.float64) if dim == 0 else out.astype(np.float64) @ mat.T
        out = _ref_round(res) if img.dtype == np.uint8 else res
    return out


def _to_chw(img):
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def _from_chw(t):
    return t.permute(1, 2, 0).numpy()


# --------------------------------------------------------------------------- MATLAB files
def test_matches_matlab_set5_set14_bit_exact(shared_data):
    bench = shared_data / "benchmark"
    n_images = 0
    for name in ("Set5", "Set14"):
        lr_dir = bench / name / "LR_bicubic" / "X4"
        for hr_path, lr_path in _hr_lr_pairs(bench / name / "HR", lr_dir):
            hr, lr = _modcrop(_load(hr_path), SCALE), _load(lr_path)
            out = imresize(hr, 1 / SCALE)
            assert out.dtype == np.uint8 and out.shape == lr.shape, hr_path.name
            n_diff = int(np.count_nonzero(out != lr))
            assert n_diff == 0, f"{hr_path.name}: {n_diff} pixels differ from MATLAB"
            n_images += 1
    assert n_images == 19


def test_matches_matlab_2k_train_samples(shared_data):
    root = shared_data / "train_samples"
    div2k, flickr = root / "DIV2K", root / "Flickr2K"
    pairs = _hr_lr_pairs(div2k / "DIV2K_train_HR", div2k / "DIV2K_train_LR_bicubic" / "X4")
    pairs += _hr_lr_pairs(flickr / "Flickr2K_HR", flickr / "Flickr2K_LR_bicubic" / "X4")
    for hr_path, lr_path in pairs:
        hr, lr = _modcrop(_load(hr_path), SCALE), _load(lr_path)
        out = imresize(hr, 1 / SCALE)
        assert out.shape == lr.shape and np.array_equal(out, lr), hr_path.name


def test_torch_uint8_matches_matlab_file(shared_data):
    bench = shared_data / "benchmark" / "Set14"
    for stem in ("comic", "bridge"):  # odd size (modcrop needed) and single-channel
        hr = _modcrop(_load(bench / "HR" / f"{stem}.png"), SCALE)
        lr = _load(bench / "LR_bicubic" / "X4" / f"{stem}x4.png")
        x = torch.from_numpy(hr)[None] if hr.ndim == 2 else _to_chw(hr)
        out = imresize_torch(x[None], 1 / SCALE)[0]
        out = out[0].numpy() if hr.ndim == 2 else _from_chw(out)
        assert out.dtype == np.uint8 and np.array_equal(out, lr), stem


# --------------------------------------------------------------------------- reference
@pytest.mark.parametrize("scale", [1 / 3, 0.5, 2, 4, 0.3, 1.7, (0.5, 2), (2, 0.5)])
def test_matches_slow_reference(scale):
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, (7, 5), dtype=np.uint8)
    scales = scale if isinstance(scale, tuple) else (scale, scale)
    ref_u8 = _ref_imresize(img, scales)
    out_u8 = imresize(img, scale)
    assert out_u8.dtype == np.uint8 and np.array_equal(out_u8, ref_u8)
    img_f = img.astype(np.float64) / 255
    np.testing.assert_allclose(imresize(img_f, scale), _ref_imresize(img_f, scales),
                               rtol=0, atol=1e-12)


def test_output_shape_argument():
    rng = np.random.default_rng(1)
    img = rng.random((7, 5))
    out = imresize(img, output_shape=(10, 3))
    assert out.shape == (10, 3)
    np.testing.assert_allclose(out, _ref_imresize(img, (10 / 7, 3 / 5)), rtol=0, atol=1e-12)
    # output_shape = 2x the size means scale 2 exactly: same result as scale=2
    u8 = rng.integers(0, 256, (9, 6, 3), dtype=np.uint8)
    assert np.array_equal(imresize(u8, output_shape=(18, 12)), imresize(u8, 2))


@pytest.mark.parametrize("shape", [(7, 5), (17, 23), (1, 1), (2, 9), (101, 64)])
@pytest.mark.parametrize("scale", [0.25, 0.3, 1 / 3, 1.7, 4, (0.5, 3)])
def test_output_size_is_ceil(shape, scale):
    img = np.zeros(shape, dtype=np.uint8)
    sh, sw = scale if isinstance(scale, tuple) else (scale, scale)
    assert imresize(img, scale).shape == (math.ceil(sh * shape[0]), math.ceil(sw * shape[1]))


# --------------------------------------------------------------------------- semantics
@pytest.mark.parametrize("scale", [0.25, 0.3, 1.7, 4, (0.5, 2)])
def test_constant_image_stays_constant(scale):
    u8 = np.full((23, 17, 3), 137, dtype=np.uint8)
    out = imresize(u8, scale)
    assert out.dtype == np.uint8 and np.all(out == 137)
    f = np.full((23, 17), 0.4321, dtype=np.float64)
    np.testing.assert_allclose(imresize(f, scale), 0.4321, rtol=0, atol=1e-12)
    t = torch.full((2, 1, 23, 17), 0.4321, dtype=torch.float32)
    out_t = imresize_torch(t, scale)
    torch.testing.assert_close(out_t, torch.full_like(out_t, 0.4321))


def test_upscale_x4_reproduces_quadratics_at_matlab_positions():
    # Keys' a = -0.5 cubic reproduces polynomials up to degree 2; MATLAB samples output pixel x
    # (1-based) at input position u = x/4 + 0.375. Away from the mirrored border this is exact.
    n = 12
    pos = np.arange(1, n + 1, dtype=np.float64)
    quad = 0.3 * pos ** 2 - 2 * pos + 5
    img = np.tile(quad[:, None], (1, 3))  # varies along rows only
    out = imresize(img, 4)
    assert out.shape == (4 * n, 12)
    u = np.arange(1, 4 * n + 1) / 4 + 0.375
    inner = (u >= 3) & (u <= n - 2)  # all four taps inside the image
    expected = 0.3 * u[inner] ** 2 - 2 * u[inner] + 5
    np.testing.assert_allclose(out[inner, 0], expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(out, np.broadcast_to(out[:, :1], out.shape), rtol=0, atol=1e-12)


def test_upscale_x4_uint8_vs_float_path():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (16, 11, 3), dtype=np.uint8)
    up_u8 = imresize(img, 4)
    up_f = imresize(img.astype(np.float64), 4)
    assert up_u8.shape == up_f.shape == (64, 44, 3)
    assert up_u8.dtype == np.uint8 and up_f.dtype == np.float64
    assert np.any(up_f != np.round(up_f))  # float path is not rounded
    assert up_f.min() < 0 and up_f.max() > 255  # nor clipped (random noise overshoots)
    # without saturation (mid-range values), the uint8 path differs from the float one only by
    # the rounding after each pass: <= 0.5 * sum|w| (< 1.2) + 0.5
    mid = rng.integers(60, 196, (16, 11, 3), dtype=np.uint8)
    diff = imresize(mid, 4).astype(np.float64) - imresize(mid.astype(np.float64), 4)
    assert np.abs(diff).max() <= 1.7 and np.any(diff != 0)


def test_float_keeps_overshoot_and_dtype():
    step = np.zeros((8, 8), dtype=np.float32)
    step[:, 4:] = 1.0
    out = imresize(step, 4)
    assert out.dtype == np.float32
    assert out.min() < -0.01 and out.max() > 1.01  # cubic ringing at the edge is kept
    out_down = imresize(step.astype(np.float64), 0.5)
    assert out_down.dtype == np.float64 and out_down.max() > 1.0


def test_2d_and_3d_agree():
    rng = np.random.default_rng(4)
    img = rng.integers(0, 256, (19, 14, 3), dtype=np.uint8)
    for scale in (0.25, 1.7):
        out3 = imresize(img, scale)
        for c in range(3):
            assert np.array_equal(out3[..., c], imresize(img[..., c], scale))
        f = img.astype(np.float32) / 255
        out3f = imresize(f, scale)
        for c in range(3):
            assert np.array_equal(out3f[..., c], imresize(f[..., c], scale))


def test_non_contiguous_input():
    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    view = img[::2, ::-1]
    assert np.array_equal(imresize(view, 0.3), imresize(np.ascontiguousarray(view), 0.3))


# --------------------------------------------------------------------------- torch
@pytest.mark.parametrize("scale", [0.25, 1 / 3, 1.7, 4, (0.5, 2)])
def test_torch_equals_numpy(scale):
    rng = np.random.default_rng(6)
    img = rng.integers(0, 256, (21, 18, 3), dtype=np.uint8)
    out_u8 = imresize_torch(_to_chw(img), scale)
    assert out_u8.dtype == torch.uint8
    assert np.array_equal(_from_chw(out_u8), imresize(img, scale))
    f64 = img.astype(np.float64) / 255
    out64 = imresize_torch(_to_chw(f64), scale)
    assert out64.dtype == torch.float64
    assert np.array_equal(_from_chw(out64), imresize(f64, scale))
    out32 = imresize_torch(_to_chw(f64).float(), scale)
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(_from_chw(out32), imresize(f64, scale), rtol=0, atol=1e-5)


def test_torch_batch_and_chw():
    x = torch.rand(3, 2, 13, 10, dtype=torch.float64)
    out = imresize_torch(x, 0.5)
    assert out.shape == (3, 2, 7, 5)
    for i in range(3):
        assert torch.equal(out[i], imresize_torch(x[i], 0.5))
    assert imresize_torch(x[0], output_shape=(4, 9)).shape == (2, 4, 9)
    perm = torch.rand(1, 13, 10, 3).permute(0, 3, 1, 2)  # non-contiguous (channels-last)
    assert torch.equal(imresize_torch(perm, 2), imresize_torch(perm.contiguous(), 2))


def test_torch_gradient():
    x = torch.rand(2, 3, 12, 9, requires_grad=True)
    out = imresize_torch(x, 0.25)
    out.square().sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    small = torch.rand(1, 1, 6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: imresize_torch(t, 1.5), (small,))
    assert torch.autograd.gradcheck(lambda t: imresize_torch(t, 0.5), (small,))


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs", [
    {},
    {"scale": 0},
    {"scale": -0.5},
    {"scale": float("nan")},
    {"scale": float("inf")},
    {"scale": (0.5, 0)},
    {"scale": (0.5, 0.5, 0.5)},
    {"scale": "2"},
    {"output_shape": (0, 4)},
    {"output_shape": (2.5, 4)},
    {"output_shape": (4,)},
    {"scale": 2, "output_shape": (4, 4)},
])
def test_bad_arguments(kwargs):
    img = np.zeros((8, 8), dtype=np.uint8)
    with pytest.raises(ValueError, match="imresize"):
        imresize(img, **kwargs)
    with pytest.raises(ValueError, match="imresize"):
        imresize_torch(torch.zeros(1, 8, 8), **kwargs)


def test_bad_images():
    bad = (np.zeros(8), np.zeros((2, 2, 2, 2)), np.zeros((0, 5)), np.zeros((4, 4), dtype=bool))
    for img in bad:
        with pytest.raises(ValueError, match="imresize"):
            imresize(img, 0.5)
    with pytest.raises(ValueError, match="imresize"):
        imresize([[1, 2], [3, 4]], 0.5)
    for t in (torch.zeros(8, 8), torch.zeros(1, 1, 1, 8, 8), torch.zeros(1, 0, 4, 4)):
        with pytest.raises(ValueError, match="imresize"):
            imresize_torch(t, 0.5)
