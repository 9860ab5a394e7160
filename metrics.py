"""The image-quality metrics, each a plain function with its protocol in its docstring.

* :func:`psnr` and :func:`ssim` implement the evaluation protocol of the EDSR/RCAN/SwinIR papers
  (RCAN's ``Evaluate_PSNR_SSIM.m``): uint8 images, the Y channel of ``rgb2ycbcr`` as unrounded
  float in 16..235 for colour images (a single-channel image is compared on its raw gray values),
  ``shave`` pixels removed from every border, SSIM of Wang et al. (2004) with an 11x11 Gaussian
  window (sigma 1.5), 'valid' filtering, K1=0.01, K2=0.03, L=255;
* :func:`psnr_rgb`: the same PSNR over all RGB values;
* :func:`lr_psnr`: does the SR image explain its LR input (MATLAB-bicubic downscaled SR vs LR);
* :func:`niqe` is the no-reference NIQE of Mittal et al. (2013) with the protocol of PIRM 2018 /
  BasicSR, which reproduces MATLAB's official ``niqe_release`` (lower is better);
* :class:`LPIPS` is the learned perceptual distance of Zhang et al. (2018), v0.1 (lower is
  better); its weight files come through ``pretrained.py``;
* :data:`METRICS` names them all, in table order, with their label, better direction and
  decimals: the one table that evaluate.py, report.py and tables.py read.
"""
import functools
from collections import namedtuple
from pathlib import Path

import numpy as np
import torch
from torch import nn

import pretrained
import utils
from checkpoint import check_finite_state, state_mismatch
from imresize import imresize
from models import SMALL_KERNEL, VGG19_BLOCK_CHANNELS
from utils import RGB_TO_YCBCR_MATRIX, UINT8_MAX, YCBCR_OFFSET, rgb2ycbcr

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


Metric = namedtuple("Metric", "label better decimals csv_decimals")
"""One metric's entry in :data:`METRICS`: its table ``label``, the direction that is ``better``
(``'higher'`` / ``'lower'``), and the ``decimals`` shown in tables and kept in CSV files."""

METRICS = {
    "psnr": Metric("PSNR (dB)", "higher", 2, 4),          # psnr(): Y channel, scale px shaved
    "ssim": Metric("SSIM", "higher", 4, 6),               # ssim(): Y channel, scale px shaved
    "psnr_rgb": Metric("PSNR-RGB (dB)", "higher", 2, 4),  # psnr_rgb(): all RGB values
    "lr_psnr": Metric("LR-PSNR (dB)", "higher", 2, 4),    # lr_psnr(): downscaled SR vs the LR input
    "niqe": Metric("NIQE", "lower", 3, 4),                # niqe(): no reference
    "lpips": Metric("LPIPS", "lower", 4, 6),              # LPIPS: learned distance to the HR image
}
"""Every metric evaluate.py can compute, by name, in table order (JSON keeps full precision)."""

# --------------------------------------------------------------------------------------------
# Full-reference fidelity: PSNR, SSIM, LR-PSNR
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


@functools.lru_cache(maxsize=1)
# --------------------------------------------------------------------------------------------
# No-reference quality: NIQE
# --------------------------------------------------------------------------------------------

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


def _niqe_plane(img, crop_border):
    """Steps 1-3 of :func:`niqe`: the float64 plane (Y of a colour image, rounded; gray values
    as they are) with ``crop_border`` px cropped and cut to whole 96x96 blocks, and the number
    of blocks down and across, ``(plane, nh, nw)``. TypeError / ValueError as :func:`niqe`."""
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
    return im[:nh * NIQE_BLOCK, :nw * NIQE_BLOCK], nh, nw


def _niqe_features(im, nh, nw, window):
    """Step 4 of :func:`niqe`: the 36 features of each of the ``nh x nw`` blocks of the plane
    ``im`` (18 at the original scale, 18 at half scale), ``(nh*nw, 36)`` float64, the blocks in
    MATLAB blkproc's column-major order."""
    feats = []
    for scale in (1, 2):
        mscn = _niqe_mscn(im, window)
        bs = NIQE_BLOCK // scale
        blocks = mscn.reshape(nh, bs, nw, bs).transpose(2, 0, 1, 3).reshape(-1, bs, bs)
        feats.append(_niqe_block_features(blocks))
        if scale == 1:
            im = imresize(im, 0.5)                               # float64, not rounded
    return np.concatenate(feats, axis=1)


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
    im, nh, nw = _niqe_plane(img, crop_border)                  # steps 1-3
    mu_pris, cov_pris, window = _niqe_params()
    feat = _niqe_features(im, nh, nw, window)                    # step 4: (blocks, 36)
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


# --------------------------------------------------------------------------------------------
# LPIPS (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual
# Metric", CVPR 2018), version 0.1 of the official release; its files: pretrained.py
# --------------------------------------------------------------------------------------------
LPIPS_SHIFT = (-0.030, -0.088, -0.188)   # ScalingLayer: (x - shift) / scale, x in [-1,1]
LPIPS_SCALE = (0.458, 0.448, 0.450)      # (ImageNet mean/std expressed on the [-1,1] range)
LPIPS_NORM_EPS = 1e-10                   # unit-normalisation of channels: f / (||f||_2 + eps)
LPIPS_DROPOUT = 0.5                      # dropout before each linear layer (identity in eval)
# AlexNet ``features`` (torchvision layout): (out channels, kernel, stride, padding) of its five
# convs, each followed by a ReLU; a max-pool (3x3, stride 2) after the 1st and 2nd ReLU.
ALEXNET_CONVS = ((64, 11, 4, 2), (192, 5, 1, 2), (384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1))
ALEXNET_POOL_AFTER = (0, 1)              # conv indices followed by a max-pool
ALEXNET_POOL_KERNEL, ALEXNET_POOL_STRIDE = 3, 2
VGG16_BLOCK_SIZES = (2, 2, 3, 3, 3)      # 3x3 convs before each max-pool of VGG16
VGG_POOL = 2                             # VGG max-pools: 2x2, stride 2

LPIPS_MIN_SIZE = {"alex": 31, "vgg": 16}
"""Smallest image side each backbone accepts: AlexNet's relu5 needs a 3x3 input to its second
max-pool (conv1 output >= 7 px: side >= 31); VGG16's relu5_3 lies after 4 halvings (>= 16)."""


def _alexnet_features():
    """The layers of torchvision's ``alexnet().features`` up to its 5th ReLU (indices 0..11: convs
    at 0, 3, 6, 8, 10) and the indices of the 5 ReLUs LPIPS reads (relu1..relu5)."""
    layers, taps, in_ch = [], [], 3
    for k, (out_ch, kernel, stride, pad) in enumerate(ALEXNET_CONVS):
        layers += [nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=pad),
                   nn.ReLU(inplace=False)]
        taps.append(len(layers) - 1)
        if k in ALEXNET_POOL_AFTER:
            layers.append(nn.MaxPool2d(ALEXNET_POOL_KERNEL, ALEXNET_POOL_STRIDE))
        in_ch = out_ch
    return nn.Sequential(*layers), tuple(taps)


def _vgg16_features():
    """The layers of torchvision's ``vgg16().features`` up to relu5_3 (indices 0..29: convs at
    0, 2, 5, 7, 10, ...) and the indices of the ReLUs LPIPS reads (relu1_2, relu2_2, relu3_3,
    relu4_3, relu5_3: the last of each block)."""
    layers, taps, in_ch = [], [], 3
    for block, (n_convs, ch) in enumerate(zip(VGG16_BLOCK_SIZES, VGG19_BLOCK_CHANNELS)):
        if block:
            layers.append(nn.MaxPool2d(kernel_size=VGG_POOL, stride=VGG_POOL))
        for _ in range(n_convs):
            layers += [nn.Conv2d(in_ch, ch, SMALL_KERNEL, padding=SMALL_KERNEL // 2),
                       nn.ReLU(inplace=False)]
            in_ch = ch
        taps.append(len(layers) - 1)
    return nn.Sequential(*layers), tuple(taps)


class _LPIPSBackbone(nn.Module):
    """``features`` (torchvision's key layout, ``features.0.weight`` ...) returning the
    activations of the 5 tapped ReLUs: ``(N,3,H,W)`` normalised input -> list of 5
    ``(N,C_k,H_k,W_k)``."""

    def __init__(self, net):
        super().__init__()
        self.features, self.taps = _alexnet_features() if net == "alex" else _vgg16_features()
        self.channels = tuple(self.features[t - 1].out_channels for t in self.taps)

    def forward(self, x):
        outs = []
        for k, layer in enumerate(self.features):
            x = layer(x)
            if k in self.taps:
                outs.append(x)
        return outs


class _LPIPSLinear(nn.Module):
    """The release's ``NetLinLayer``: dropout then a 1x1 conv to one channel, no bias (key
    ``model.1.weight``, shape ``(1,C,1,1)``). ``(N,C,H,W) -> (N,1,H,W)``."""

    def __init__(self, channels):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(LPIPS_DROPOUT), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x):
        return self.model(x)


class LPIPS(nn.Module):
    """LPIPS v0.1 perceptual distance (lower = more similar), official weights only.

    ScalingLayer (input mapped from [0,1] to [-1,1], then ``(x - LPIPS_SHIFT) / LPIPS_SCALE``),
    the 5 ReLU activations of the ImageNet backbone (AlexNet relu1..5 or VGG16 relu1_2 ..
    relu5_3), each unit-normalised over channels, squared difference, the learned 1x1 linear
    layer (non-negative weights of the release, no bias), spatial mean, sum over the 5 layers.
    Frozen and always in eval mode (dropout off), but differentiable w.r.t. its inputs.

    Args:
        net: 'alex' or 'vgg' (see :data:`LPIPS_NETS`).
        backbone_weights: ``None`` -> torchvision's official file (:data:`LPIPS_BACKBONE_URLS`)
            through the torch.hub cache; or a path to a state dict of the whole torchvision
            model or of its ``features`` (keys ``features.0.weight`` or ``0.weight``).
        linear_weights: ``None`` -> the release's file (:data:`LPIPS_LINEAR_URLS`) through the
            torch.hub cache (saved as :data:`LPIPS_LINEAR_CACHE_NAMES`); or a path to it
            (keys ``lin0.model.1.weight`` ... ``lin4.model.1.weight``).

    Raises:
        RuntimeError: a file to be had from the internet cannot be (offline): the message names
            each URL, the cache file it would be saved as and how to provide it. Weights are
            never left random.
        FileNotFoundError / ValueError: a given path is missing, not a torch file, or lacks /
            mis-shapes the needed tensors (the message names the file).

    Shapes: ``forward(x, y)``: ``(N,3,H,W)`` float in [0,1] each (same shape, sides >=
    ``LPIPS_MIN_SIZE[net]``) -> ``(N,)`` float distances >= 0 (0 for identical images).
    """

    def __init__(self, net="alex", backbone_weights=None, linear_weights=None):
        super().__init__()
        pretrained.check_lpips_net(net)
        self.net = net
        self.backbone = _LPIPSBackbone(net)
        self.n_layers = len(self.backbone.channels)
        for k, ch in enumerate(self.backbone.channels):
            setattr(self, f"lin{k}", _LPIPSLinear(ch))
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).reshape(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).reshape(1, 3, 1, 1),
                             persistent=False)
        loaded = pretrained.lpips_weights(net, backbone_weights, linear_weights)
        self._load_backbone(*loaded["backbone"])
        self._load_linear(*loaded["linear"])
        self.sources = {part: source for part, (_, source) in loaded.items()}
        for p in self.parameters():
            p.requires_grad_(False)
        self.train(False)
        # channels_last convs: 1.28x faster on the CPU (AlexNet, 500x480 pair; same values)
        self.to(memory_format=torch.channels_last)

    def _load_backbone(self, state, source):
        """Copy the ``features`` convs of a torchvision state dict (``features.``-prefixed or
        not; other keys ignored) into the backbone; ValueError naming ``source`` if some are
        missing or mis-shaped."""
        feats = pretrained.features_by_layer(state)
        needed = self.backbone.features.state_dict()
        subset = {k: feats[k] for k in needed if isinstance(feats.get(k), torch.Tensor)}
        why = state_mismatch(needed, subset)
        if why:
            raise ValueError(f"{source}: not the torchvision {self.net} weights LPIPS needs "
                             f"({pretrained.LPIPS_BACKBONE_URLS[self.net]}): {why}")
        check_finite_state(subset, source)
        self.backbone.features.load_state_dict(subset)

    def _load_linear(self, state, source):
        """Load the ``lin{k}.model.1.weight`` tensors (strict); ValueError naming ``source``."""
        needed = {k: v for k, v in self.state_dict().items() if k.startswith("lin")}
        why = state_mismatch(needed, {k: v for k, v in state.items()
                                       if isinstance(v, torch.Tensor)})
        if why:
            raise ValueError(f"{source}: not the LPIPS v0.1 {self.net} linear weights "
                             f"({pretrained.LPIPS_LINEAR_URLS[self.net]}): {why}")
        check_finite_state({k: state[k] for k in needed}, source)
        self.load_state_dict(state, strict=False)

    def train(self, mode=True):
        """Always stays in eval mode (dropout off), whatever a parent's ``.train()`` asks."""
        return super().train(False)

    def forward(self, x, y):
        """``(N,3,H,W)`` float in [0,1] twice -> ``(N,)`` LPIPS distances (gradients flow)."""
        for name, t in (("x", x), ("y", y)):
            if not isinstance(t, torch.Tensor) or not torch.is_floating_point(t) \
                    or t.dim() != 4 or t.shape[1] != 3:
                raise ValueError(f"LPIPS: {name} must be a float (N,3,H,W) tensor, got "
                                 f"{getattr(t, 'dtype', type(t).__name__)} "
                                 f"{tuple(getattr(t, 'shape', ()))}")
        if x.shape != y.shape:
            raise ValueError(f"LPIPS: shape mismatch, {tuple(x.shape)} vs {tuple(y.shape)}")
        if min(x.shape[2:]) < LPIPS_MIN_SIZE[self.net]:
            raise ValueError(f"LPIPS ({self.net}): images of {x.shape[2]}x{x.shape[3]} px are "
                             f"smaller than the {LPIPS_MIN_SIZE[self.net]} px its backbone needs")
        both = (torch.cat([x, y]) * 2 - 1 - self.shift) / self.scale   # [0,1] -> [-1,1] -> scaled
        both = both.contiguous(memory_format=torch.channels_last)
        n = x.shape[0]
        total = 0
        for k, feat in enumerate(self.backbone(both)):
            feat = feat / (torch.sqrt(torch.sum(feat * feat, dim=1, keepdim=True)) + LPIPS_NORM_EPS)
            diff = (feat[:n] - feat[n:]) ** 2
            total = total + getattr(self, f"lin{k}")(diff).mean(dim=(1, 2, 3))
        return total


def lpips_score(model, sr, hr, shave=0):
    """LPIPS distance between two uint8 images with a :class:`metrics.LPIPS` ``model``.

    Args:
        model: a ``metrics.LPIPS`` (its device is used).
        sr, hr: uint8 ``(H,W,3)`` or gray ``(H,W)`` / ``(H,W,1)`` (replicated to RGB), same shape.
        shave: pixels removed from every border first (the protocol shaves the scale).

    Returns:
        float >= 0 (0 for identical images); lower is more similar.

    Raises:
        TypeError / ValueError: not uint8, shapes differ, a bad ``shave``, or an image (after
            the shave) smaller than the backbone accepts (``metrics.LPIPS_MIN_SIZE``).
    """
    check_uint8("lpips_score", sr=sr, hr=hr)
    if sr.shape != hr.shape:
        raise ValueError(f"lpips_score: shape mismatch, sr {sr.shape} vs hr {hr.shape}")
    if isinstance(shave, bool) or int(shave) != shave or shave < 0:
        raise ValueError(f"lpips_score: shave must be a non-negative integer, got {shave!r}")
    shave = int(shave)
    h, w = sr.shape[:2]
    if h <= 2 * shave or w <= 2 * shave:
        raise ValueError(f"lpips_score: image {sr.shape} too small to shave {shave} px per side")
    device = model.shift.device
    tensors = []
    for img in (sr, hr):
        t = utils.image_to_tensor(np.ascontiguousarray(img[shave:h - shave, shave:w - shave]))
        tensors.append(t.expand(-1, 3, -1, -1) if t.shape[1] == 1 else t)
    with torch.inference_mode():
        return float(model(tensors[0].to(device), tensors[1].to(device))[0])
