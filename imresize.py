"""MATLAB-exact bicubic ``imresize`` for numpy arrays and torch tensors.

Why it matters: every published super-resolution number (SRCNN, VDSR, SRGAN, EDSR, RCAN...) was
measured on low-resolution images made with MATLAB ``imresize(HR, 1/4, 'bicubic')``, and the
"bicubic" baseline is MATLAB's x4 upscale. PIL and OpenCV "bicubic" differ from MATLAB (another
cubic coefficient, no antialiasing when shrinking, different pixel alignment), and a network trained
or evaluated on their LR images loses or gains tenths of a dB. This module reproduces MATLAB bit for
bit: ``imresize(modcrop(HR, 4), 1/4)`` equals the LR files of the EDSR benchmark package.

MATLAB's algorithm, per image dimension of length ``n`` resized by scale ``s`` to ``m``:

* kernel: Keys cubic with ``a = -0.5``, support ``[-2, 2]``; when shrinking (``s < 1``) it is
  stretched for antialiasing, ``h(x) = s * cubic(s * x)`` with width ``4 / s``;
* for output pixel ``x = 1..m`` (1-based) the centre in input coordinates is
  ``u = x / s + 0.5 * (1 - 1 / s)``; the taps are ``left + 0..P-1`` with
  ``left = floor(u - width / 2)`` and ``P = ceil(width) + 2``; weights ``h(u - index)`` are
  normalised to sum to 1 per output pixel;
* indices outside ``1..n`` are mirrored symmetrically (``0 -> 1``, ``-1 -> 2``, ``n+1 -> n``);
  tap columns whose weights are all zero are dropped;
* the output size is ``ceil(s * n)`` (or given; then ``s = m / n``); the dimension with the
  smaller scale is resized first (ties: rows first);
* each 1-D pass sums ``weight * value`` over the taps in double precision, in tap order; integer
  images are rounded (half away from zero) and saturated back to their type after EACH pass, as
  MATLAB's ``imresizemex`` returns the input's class.

Public functions:
    ``imresize(img, scale=None, output_shape=None)``: numpy ``(H,W)`` or ``(H,W,C)``.
    ``imresize_torch(x, scale=None, output_shape=None)``: torch ``(N,C,H,W)`` or ``(C,H,W)``.
"""
import functools
import math
import numbers

import numpy as np
import torch

CUBIC_A = -0.5
"""Keys' cubic convolution parameter used by MATLAB's 'bicubic' kernel."""

CUBIC_SUPPORT = 4.0
"""Width of the cubic kernel's support ([-2, 2]) at scale 1."""

WEIGHT_CACHE_SIZE = 128
"""How many (in_size, out_size, scale) weight tables (per device/dtype for torch) are kept."""


# --------------------------------------------------------------------------- weights
def _cubic(x):
    """MATLAB's cubic kernel (a = -0.5) of a float64 array, same shape, written as MATLAB does."""
    absx = np.abs(x)
    absx2 = absx ** 2
    absx3 = absx ** 3
    inner = (absx <= 1).astype(np.float64)
    outer = ((absx > 1) & (absx <= 2)).astype(np.float64)
    # (a+2)|x|^3 - (a+3)|x|^2 + 1 on |x|<=1 and a|x|^3 - 5a|x|^2 + 8a|x| - 4a on 1<|x|<=2
    return ((CUBIC_A + 2) * absx3 - (CUBIC_A + 3) * absx2 + 1) * inner \
        + (CUBIC_A * absx3 - 5 * CUBIC_A * absx2 + 8 * CUBIC_A * absx - 4 * CUBIC_A) * outer


@functools.lru_cache(maxsize=WEIGHT_CACHE_SIZE)
def contributions(in_size, out_size, scale):
    """MATLAB's ``contributions`` for one dimension.

    Args:
        in_size: input length n (int >= 1). out_size: output length m (int >= 1).
        scale: the scale s (float > 0) used in the coordinate map (given, or m / n).

    Returns:
        ``(indices, weights)``: read-only arrays of shape ``(m, P)``, int64 0-based input indices
        (already mirrored into ``0..n-1``) and float64 weights; each row of weights sums to 1.
    """
    kernel_width = CUBIC_SUPPORT
    antialias = scale < 1
    if antialias:
        kernel_width = kernel_width / scale
    x = np.arange(1, out_size + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    taps = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based, (m, P)
    dist = u[:, None] - indices
    weights = scale * _cubic(scale * dist) if antialias else _cubic(dist)
    weights = weights / np.sum(weights, axis=1, keepdims=True)
    # symmetric mirroring of 1-based indices: aux = [1..n, n..1]; 0-based result below
    period = 2 * in_size
    m0 = np.mod(indices.astype(np.int64) - 1, period)
    indices0 = np.where(m0 < in_size, m0, period - 1 - m0)
    keep = np.any(weights != 0, axis=0)
    indices0 = np.ascontiguousarray(indices0[:, keep])
    weights = np.ascontiguousarray(weights[:, keep])
    indices0.flags.writeable = False
    weights.flags.writeable = False
    return indices0, weights


# --------------------------------------------------------------------------- arguments
def _pair(value, name):
    """A scalar or a length-2 sequence -> tuple of two Python numbers (no validation of sign)."""
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        return (value, value)
    try:
        pair = tuple(value)
    except TypeError:
        raise ValueError(f"imresize.py: {name} must be a number or a pair, got {value!r}") from None
    if len(pair) != 2:
        raise ValueError(f"imresize.py: {name} must be a number or a pair (h, w), got {value!r}")
    return pair


def _plan(in_shape, scale, output_shape):
    """Resolve arguments like MATLAB.

    Args:
        in_shape: ``(H, W)`` of the image. scale: number or pair or None.
        output_shape: ``(h, w)`` or None.

    Returns:
        ``(out_shape, scales, order)``: output ``(h, w)``, per-dimension float scales, and the
        dimension order (0 = rows, 1 = columns) in which the passes run.
    """
    if in_shape[0] < 1 or in_shape[1] < 1:
        raise ValueError(f"imresize.py: empty image of size {tuple(in_shape)}")
    if scale is None and output_shape is None:
        raise ValueError("imresize.py: give either scale or output_shape")
    if scale is not None and output_shape is not None:
        raise ValueError("imresize.py: give scale or output_shape, not both")
    if scale is not None:
        scales = _pair(scale, "scale")
        for s in scales:
            if not isinstance(s, numbers.Real) or isinstance(s, bool) or not math.isfinite(s) \
                    or s <= 0:
                raise ValueError(f"imresize.py: scale must be positive and finite, got {scale!r}")
        scales = tuple(float(s) for s in scales)
        out_shape = tuple(int(math.ceil(s * n)) for s, n in zip(scales, in_shape))
    else:
        shape = _pair(output_shape, "output_shape")
        for v in shape:
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < 1:
                raise ValueError("imresize.py: output_shape must be two positive integers, "
                                 f"got {output_shape!r}")
        out_shape = tuple(int(v) for v in shape)
        scales = tuple(o / n for o, n in zip(out_shape, in_shape))
    order = (0, 1) if scales[0] <= scales[1] else (1, 0)  # stable sort of the scales
    return out_shape, scales, order


# --------------------------------------------------------------------------- numpy
def _round_saturate_np(x, dtype):
    """Round half away from zero and saturate float64 ``x`` into integer ``dtype``, as MATLAB
    casts (NaN -> 0). ``x`` is used as scratch space (overwritten)."""
    info = np.iinfo(dtype)
    np.clip(x, info.min, info.max, out=x)
    if info.min < 0:  # signed: round |x| and restore the sign
        r = np.floor(np.abs(x))
        r += (np.abs(x) - r) >= 0.5
        r = np.copysign(r, x)
    else:  # x >= 0 here: floor plus (fraction >= 0.5), exact unlike floor(x + 0.5)
        r = np.floor(x)
        np.subtract(x, r, out=x)
        r += x >= 0.5
    np.nan_to_num(r, copy=False, nan=0.0)
    return r.astype(dtype)


def _resize_axis0_np(a, indices, weights):
    """One 1-D pass along axis 0 of C-contiguous ``a`` ``(n, ...)`` -> float64 ``(m, ...)``.

    Sums ``weights[:, k] * a[indices[:, k]]`` for k = 0..P-1 in tap order (MATLAB's order), so
    the result is bit-identical to MATLAB's double accumulation. Gathering whole rows along the
    leading axis keeps every copy contiguous.
    """
    out_shape = (weights.shape[0],) + a.shape[1:]
    bshape = (-1,) + (1,) * (a.ndim - 1)
    acc = np.empty(out_shape, dtype=np.float64)
    term = np.empty(out_shape, dtype=np.float64)
    rows = np.empty(out_shape, dtype=a.dtype)
    for k in range(weights.shape[1]):
        np.take(a, indices[:, k], axis=0, out=rows)
        if k == 0:
            np.multiply(rows, weights[:, k].reshape(bshape), out=acc)
        else:
            np.multiply(rows, weights[:, k].reshape(bshape), out=term)
            acc += term
    return acc


def _resize_dim_np(a, dim, indices, weights, int_dtype):
    """Resize ``a`` ``(H,W[,C])`` along ``dim`` (0 rows, 1 columns); round into ``int_dtype``
    when it is not None. Columns are handled by swapping axes so gathers stay contiguous."""
    if dim == 1:
        a = np.ascontiguousarray(np.swapaxes(a, 0, 1))
    else:
        a = np.ascontiguousarray(a)
    out = _resize_axis0_np(a, indices, weights)
    if int_dtype is not None:
        out = _round_saturate_np(out, int_dtype)
    return np.swapaxes(out, 0, 1) if dim == 1 else out


def imresize(img, scale=None, output_shape=None):
    """MATLAB ``imresize(img, scale, 'bicubic')`` (or ``imresize(img, output_shape, ...)``).

    Args:
        img: numpy array ``(H,W)`` or ``(H,W,C)``, uint8 (or another integer type) or float.
        scale: a positive number, or a pair ``(scale_h, scale_w)``; output size
            ``ceil(scale * size)``.
        output_shape: ``(h, w)`` positive ints instead of ``scale`` (scale per dim = out / in).

    Returns:
        ``(h,w)`` or ``(h,w,C)`` array: integer input -> same integer dtype (MATLAB rounding half
        away from zero, saturated, after each 1-D pass); float input -> same float dtype, computed
        in float64, not rounded nor clipped (overshoot kept).

    Raises:
        ValueError: missing/both/non-positive scale or bad output_shape, ndim not 2 or 3, empty
            image, unsupported dtype.
    """
    if not isinstance(img, np.ndarray):
        raise ValueError(f"imresize.py: expected a numpy array, got {type(img).__name__}")
    if img.ndim not in (2, 3):
        raise ValueError(f"imresize.py: expected an (H,W) or (H,W,C) array, got shape {img.shape}")
    if img.size == 0:
        raise ValueError(f"imresize.py: empty image of shape {img.shape}")
    is_int = np.issubdtype(img.dtype, np.integer)
    if not (is_int or np.issubdtype(img.dtype, np.floating)):
        raise ValueError(f"imresize.py: unsupported dtype {img.dtype} (use uint8 or float)")
    out_shape, scales, order = _plan(img.shape[:2], scale, output_shape)
    int_dtype = img.dtype if is_int else None
    a = img
    for dim in order:
        idx, w = contributions(a.shape[dim], out_shape[dim], scales[dim])
        a = _resize_dim_np(a, dim, idx, w, int_dtype)
    return np.ascontiguousarray(a) if is_int else a.astype(img.dtype, order="C")


# --------------------------------------------------------------------------- torch
@functools.lru_cache(maxsize=WEIGHT_CACHE_SIZE)
def _contributions_torch(in_size, out_size, scale, device, dtype):
    """``contributions`` as tensors on ``device``: (indices int64 (m,P), weights dtype (m,P))."""
    idx, w = contributions(in_size, out_size, scale)
    return (torch.from_numpy(idx.copy()).to(device),
            torch.from_numpy(w.copy()).to(device=device, dtype=dtype))


def _resize_rows_torch(x, indices, weights):
    """One 1-D pass along dim 1 of ``x`` ``(B, n, W)`` -> ``(B, m, W)``.

    Sums ``weights[:, k] * x[:, indices[:, k]]`` over k = 0..P-1 in tap order, with separate
    multiply and add (no fused multiply-add), so float64 results equal :func:`imresize` bit for
    bit. Autograd-friendly (no in-place ops on tensors that need grad).
    """
    acc = None
    for k in range(weights.shape[1]):
        term = x.index_select(1, indices[:, k]) * weights[:, k].reshape(-1, 1)
        acc = term if acc is None else acc + term
    return acc


def _round_saturate_torch(x, dtype):
    """Round half away from zero and saturate into integer torch ``dtype`` (NaN -> 0)."""
    info = torch.iinfo(dtype)
    a = x.abs()
    r = a.floor()
    r = r + ((a - r) >= 0.5).to(r.dtype)
    r = torch.copysign(r, x)
    r = torch.nan_to_num(r, nan=0.0)
    return r.clamp(info.min, info.max).to(dtype)


def imresize_torch(x, scale=None, output_shape=None):
    """MATLAB bicubic ``imresize`` on tensors, same maths (and bits) as :func:`imresize`.

    Args:
        x: tensor ``(N,C,H,W)`` or ``(C,H,W)`` on any device; float (any range) or integer
            (e.g. uint8 in 0..255).
        scale: positive number or pair ``(scale_h, scale_w)``; output ``ceil(scale * size)``.
        output_shape: ``(h, w)`` instead of scale.

    Returns:
        Tensor ``(N,C,h,w)`` or ``(C,h,w)`` on the same device: float input -> same dtype
        (weights in that dtype; differentiable; not clamped); integer input -> same dtype,
        computed in float64 and MATLAB-rounded/saturated after each pass (equals
        :func:`imresize` exactly, as does float64 input).

    Raises:
        ValueError: bad arguments (see :func:`imresize`), ndim not 3 or 4, empty tensor, bool or
            complex dtype.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"imresize.py: expected a torch tensor, got {type(x).__name__}")
    if x.dim() not in (3, 4):
        raise ValueError(
            f"imresize.py: expected an (N,C,H,W) or (C,H,W) tensor, got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"imresize.py: empty tensor of shape {tuple(x.shape)}")
    if x.dtype == torch.bool or x.is_complex():
        raise ValueError(f"imresize.py: unsupported dtype {x.dtype} (use uint8 or float)")
    is_int = not x.is_floating_point()
    out_shape, scales, order = _plan(tuple(x.shape[-2:]), scale, output_shape)
    work_dtype = torch.float64 if is_int else x.dtype
    lead = x.shape[:-2]
    a = x.reshape(-1, *x.shape[-2:]).contiguous()  # (B, H, W): fast gathers along dim 1
    for dim in order:
        # columns: swap H and W so that every gather copies whole contiguous rows
        a = a if dim == 0 else a.transpose(1, 2).contiguous()
        idx, w = _contributions_torch(a.shape[1], out_shape[dim], scales[dim],
                                      x.device, work_dtype)
        a = _resize_rows_torch(a.to(work_dtype), idx, w)
        if is_int:
            a = _round_saturate_torch(a, x.dtype)
        a = a if dim == 0 else a.transpose(1, 2)
    return a.contiguous().reshape(*lead, *out_shape)
