"""Tests of metrics.niqe (NIQE of Mittal, Soundararajan, Bovik 2013; MATLAB niqe_release protocol).

The vectorised ``metrics.niqe`` is compared with an independent, straightforward reference written
here after BasicSR's ``niqe.py`` (a loop over blocks, ``np.arange`` gam grid, brute-force
``np.argmin``, ``scipy.ndimage.convolve``). The one addition to BasicSR's code is the exact-zero
MSCN rule (a pixel whose exactly computed 7x7 weighted mean rounds to the pixel itself has MSCN 0,
as MATLAB gives: its baboon value is only reproduced so); the reference decides it with exact
rational arithmetic (``fractions``) instead of ring sums.
"""
import math
from fractions import Fraction

import numpy as np
import pytest
from scipy.ndimage import convolve
from scipy.special import gamma

import metrics
import utils
from imresize import imresize

BABOON_MATLAB = 5.72957338   # MATLAB R2021a on benchmark/Set14/HR/baboon.png (shared README)
REF_TOL = 1e-9               # vectorised vs loop reference
REF_CANDIDATE_TOL = 1e-6     # |im - mu| below which the reference checks the mean exactly


# ------------------------------------------------------------------------------------------
# Independent loop reference (BasicSR style)
# ------------------------------------------------------------------------------------------

_GAM = np.arange(0.2, 10.001, 0.001)   # BasicSR's grid (MATLAB's 0.2:0.001:10 up to last bits)
_R_GAM = gamma(2 / _GAM) ** 2 / (gamma(1 / _GAM) * gamma(3 / _GAM))


def _ref_aggd(block):
    v = block.ravel()
    left_std = np.sqrt(np.mean(v[v < 0] ** 2)) if np.any(v < 0) else np.nan
    right_std = np.sqrt(np.mean(v[v > 0] ** 2)) if np.any(v > 0) else np.nan
    gammahat = left_std / right_std
    mean_sq = np.mean(v ** 2)
    rhat = np.mean(np.abs(v)) ** 2 / mean_sq if mean_sq > 0 else np.nan
    rhatnorm = rhat * (gammahat ** 3 + 1) * (gammahat + 1) / (gammahat ** 2 + 1) ** 2
    alpha = _GAM[np.argmin((_R_GAM - rhatnorm) ** 2)]   # all-NaN -> index 0, as MATLAB's min
    k = np.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    return alpha, left_std * k, right_std * k


def _ref_features(block):
    alpha, bl, br = _ref_aggd(block)
    feat = [alpha, (bl + br) / 2]
    for shift in ([0, 1], [1, 0], [1, 1], [1, -1]):
        alpha, bl, br = _ref_aggd(block * np.roll(block, shift, axis=(0, 1)))
        feat += [alpha, (br - bl) * (gamma(2 / alpha) / gamma(1 / alpha)), bl, br]
    return feat


def _ref_mscn(im, window):
    mu = convolve(im, window, mode="nearest")
    sigma = np.sqrt(np.abs(convolve(np.square(im), window, mode="nearest") - np.square(mu)))
    out = (im - mu) / (sigma + 1)
    r = window.shape[0] // 2
    pad = np.pad(im, r, mode="edge")
    wf = [Fraction(float(w)) for w in window.ravel()]
    for y, x in np.argwhere(np.abs(im - mu) < REF_CANDIDATE_TOL):
        neigh = pad[y:y + 2 * r + 1, x:x + 2 * r + 1].ravel()
        exact = sum(w * Fraction(float(v)) for w, v in zip(wf, neigh))
        if float(exact) == im[y, x]:          # the correctly rounded mean is the pixel
            out[y, x] = 0.0
    return out


def _ref_niqe(plane):
    """NIQE of a float64 plane (already Y / gray, rounded), per-block loops."""
    with np.load(metrics.NIQE_PARAMS) as d:
        mu_p, cov_p, window = d["mu_pris_param"], d["cov_pris_param"], d["gaussian_window"]
    nh, nw = plane.shape[0] // 96, plane.shape[1] // 96
    img = plane[:nh * 96, :nw * 96]
    scales = []
    for scale in (1, 2):
        mscn = _ref_mscn(img, window)
        bs = 96 // scale
        feats = []
        for j in range(nw):
            for i in range(nh):
                feats.append(_ref_features(mscn[i * bs:(i + 1) * bs, j * bs:(j + 1) * bs]))
        scales.append(np.array(feats))
        if scale == 1:
            img = imresize(img, 0.5)
    dist = np.concatenate(scales, axis=1)
    mu_d = np.nanmean(dist, axis=0)
    cov_d = np.cov(dist[~np.isnan(dist).any(axis=1)], rowvar=False)
    diff = mu_p - mu_d
    return float(np.sqrt(np.squeeze(diff @ np.linalg.pinv((cov_p + cov_d) / 2) @ diff.T)))


def _plane(img):
    if img.ndim == 3:
        return utils.rgb2ycbcr(img, y_only=True).astype(np.float64)
    return img.astype(np.float64)


# ------------------------------------------------------------------------------------------
# Images
# ------------------------------------------------------------------------------------------

def _synthetic(h=192, w=288, seed=0):
    """RGB texture with a flat rectangle and a linear ramp (whose interior pixels equal their
    local mean exactly): exercises the exact-zero MSCN rule without shared data."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (h // 6 + 2, w // 6 + 2, 3))
    img = imresize(small, output_shape=(h, w)) + rng.normal(0, 4, (h, w, 3))
    img[20:50, 30:80] = (120, 60, 200)                           # flat colour patch
    img[110:150, 160:220] = np.arange(100, 140)[:, None, None]   # vertical gray ramp
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def bench(shared_data):
    return shared_data / "benchmark"


def _load(bench, rel):
    return utils.load_image(bench / rel)


# ------------------------------------------------------------------------------------------
# Tests
# ------------------------------------------------------------------------------------------

def test_baboon_matches_matlab(bench):
    q = metrics.niqe(_load(bench, "Set14/HR/baboon.png"))
    assert abs(q - BABOON_MATLAB) < 1e-3
    assert round(q, 4) == 5.7296


def test_params_file_and_notice():
    assert metrics.NIQE_PARAMS.is_file()
    with np.load(metrics.NIQE_PARAMS) as d:
        assert d["mu_pris_param"].shape == (1, 36)
        assert d["cov_pris_param"].shape == (36, 36)
        assert d["gaussian_window"].shape == (7, 7)
        assert abs(d["gaussian_window"].sum() - 1) < 1e-12
    notice = (metrics.NIQE_PARAMS.parent / "NIQE_NOTICE.md").read_text()
    assert "Copyright (c) 2011 The University of Texas at Austin" in notice
    assert "is acknowledged in\n    any publication" in notice


def test_synthetic_matches_loop_reference():
    img = _synthetic()
    q = metrics.niqe(img)
    assert math.isfinite(q)
    assert abs(q - _ref_niqe(_plane(img))) < REF_TOL


@pytest.mark.parametrize("case", ["baboon", "baby", "woman_bicubic_x4", "bridge_gray",
                                  "butterfly_noisy"])
def test_matches_loop_reference(bench, case):
    if case == "baboon":
        img = _load(bench, "Set14/HR/baboon.png")
    elif case == "baby":
        img = _load(bench, "Set5/HR/baby.png")
    elif case == "woman_bicubic_x4":
        img = imresize(_load(bench, "Set5/LR_bicubic/X4/womanx4.png"), 4)
    elif case == "bridge_gray":
        img = _load(bench, "Set14/HR/bridge.png")[:300, :290]
        assert img.ndim == 2
    else:
        hr = _load(bench, "Set5/HR/butterfly.png").astype(np.float64)
        noise = np.random.default_rng(3).normal(0, 10, hr.shape)
        img = np.clip(np.round(hr + noise), 0, 255).astype(np.uint8)
    assert abs(metrics.niqe(img) - _ref_niqe(_plane(img))) < REF_TOL


def test_mscn_exactly_zero_on_flat_and_ramp():
    """Interior pixels of a constant patch and of a linear ramp equal their exact local mean:
    MSCN exactly 0 (a floating-point filter alone leaves +-1e-14 of either sign there)."""
    with np.load(metrics.NIQE_PARAMS) as d:
        window = d["gaussian_window"]
    im = np.random.default_rng(1).integers(16, 236, (60, 80)).astype(np.float64)
    im[5:25, 5:35] = 98.0
    im[30:55, 40:75] = np.arange(30, 55)[:, None] * 3.0
    mscn = metrics._niqe_mscn(im, window)
    assert np.all(mscn[8:22, 8:32] == 0)
    assert np.all(mscn[33:52, 43:72] == 0)
    assert np.count_nonzero(mscn == 0) < 20 * 30 + 25 * 35      # the noise is not zeroed


def test_blur_raises_niqe(bench):
    hr = _load(bench, "Set5/HR/baby.png")
    bicubic = imresize(_load(bench, "Set5/LR_bicubic/X4/babyx4.png"), 4)
    assert 2 < metrics.niqe(hr) < metrics.niqe(bicubic)


def test_aggd_alpha_equals_bruteforce_argmin():
    gam, r_gam = metrics._aggd_grid()
    assert len(gam) == 9801 and gam[0] == 0.2 and gam[-1] == 10.0
    np.testing.assert_allclose(gam, _GAM, rtol=0, atol=1e-12)
    rng = np.random.default_rng(0)
    mids = (r_gam[:-1] + r_gam[1:]) / 2
    x = np.concatenate([rng.uniform(0, 1, 2000), r_gam[::97], mids[::89],
                        np.nextafter(mids[::89], 0), np.nextafter(mids[::89], 1),
                        [0.0, r_gam[0], r_gam[-1], 0.9, 1.0, 5.0, np.nan]])
    brute = gam[np.array([np.argmin((r_gam - v) ** 2) for v in x])]
    np.testing.assert_array_equal(metrics._aggd_alpha(x), brute)


def test_gray_equals_replicated_rgb():
    """R=G=B=g gives Y = 16 + 219 g / 255 (the BT.601 row sums to 219), rounded - never a .5
    tie, as 438 g is never an odd multiple of 255 - so the RGB image scores as that gray."""
    g = _synthetic()[:, :, 1]
    rgb = np.dstack([g, g, g])
    y = np.floor(16 + 219 * g.astype(np.float64) / 255 + 0.5).astype(np.uint8)
    q_rgb = metrics.niqe(rgb)
    assert math.isfinite(q_rgb) and math.isfinite(metrics.niqe(g))
    assert q_rgb == metrics.niqe(y)
    assert metrics.niqe(g[:, :, None]) == metrics.niqe(g)


def test_crop_border():
    img = _synthetic(h=210, w=300)
    assert metrics.niqe(img, crop_border=5) == metrics.niqe(img[5:-5, 5:-5])
    assert metrics.niqe(img, crop_border=0) == metrics.niqe(img)
    with pytest.raises(ValueError, match="after cropping 60 px"):
        metrics.niqe(img, crop_border=60)    # 90x180 left
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="crop_border"):
            metrics.niqe(img, crop_border=bad)


def test_too_small_raises():
    img = np.random.default_rng(0).integers(0, 256, (95, 200, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"95x200 px is smaller than one 96x96 block"):
        metrics.niqe(img)


def test_degenerate_inputs_raise():
    """A constant image has MSCN exactly 0: every block's AGGD fit is NaN, so the covariance -
    and NIQE - is undefined: a ValueError, not a silent NaN. Same for a single 96x96 block."""
    with pytest.raises(ValueError, match="only 0 of the 6 96x96 blocks .*flat or constant"):
        metrics.niqe(np.full((200, 300, 3), 128, dtype=np.uint8))
    one_block = _synthetic()[:96, :96]
    with pytest.raises(ValueError, match="only 1 of the 1 96x96 blocks"):
        metrics.niqe(one_block)


def test_bad_types():
    with pytest.raises(TypeError, match="uint8"):
        metrics.niqe(np.zeros((200, 200, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="numpy"):
        metrics.niqe([[0] * 200] * 200)
    with pytest.raises(ValueError, match="needs an"):
        metrics.niqe(np.zeros((200, 200, 4), dtype=np.uint8))
