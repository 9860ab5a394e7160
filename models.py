"""Networks: the SRResNet generator, the SRGAN discriminator, the truncated VGG19 of the
content loss, the baselines (TransposedConvSR, SRCNN, FSRCNN, VDSR), the checkpoint format and
loading a trained generator from a checkpoint.

Conventions shared by every generator (the contract of ``solver.py``, ``super_resolve.py`` and
``evaluate.py``):

* input: an LR RGB batch ``(N,3,h,w)`` float in [0,1];
* output: an SR RGB batch ``(N,3,s*h,s*w)`` float, approximately in [0,1]. It is **not clamped**
  in ``forward`` (clamping would zero the gradient of out-of-range pixels during training);
  ``super_resolve`` rounds and clips when it makes an image.
* attributes ``scale`` (int) and ``y_only`` (True for SRCNN/FSRCNN/VDSR, whose loss should be
  computed on the Y channel through ``forward_y``).

SRResNet and the discriminator follow Fig. 4 of Ledig et al., "Photo-Realistic Single Image
Super-Resolution Using a Generative Adversarial Network", CVPR 2017. One deliberate deviation:
the paper scales LR inputs to [0,1] but HR targets to [-1,1] (tanh-free output compared with
[-1,1] images); here the HR/SR range is [0,1] as well, so the generator's output is directly an
image, the MSE is 1/4 of the paper's (same minimiser), and all models share one range. The
discriminator maps its [0,1] input to the paper's [-1,1] internally.

Everything here is ``channels_last`` friendly: no ``.view`` on possibly non-contiguous tensors.
"""
import errno
import inspect
import math
import numbers
import os
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from imresize import imresize_torch
from utils import WriteError, atomic_write, rgb2ycbcr_torch, ycbcr2rgb_torch
from runtime import get_rng_state, unwrap

# --------------------------------------------------------------------------------------------
# SRResNet (generator)
# --------------------------------------------------------------------------------------------
LARGE_KERNEL = 9      # the 9x9 convolutions at the input and output of SRResNet (paper Fig. 4)
SMALL_KERNEL = 3      # every other convolution of SRResNet and the discriminator is 3x3
PIXEL_SHUFFLE_X2 = 2  # each sub-pixel block upsamples x2 (a x3 model uses one x3 block)


def _conv(in_ch, out_ch, kernel, stride=1, padding_mode="zeros"):
    """``kernel x kernel`` convolution with 'same' padding (for stride 1; zeros, or e.g. edge
    replication with ``padding_mode='replicate'``), with bias."""
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2,
                     padding_mode=padding_mode)


def _check_int_scale(scale, name):
    """Return ``scale`` as an int >= 2, or raise ValueError naming the model ``name``."""
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or scale != int(scale) \
            or int(scale) < 2:
        raise ValueError(f"{name}: scale must be an integer >= 2, got {scale!r}")
    return int(scale)


def _upsample_factors(scale):
    """The sub-pixel factors of an SRResNet of ``scale``: [2]*log2(scale), or [3] for x3."""
    scale = _check_int_scale(scale, "SRResNet")
    if scale == 3:
        return [3]
    if scale & (scale - 1):
        raise ValueError(f"SRResNet: scale must be a power of 2 (2, 4, 8, ...) or 3, got {scale}")
    return [PIXEL_SHUFFLE_X2] * int(math.log2(scale))


def _norm(n_channels, batch_norm):
    """BatchNorm2d(n_channels), or the identity when ``batch_norm`` is False."""
    return nn.BatchNorm2d(n_channels) if batch_norm else nn.Identity()


class ResidualBlock(nn.Module):
    """conv3x3-BN-PReLU-conv3x3-BN plus identity skip (without the BNs when ``batch_norm`` is
    False). ``(N,C,H,W) -> (N,C,H,W)``."""

    def __init__(self, n_channels, batch_norm=True):
        super().__init__()
        self.body = nn.Sequential(
            _conv(n_channels, n_channels, SMALL_KERNEL), _norm(n_channels, batch_norm), nn.PReLU(),
            _conv(n_channels, n_channels, SMALL_KERNEL), _norm(n_channels, batch_norm),
        )

    def forward(self, x):
        return x + self.body(x)


class SubPixelBlock(nn.Module):
    """conv3x3 to ``f*f*C`` channels, PixelShuffle(f), PReLU. ``(N,C,H,W) -> (N,C,fH,fW)``."""

    def __init__(self, n_channels, factor=PIXEL_SHUFFLE_X2):
        super().__init__()
        self.conv = _conv(n_channels, n_channels * factor ** 2, SMALL_KERNEL)
        self.shuffle = nn.PixelShuffle(factor)
        self.act = nn.PReLU()

    def forward(self, x):
        return self.act(self.shuffle(self.conv(x)))


class ResizeConvBlock(nn.Module):
    """Nearest-neighbour upsampling by ``factor``, conv3x3, PReLU: ``(N,C,H,W) -> (N,C,fH,fW)``.

    The "resize-convolution" of Odena, Dumoulin and Olah ("Deconvolution and Checkerboard
    Artifacts", Distill 2016), which ESRGAN uses in place of sub-pixel layers: every output
    pixel is made by the same kernel, so the layer cannot paint the periodic f x f pattern
    that a sub-pixel layer produces when its f*f sub-kernels drift apart (as they do under the
    VGG and adversarial losses of stage 2). Same FLOPs as :class:`SubPixelBlock`.
    """

    def __init__(self, n_channels, factor=PIXEL_SHUFFLE_X2):
        super().__init__()
        self.up = nn.Upsample(scale_factor=factor, mode="nearest")
        self.conv = _conv(n_channels, n_channels, SMALL_KERNEL)
        self.act = nn.PReLU()

    def forward(self, x):
        return self.act(self.conv(self.up(x)))


UPSAMPLERS = {"pixel_shuffle": SubPixelBlock, "nearest": ResizeConvBlock}
"""SRResNet upsampling blocks: the paper's sub-pixel convolution, or nearest + conv."""


class SRResNet(nn.Module):
    """SRResNet of Ledig et al. (Fig. 4), the SRGAN generator.

    9x9 conv + PReLU; ``n_blocks`` residual blocks; conv3x3 + BN with a long skip from the output
    of the first conv; log2(scale) sub-pixel x2 blocks (one x3 block for scale 3); 9x9 conv to RGB.
    1,549,462 parameters at the defaults (see tests/test_models.py for the count).

    Args:
        scale: 2, 4, 8, ... (a power of 2) or 3.
        n_blocks: residual blocks B (paper: 16).
        n_channels: feature maps (paper: 64).
        batch_norm: the paper's BatchNorm layers (default). ``False`` drops them, as EDSR (Lim et
            al. 2017) and ESRGAN (Wang et al. 2018) do: BN normalises with the statistics of the
            training batch, which differ from those of a whole test image, and the difference
            shows as colour and brightness shifts (a documented option, used by the CPU demo).
        upsample: ``'pixel_shuffle'`` (the paper's sub-pixel blocks) or ``'nearest'``
            (:class:`ResizeConvBlock`, free of checkerboard artefacts; used by the CPU demo).
        bicubic_skip: ``False`` (paper): the network outputs the image. ``True``: it outputs
            the difference to a bicubic upscale of its input, which is added back (the
            residual learning of VDSR, Kim et al. 2016) -- colours and low frequencies then
            come from the input and cannot drift, which a small model trained for minutes on a
            few photos otherwise does (a documented option, used by the CPU demo).

    Shapes: ``(N,3,h,w)`` float in [0,1] -> ``(N,3,scale*h,scale*w)`` float, ~[0,1], unclamped
    (no tanh: see the module docstring for the [0,1] vs [-1,1] choice).
    """

    y_only = False

    def __init__(self, scale=4, n_blocks=16, n_channels=64, batch_norm=True,
                 upsample="pixel_shuffle", bicubic_skip=False):
        super().__init__()
        self.bicubic_skip = bool(bicubic_skip)
        factors = _upsample_factors(scale)
        if upsample not in UPSAMPLERS:
            raise ValueError(f"SRResNet: upsample must be one of {sorted(UPSAMPLERS)}, "
                             f"got {upsample!r}")
        if n_blocks < 1 or n_channels < 1:
            raise ValueError(f"SRResNet: n_blocks and n_channels must be >= 1, "
                             f"got {n_blocks}, {n_channels}")
        self.scale = int(scale)
        self.head = nn.Sequential(_conv(3, n_channels, LARGE_KERNEL), nn.PReLU())
        self.body = nn.Sequential(
            *[ResidualBlock(n_channels, batch_norm) for _ in range(n_blocks)],
            _conv(n_channels, n_channels, SMALL_KERNEL), _norm(n_channels, batch_norm),
        )
        self.upsample = nn.Sequential(*[UPSAMPLERS[upsample](n_channels, f) for f in factors])
        self.tail = _conv(n_channels, 3, LARGE_KERNEL)

    def forward(self, x):
        """``(N,3,h,w)`` in [0,1] -> ``(N,3,scale*h,scale*w)`` ~[0,1] (unclamped)."""
        head = self.head(x)
        out = self.tail(self.upsample(head + self.body(head)))
        if self.bicubic_skip:
            out = out + nn.functional.interpolate(x, scale_factor=self.scale, mode="bicubic",
                                                  align_corners=False)
        return out


# --------------------------------------------------------------------------------------------
# Discriminator
# --------------------------------------------------------------------------------------------
LEAKY_SLOPE = 0.2   # LeakyReLU slope of the discriminator (paper: alpha = 0.2)
DISC_POOL = 6       # spatial size before the dense layers: 96 / 2^4 = 6 in the paper


class Discriminator(nn.Module):
    """SRGAN discriminator (Fig. 4): conv3x3 + LeakyReLU, then ``n_blocks - 1`` conv-BN-LeakyReLU
    layers whose channels double every second layer (64,128,128,256,256,512,512) and whose strides
    alternate 2,1,2,1,... (the first of them has stride 2), adaptive average pooling to 6x6
    (the identity for 96x96 inputs, so the paper's 512x6x6 features; any input size works),
    dense ``fc_size`` + LeakyReLU, dense 1.

    Shapes: ``(N,3,H,W)`` float in [0,1] -> ``(N,)`` float logits (no sigmoid: use
    ``BCEWithLogitsLoss``). The input is mapped to [-1,1] (the paper's HR range) inside.
    """

    def __init__(self, n_channels=64, n_blocks=8, fc_size=1024):
        super().__init__()
        if n_blocks < 1 or n_channels < 1 or fc_size < 1:
            raise ValueError(f"Discriminator: n_channels, n_blocks, fc_size must be >= 1, "
                             f"got {n_channels}, {n_blocks}, {fc_size}")
        layers = [_conv(3, n_channels, SMALL_KERNEL), nn.LeakyReLU(LEAKY_SLOPE)]
        in_ch = n_channels
        for k in range(1, n_blocks):
            out_ch = n_channels * 2 ** (k // 2)     # 64,128,128,256,256,512,512 for k = 1..7
            stride = 2 if k % 2 == 1 else 1          # 2,1,2,1,2,1,2
            layers += [_conv(in_ch, out_ch, SMALL_KERNEL, stride), nn.BatchNorm2d(out_ch),
                       nn.LeakyReLU(LEAKY_SLOPE)]
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(DISC_POOL)
        self.classifier = nn.Sequential(
            nn.Linear(in_ch * DISC_POOL * DISC_POOL, fc_size), nn.LeakyReLU(LEAKY_SLOPE),
            nn.Linear(fc_size, 1),
        )

    def forward(self, x):
        """``(N,3,H,W)`` float in [0,1] -> ``(N,)`` logits (positive = "real")."""
        feats = self.pool(self.features(x * 2 - 1))          # [0,1] -> [-1,1]
        return self.classifier(torch.flatten(feats, 1)).flatten()


# --------------------------------------------------------------------------------------------
# Truncated VGG19 (content loss)
# --------------------------------------------------------------------------------------------
VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
"""torchvision's ImageNet VGG19 (IMAGENET1K_V1) weights; cached in ``torch.hub.get_dir()``."""
VGG19_BLOCK_SIZES = (2, 2, 4, 4, 4)           # 3x3 convs before each of the 5 max-pools
VGG19_BLOCK_CHANNELS = (64, 128, 256, 512, 512)
IMAGENET_MEAN = (0.485, 0.456, 0.406)          # torchvision's input normalisation
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_WEIGHTS = "random"                      # TruncatedVGG19(weights='random'): tests only


def vgg19_feature_end(i, j):
    """Number of layers of ``vgg19.features`` that end just after the ReLU of the ``j``-th conv
    before the ``i``-th max-pool (phi_{i,j} of the SRGAN paper): 9 for (2,2), 36 for (5,4).
    Invalid ``(i, j)`` -> ValueError."""
    n_pools = len(VGG19_BLOCK_SIZES)
    if not (isinstance(i, int) and isinstance(j, int) and 1 <= i <= n_pools
            and 1 <= j <= VGG19_BLOCK_SIZES[i - 1]):
        raise ValueError(f"invalid VGG19 depth phi_(i={i!r}, j={j!r}): need 1 <= i <= {n_pools} "
                         f"and 1 <= j <= the number of convs in block i {VGG19_BLOCK_SIZES}")
    # a block of n convs has 2n layers (conv, ReLU) plus its max-pool
    start = sum(2 * n + 1 for n in VGG19_BLOCK_SIZES[:i - 1])
    return start + 2 * j


def _vgg19_features(end):
    """``nn.Sequential`` of the first ``end`` layers of torchvision's ``vgg19().features``, with the
    same indices (conv at 0, 2, 5, ...; max-pools at 4, 9, 18, 27, 36). ReLUs are not in-place:
    in-place ReLUs would overwrite the activations that autograd needs for the input gradient."""
    layers, in_ch = [], 3
    for n_convs, ch in zip(VGG19_BLOCK_SIZES, VGG19_BLOCK_CHANNELS):
        for _ in range(n_convs):
            layers += [nn.Conv2d(in_ch, ch, SMALL_KERNEL, padding=SMALL_KERNEL // 2),
                       nn.ReLU(inplace=False)]
            in_ch = ch
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers[:end])


def _torch_load_dict(path, what):
    """``torch.load(path, weights_only=True)`` on the CPU; returns a dict or raises a clear error."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder, not a {what} file; give the .pth file in it "
                                f"(e.g. {path / 'srresnet.pth'})")
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors come in many types
        raise ValueError(f"{path}: not a readable torch file ({load_failure_reason(path, exc)})") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a dict ({what}), found {type(obj).__name__}")
    return obj


TORCH_ZIP_MAGIC = b"PK\x03\x04"
"""First bytes of a file written by ``torch.save`` (a zip archive since PyTorch 1.6)."""

PICKLE_PROTO = b"\x80"
"""First byte of a pickle of protocol >= 2 (a raw ``pickle.dump``, not ``torch.save``)."""


def load_failure_reason(path, exc):
    """One line saying why ``torch.load`` failed on ``path`` (torch's own text spans many lines)."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(TORCH_ZIP_MAGIC))
    except OSError as e:
        return f"cannot read it: {e}"
    if not head:
        return "the file is empty"
    pickled = re.search(r"GLOBAL (\S+?)(?:\s|$)", str(exc))
    if pickled or (head == TORCH_ZIP_MAGIC and "Weights only load failed" in str(exc)):
        # torch.save(model) or a crafted file: pickled code/objects, refused by weights_only.
        # Never suggest weights_only=False (torch's own advice): that would run the code.
        what = pickled.group(1) if pickled else "code or objects"
        return (f"it holds pickled {what}, not plain tensors, and will not be loaded (loading it "
                f"could run code); a checkpoint must hold state_dict() tensors only")
    if head[:1] == PICKLE_PROTO:
        return ("a raw pickle file, not written by torch.save; it will not be loaded (pickles "
                "can run code)")
    if head == TORCH_ZIP_MAGIC:
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
        return f"truncated or corrupt torch zip archive: {type(exc).__name__}: {first}"
    return f"not written by torch.save: it starts with {head!r}"


def _state_mismatch(expected, found):
    """One line listing how state dict ``found`` differs from ``expected`` (missing/unexpected
    keys, shape mismatches), with a few examples of each."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [k for k in expected if k in found and isinstance(found[k], torch.Tensor)
              and found[k].shape != expected[k].shape]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s), e.g. {missing[:3]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:3]}")
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} tensor(s) of another shape, e.g. {k!r}: checkpoint "
                     f"{tuple(found[k].shape)}, model {tuple(expected[k].shape)}")
    return "; ".join(parts)


def vgg19_hub_cache_file():
    """Where ``torch.hub`` keeps the official VGG19 file once downloaded (it may not exist)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(VGG19_URL).name


def _download_vgg19():
    """The official VGG19 state dict through the torch.hub cache; RuntimeError if unavailable.
    Returns ``(state_dict, description of where it came from)``."""
    cache_dir = Path(torch.hub.get_dir()) / "checkpoints"
    try:
        state = torch.hub.load_state_dict_from_url(VGG19_URL, map_location="cpu",
                                                   check_hash=True, weights_only=True)
    except Exception as exc:  # URLError, HTTPError, hash mismatch, corrupt cache file ...
        raise RuntimeError(
            f"could not get the VGG19 weights from {VGG19_URL} (torch hub cache: {cache_dir}): "
            f"{type(exc).__name__}: {exc}. Download that file by hand and pass its path "
            f"(TruncatedVGG19(weights=PATH), config key vgg.weights), or put it in {cache_dir}."
        ) from exc
    return state, f"{VGG19_URL} (cached in {cache_dir})"


class TruncatedVGG19(nn.Module):
    """ImageNet VGG19 truncated at phi_{i,j} (after the ReLU of the ``j``-th conv before the
    ``i``-th max-pool): phi_{2,2} = ``features[:9]`` (the paper's VGG22), phi_{5,4} =
    ``features[:36]`` (VGG54). Frozen and always in eval mode, but differentiable w.r.t. its input.

    Args:
        i, j: the depth; ``i`` in 1..5, ``j`` in 1..(2,2,4,4,4)[i-1], else ValueError.
        weights: ``None`` -> torchvision's official file (``VGG19_URL``) through the torch.hub
            cache (RuntimeError with instructions if it cannot be downloaded); a path -> a state
            dict of ``vgg19`` or of its ``features`` (keys ``features.0.weight`` or ``0.weight``;
            layers beyond the truncation are ignored); a file that lacks a needed layer ->
            ValueError. ``'random'`` keeps the random init: for tests only.

    Shapes: ``(N,3,H,W)`` float in [0,1] -> ``(N,C,H/2^(i-1),W/2^(i-1))`` features, C = 64, 128,
    256, 512, 512 for i = 1..5. ImageNet mean/std normalisation is applied inside.
    """

    def __init__(self, i=5, j=4, weights=None):
        super().__init__()
        self.i, self.j = i, j
        self.features = _vgg19_features(vgg19_feature_end(i, j))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1),
                             persistent=False)
        if isinstance(weights, str) and weights == RANDOM_WEIGHTS:
            pass
        elif weights is None:
            self._load(*_download_vgg19())
        elif isinstance(weights, (str, os.PathLike)):
            self._load(_torch_load_dict(weights, "VGG19 weights"), str(weights))
        else:
            raise TypeError(f"TruncatedVGG19: weights must be None, a path or "
                            f"{RANDOM_WEIGHTS!r}, got {type(weights).__name__}")
        for p in self.parameters():
            p.requires_grad_(False)
        self.train(False)

    def _load(self, state, source):
        """Copy the needed conv tensors of ``state`` (``features.``-prefixed or not) into
        ``self.features``; ValueError naming ``source`` if some are missing or mis-shaped."""
        feats = {}
        for key, value in state.items():
            name = key[len("features."):] if key.startswith("features.") else key
            feats.setdefault(name, value)
        needed = self.features.state_dict()
        missing = [k for k in needed if k not in feats]
        if missing:
            raise ValueError(
                f"{source}: the VGG19 weights lack {len(missing)} tensor(s) needed for "
                f"phi_(i={self.i}, j={self.j}) (features[:{len(self.features)}]): {missing}. "
                f"Use a shallower depth or the full vgg19 file ({VGG19_URL}).")
        for k, ref in needed.items():
            if not isinstance(feats[k], torch.Tensor) or feats[k].shape != ref.shape:
                found = tuple(feats[k].shape) if isinstance(feats[k], torch.Tensor) \
                    else type(feats[k]).__name__
                raise ValueError(f"{source}: VGG19 tensor {k!r} has shape {found}, "
                                 f"expected {tuple(ref.shape)}")
        check_finite_state({k: feats[k] for k in needed}, source)
        self.features.load_state_dict({k: feats[k] for k in needed})

    def train(self, mode=True):
        """Always stays in eval mode (a parent's ``.train()`` does not change it)."""
        return super().train(False)

    def forward(self, x):
        """``(N,3,H,W)`` float in [0,1] -> VGG features; gradients flow to ``x``."""
        return self.features((x - self.mean) / self.std)


# --------------------------------------------------------------------------------------------
# The first network of the course: transposed convolutions on RGB
# --------------------------------------------------------------------------------------------
TCONV_KERNEL = 4      # 4x4 kernels with stride 2: every output pixel gets the same number of
TCONV_STRIDE = 2      #   kernel taps (kernel divisible by stride), the usual checkerboard remedy


class TransposedConvSR(nn.Module):
    """The introductory super-resolution network of the course: an encoder of strided
    convolutions, a decoder of transposed convolutions, no sub-pixel layer.

    Layers (``c`` = ``n_channels``, sizes for an ``(N,3,h,w)`` input, h and w even)::

        encoder  conv 3x3 3->c, ReLU                              (N,c,h,w)
                 conv 3x3 stride 2 c->c, ReLU                     (N,c,h/2,w/2)    the bottleneck
        decoder  (log2(scale)+2) x [ConvTranspose 4x4 stride 2, ReLU]
                                                                  (N,c',2*s*h,2*s*w) 2x too large
        down     conv 4x4 stride 2 c'->3                          (N,3,s*h,s*w)

    The decoder undoes the encoder's halving, upsamples by ``scale``, and then upsamples once
    more: "upsample twice as much as needed, then a strided convolution back down". A
    transposed convolution whose kernel overlaps unevenly paints a checkerboard (Odena et
    al., Distill 2016); 4x4 kernels with stride 2 overlap evenly, and the final strided
    convolution averages neighbouring output pixels, which damps what is left of the pattern.
    Known weaknesses: the stride-2 encoder throws away half the LR resolution before anything
    is reconstructed; with ``bicubic_skip=False`` (the course's network) the colours and low
    frequencies must be relearnt from scratch, so short runs sit below bicubic with a colour
    cast (1,160 steps: 26.91 dB on Set5). Given its preset's steps (~56,000) it passes bicubic
    by 2.4 dB with no visible checkerboard (BENCHMARKS.md, "Baselines"). ``bicubic_skip=True``
    adds the MATLAB bicubic image to the output (VDSR's residual learning), an option.

    Odd input sides are padded by edge repetition to even and the output cropped back, so any
    ``(N,3,h,w)`` in [0,1] gives ``(N,3,s*h,s*w)`` (unclamped).
    """

    y_only = False

    def __init__(self, scale=4, n_channels=64, bicubic_skip=False):
        super().__init__()
        self.scale = _check_int_scale(scale, "TransposedConvSR")
        if self.scale & (self.scale - 1):
            raise ValueError(f"TransposedConvSR: scale must be a power of 2, got {scale}")
        self.bicubic_skip = bool(bicubic_skip)
        c, half = n_channels, max(n_channels // 2, 1)
        self.encoder = nn.Sequential(
            _conv(3, c, SMALL_KERNEL), nn.ReLU(inplace=True),
            _conv(c, c, SMALL_KERNEL, stride=TCONV_STRIDE),
            nn.ReLU(inplace=True))
        n_up = int(math.log2(self.scale)) + 2     # undo the encoder, x scale, and x2 more
        layers = []
        for i in range(n_up):
            out = half if i == n_up - 1 else c
            layers += [nn.ConvTranspose2d(c, out, TCONV_KERNEL, stride=TCONV_STRIDE, padding=1),
                       nn.ReLU(inplace=True)]
        self.decoder = nn.Sequential(*layers)
        self.down = nn.Conv2d(half, 3, TCONV_KERNEL, stride=TCONV_STRIDE, padding=1)

    def forward(self, lr):
        """``(N,3,h,w)`` RGB in [0,1] -> ``(N,3,s*h,s*w)`` RGB ~[0,1] (unclamped)."""
        h, w = lr.shape[-2:]
        x = nn.functional.pad(lr, (0, w % 2, 0, h % 2), mode="replicate")   # (N,3,even,even)
        x = self.down(self.decoder(self.encoder(x)))[..., :self.scale * h, :self.scale * w]
        return x + imresize_torch(lr, scale=self.scale) if self.bicubic_skip else x

    @property
    def last_layer(self):
        """The output layer (per-layer learning rates: ``solver.make_optimizer``)."""
        return self.down


# --------------------------------------------------------------------------------------------
# Baselines working on Y: SRCNN, FSRCNN, VDSR
# --------------------------------------------------------------------------------------------
Y_PADDING_MODES = ("zeros", "replicate")
"""``padding_mode`` of the convolutions of SRCNN and FSRCNN."""


class _YChannelSR(nn.Module):
    """Base of the Y-channel baselines: a network on Y, RGB rebuilt from the predicted Y and
    the CbCr of the MATLAB-exact bicubic image (``imresize_torch``). SRCNN and VDSR see the
    bicubic Y; FSRCNN the LR Y (``input_is_lr``)."""

    y_only = True
    input_is_lr = False

    def __init__(self, scale, padding_mode="zeros"):
        super().__init__()
        self.scale = _check_int_scale(scale, type(self).__name__)
        if padding_mode not in Y_PADDING_MODES:
            raise ValueError(f"{type(self).__name__}: padding_mode must be one of "
                             f"{Y_PADDING_MODES}, got {padding_mode!r}")
        self.padding_mode = padding_mode

    def conv(self, in_ch, out_ch, kernel):
        """A 'same' :func:`_conv` with this model's ``padding_mode``."""
        return _conv(in_ch, out_ch, kernel, padding_mode=self.padding_mode)

    def predict_y(self, y):
        """``(N,1,H,W)`` Y in [16/255, 235/255] (bicubic, or LR when ``input_is_lr``) ->
        ``(N,1,s*h,s*w)`` predicted Y."""
        raise NotImplementedError

    def forward_y(self, lr):
        """Y-channel output, for a loss on Y (the SRCNN/FSRCNN/VDSR papers train on Y only).

        ``lr``: ``(N,3,h,w)`` RGB float in [0,1]. Returns ``(sr_y, bicubic_ycbcr)``: ``sr_y``
        ``(N,1,s*h,s*w)`` predicted Y and ``bicubic_ycbcr`` ``(N,3,s*h,s*w)`` the bicubic image in
        YCbCr, both scaled like ``utils.rgb2ycbcr_torch`` (Y in [16/255, 235/255]). Compare
        ``sr_y`` with ``rgb2ycbcr_torch(hr)[:, :1]``.
        """
        ycbcr = rgb2ycbcr_torch(imresize_torch(lr, scale=self.scale))
        y_in = rgb2ycbcr_torch(lr)[:, :1] if self.input_is_lr else ycbcr[:, :1]
        return self.predict_y(y_in), ycbcr

    def forward(self, lr):
        """``(N,3,h,w)`` RGB in [0,1] -> ``(N,3,s*h,s*w)`` RGB ~[0,1] (unclamped)."""
        sr_y, ycbcr = self.forward_y(lr)
        return ycbcr2rgb_torch(torch.cat([sr_y, ycbcr[:, 1:]], dim=1))

    @property
    def last_layer(self):
        """The output layer (SRCNN and FSRCNN train it with a 10x smaller lr:
        ``solver.make_optimizer``)."""
        return self.net[-1]


class SRCNN(_YChannelSR):
    """SRCNN of Dong et al. (ECCV 2014 / TPAMI 2016) on the Y channel of the bicubic image.

    Three convs ``kernels`` = (f1, f2, f3) with ``n_channels`` = (n1, n2) and ReLU after the
    first two; default 9-1-5 with 64/32 (the paper's base model, 8,129 parameters). Deviation:
    'same' padding keeps the output the size of the bicubic image (the paper used 'valid' convs,
    a smaller output, and a loss on the centre of each sub-image only). ``padding_mode``
    'zeros' (default) or 'replicate': zeros pull the Y of the outer 6 px toward black, which
    on small training patches touches a large share of the loss (44% of a 48x48 patch).
    Init: ``init_std=None`` -> He-normal (fan-in) weights and zero biases, which trains well
    with Adam; ``init_std=1e-3`` reproduces the paper's N(0, 0.001)
    (made for SGD with per-layer learning rates).
    """

    def __init__(self, scale=4, n_channels=(64, 32), kernels=(9, 1, 5), init_std=None,
                 padding_mode="zeros"):
        super().__init__(scale, padding_mode)
        n_channels, kernels = tuple(n_channels), tuple(kernels)
        if len(n_channels) != 2 or len(kernels) != 3 or any(k % 2 == 0 for k in kernels):
            raise ValueError(f"SRCNN: need 2 channel counts and 3 odd kernel sizes, "
                             f"got n_channels={n_channels}, kernels={kernels}")
        c1, c2 = n_channels
        f1, f2, f3 = kernels
        self.net = nn.Sequential(self.conv(1, c1, f1), nn.ReLU(inplace=True),
                                 self.conv(c1, c2, f2), nn.ReLU(inplace=True),
                                 self.conv(c2, 1, f3))
        for m in self.net:
            if isinstance(m, nn.Conv2d):
                if init_std is None:
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                else:
                    nn.init.normal_(m.weight, std=init_std)
                nn.init.zeros_(m.bias)

    def predict_y(self, y):
        return self.net(y)


FSRCNN_FEATURE_KERNEL = 5    # feature extraction conv (paper: 5x5)
FSRCNN_DECONV_KERNEL = 9     # the last layer: 9x9 transposed convolution with stride = scale
FSRCNN_DECONV_STD = 1e-3     # its init, N(0, 0.001) (paper Sec. 4.1); the convs: He init
PRELU_INIT = 0.25            # PReLU's initial slope (He et al. 2015)


class FSRCNN(_YChannelSR):
    """FSRCNN(d, s, m) of Dong, Loy and Tang ("Accelerating the Super-Resolution Convolutional
    Neural Network", ECCV 2016) on the LR Y channel: no bicubic input, the network upsamples.

    Layers (``d`` = 56, ``s`` = 12, ``m`` = 4 by default, PReLU after every conv)::

        feature extraction  conv 5x5 1->d          (N,d,h,w)
        shrinking           conv 1x1 d->s          (N,s,h,w)
        mapping             m x conv 3x3 s->s      (N,s,h,w)
        expanding           conv 1x1 s->d          (N,d,h,w)
        deconvolution       ConvTranspose 9x9 d->1, stride = scale     (N,1,s*h,s*w)

    12,464 weights at the defaults and x4 (25d + ds + 9ms^2 + sd + 81d, the paper's count,
    biases and PReLU slopes aside). ``padding_mode`` of the convolutions as in :class:`SRCNN`
    (on LR patches of 12 px, zeros touch almost every output pixel: the receptive field's radius
    is 6 LR px). Deviations: 'same' padding, and a deconvolution padded so
    that its kernel is centred where each LR pixel lies in the HR grid and its output is exactly
    ``scale`` x the input (the paper's gives ``s*h - s + 1``);
    a PReLU after each mapping conv (as most reimplementations). Only Y is learnt; CbCr come
    from the bicubic image.
    """

    input_is_lr = True

    def __init__(self, scale=4, d=56, s=12, m=4, padding_mode="zeros"):
        super().__init__(scale, padding_mode)
        if min(d, s) < 1 or m < 0:
            raise ValueError(f"FSRCNN: need d, s >= 1 and m >= 0, got d={d}, s={s}, m={m}")
        conv = self.conv
        layers = [conv(1, d, FSRCNN_FEATURE_KERNEL), nn.PReLU(d, PRELU_INIT),
                  conv(d, s, 1), nn.PReLU(s, PRELU_INIT)]
        for _ in range(m):
            layers += [conv(s, s, SMALL_KERNEL), nn.PReLU(s, PRELU_INIT)]
        layers += [conv(s, d, 1), nn.PReLU(d, PRELU_INIT)]
        # LR pixel j lies at HR coordinate scale*j + (scale-1)/2: centre the kernel there
        # (to half a pixel), and pad the output to exactly scale x the input
        pad = math.ceil(FSRCNN_DECONV_KERNEL // 2 - (self.scale - 1) / 2)
        extra = self.scale + 2 * pad - FSRCNN_DECONV_KERNEL      # output = exactly scale x input
        layers.append(nn.ConvTranspose2d(d, 1, FSRCNN_DECONV_KERNEL, stride=self.scale,
                                         padding=pad, output_padding=extra))
        self.net = nn.Sequential(*layers)
        for layer in self.net:
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, a=PRELU_INIT, nonlinearity="leaky_relu")
                nn.init.zeros_(layer.bias)
        nn.init.normal_(self.net[-1].weight, std=FSRCNN_DECONV_STD)
        nn.init.zeros_(self.net[-1].bias)

    def predict_y(self, y):
        return self.net(y)


class VDSR(_YChannelSR):
    """VDSR of Kim et al. (CVPR 2016) on the Y channel of the bicubic image.

    ``n_layers`` 3x3 convs (paper: 20): conv+ReLU, ``n_layers - 2`` x conv+ReLU, conv to 1 channel,
    plus the global residual (the bicubic Y). Zero padding keeps the size. He-normal init,
    zero biases (665,921 parameters at the defaults).
    """

    def __init__(self, scale=4, n_layers=20, n_channels=64):
        super().__init__(scale)
        if n_layers < 2 or n_channels < 1:
            raise ValueError(f"VDSR: need n_layers >= 2 and n_channels >= 1, "
                             f"got {n_layers}, {n_channels}")
        layers = [_conv(1, n_channels, SMALL_KERNEL), nn.ReLU(inplace=True)]
        for _ in range(n_layers - 2):
            layers += [_conv(n_channels, n_channels, SMALL_KERNEL), nn.ReLU(inplace=True)]
        layers.append(_conv(n_channels, 1, SMALL_KERNEL))
        self.net = nn.Sequential(*layers)
        for m in self.net:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def predict_y(self, y):
        return y + self.net(y)


# --------------------------------------------------------------------------------------------
# Building and loading generators
# --------------------------------------------------------------------------------------------
GENERATORS = {"srresnet": SRResNet, "tconv": TransposedConvSR, "srcnn": SRCNN, "fsrcnn": FSRCNN,
              "vdsr": VDSR}
"""Generator architectures by name (the ``arch`` of configs and checkpoints)."""

# key prefixes added by wrappers: DistributedDataParallel / DataParallel, torch.compile
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def build_generator(arch, scale=4, **kwargs):
    """A new generator ``GENERATORS[arch](scale=scale, **kwargs)``; ValueError for an unknown
    ``arch``, TypeError naming the accepted arguments for an unknown keyword."""
    if arch not in GENERATORS:
        raise ValueError(f"unknown generator arch {arch!r}; choose one of {sorted(GENERATORS)}")
    cls = GENERATORS[arch]
    accepted = [p for p in inspect.signature(cls).parameters if p != "scale"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(f"{cls.__name__} ({arch!r}) does not take {unknown}; "
                        f"it accepts {accepted}")
    return cls(scale=scale, **kwargs)


def strip_wrapper_prefixes(state_dict):
    """The state dict with the ``module.`` / ``_orig_mod.`` prefixes of DDP and torch.compile
    removed from its keys (any order, any number)."""
    out = {}
    for key, value in state_dict.items():
        stripped = True
        while stripped:
            stripped = False
            for prefix in WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, stripped = key[len(prefix):], True
        out[key] = value
    return out


def _describe(obj):
    """A short description of a checkpoint-like dict for error messages."""
    keys = list(obj)
    if keys and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return f"a raw state_dict of {len(keys)} tensors (keys like {keys[:3]})"
    return f"a dict with keys {keys[:10]}"


def check_finite_state(state, source):
    """Raise ValueError naming ``source`` and the first tensor of the state dict ``state`` that
    holds a NaN or an infinity (a diverged run, a damaged file): such weights give a black or
    garbage image and a meaningless score or loss, never a result. Every weight file passes
    here (generators, VGG19, LPIPS). Non-tensor and integer entries are not checked."""
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            bad = int((~torch.isfinite(value)).sum())
            if bad:
                raise ValueError(f"{source}: weight tensor {key!r} holds {bad} non-finite "
                                 f"value(s) (NaN/inf: diverged training or a damaged file): "
                                 f"refusing to load it; use an earlier or a fresh copy")


# --------------------------------------------------------------------------------------------
# Checkpoints: the one format, written by train.py, read by load_generator and --resume
# --------------------------------------------------------------------------------------------
CHECKPOINT_FORMAT = "srgan-course/1"
"""The ``format`` key of every checkpoint of this project. A checkpoint is a ``torch.save``d
dict of plain types and tensors (``torch.load(weights_only=True)`` reads it), with the keys:

* ``format``, ``arch`` (a key of :data:`GENERATORS`), ``arch_kwargs`` (its constructor
  arguments), ``scale`` (int), ``stage`` (the stage's name: ``srresnet``, ``srcnn``, ...,
  ``srgan``), ``config`` (the whole run config as plain dicts), ``history`` (the per-epoch
  log rows), ``epoch``, ``step``, ``finished`` (bool), ``world_size`` (processes that trained);
* ``generator``: the trained weights (what ``--resume`` continues); ``generator_ema``: the EMA
  of them or None (what :func:`load_generator` returns when present); ``discriminator``: D's
  weights or None (stage 1);
* ``optimizer_g`` / ``optimizer_d``: optimiser state dicts (None without D); ``scaler_g`` /
  ``scaler_d``: fp16 GradScaler state dicts or None;
* ``scheduler_g`` / ``scheduler_d``: the lr schedule as a plain dict (``schedule``,
  ``base_lr``, ``decay_at``, ``decay_factor``, ``min_lr``: ``solver.make_lr_fn``'s arguments),
  not a torch scheduler; ``clock``: ``solver.RunClock.state_dict()`` (steps done, seconds
  spent); ``rng``: ``runtime.get_rng_state()`` at save time.

Weights are those of the plain modules (no ``module.`` / ``_orig_mod.`` prefixes)."""


def to_plain(obj):
    """Config-like ``obj`` as plain python: dicts (EasyDict too) -> dict, tuples -> lists, Paths ->
    str; what ``torch.load(weights_only=True)`` and JSON accept."""
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    return obj


def make_checkpoint(*, stage, arch, arch_kwargs, scale, generator, epoch, step, config, history,
                    optimizer_g=None, scheduler_g=None, discriminator=None, optimizer_d=None,
                    scheduler_d=None, clock=None, finished=False, world_size=1, ema=None,
                    scaler_g=None, scaler_d=None):
    """The checkpoint dict of :data:`CHECKPOINT_FORMAT` for the objects of a training run.

    Models may be ``torch.compile``d or DDP-wrapped (the plain module's weights are stored);
    ``ema`` is a ``solver.GeneratorEMA`` or None; ``config`` may be an EasyDict; ``clock`` a
    ``solver.RunClock``; the scalers fp16 GradScalers or None. The RNG states are captured now.
    """
    def state_of(obj):
        return unwrap(obj).state_dict() if obj is not None else None

    return {
        "format": CHECKPOINT_FORMAT, "arch": arch, "arch_kwargs": to_plain(arch_kwargs),
        "scale": int(scale), "stage": stage, "config": to_plain(config),
        "history": to_plain(history), "epoch": int(epoch), "step": int(step),
        "finished": bool(finished), "world_size": int(world_size),
        "generator": state_of(generator),
        "generator_ema": ema.state_dict() if ema is not None else None,
        "discriminator": state_of(discriminator),
        "optimizer_g": state_of(optimizer_g), "optimizer_d": state_of(optimizer_d),
        "scaler_g": scaler_g.state_dict() if scaler_g is not None else None,
        "scaler_d": scaler_d.state_dict() if scaler_d is not None else None,
        "scheduler_g": to_plain(scheduler_g), "scheduler_d": to_plain(scheduler_d),
        "clock": clock.state_dict() if clock is not None else None,
        "rng": get_rng_state(),
    }


def save_checkpoint(path, state):
    """Write the checkpoint dict ``state`` to ``path`` with ``utils.atomic_write``: a crash
    leaves the old or the new file, never a truncated one; a failed write raises
    ``utils.WriteError`` naming the file, with the previous checkpoint intact."""
    try:
        with atomic_write(path, "wb", what="checkpoint") as f:
            torch.save(state, f)
    except RuntimeError as e:     # torch's C++ writer: "PytorchStreamWriter failed writing ..."
        kept = "the previous checkpoint is intact" if Path(path).exists() else \
            "nothing was written"
        raise WriteError(errno.EIO, f"cannot write checkpoint {path} (the disk may be full: "
                                    f"{str(e).splitlines()[0]}); {kept}") from e


def load_checkpoint(path):
    """Read a checkpoint of :data:`CHECKPOINT_FORMAT` (on the CPU, ``weights_only=True``): the one
    reader, behind :func:`load_generator` and ``train.py --resume``.

    Raises FileNotFoundError / IsADirectoryError, and ValueError naming the file for a file that
    is not a torch file (a pickle of code is named as such), not a dict, of another format, or
    lacking ``arch``, ``scale`` or ``generator`` (e.g. a raw state dict). A checkpoint without
    ``format`` (written before the key existed) is accepted.
    """
    ckpt = _torch_load_dict(path, "checkpoint")
    if ckpt.get("format", CHECKPOINT_FORMAT) != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: unknown checkpoint format {ckpt['format']!r} "
                         f"(expected {CHECKPOINT_FORMAT!r})")
    missing = [k for k in ("arch", "scale", "generator") if k not in ckpt]
    if missing:
        raise ValueError(f"{path}: not a generator checkpoint of this project: missing "
                         f"{missing}; found {_describe(ckpt)}")
    for key, ok, wanted in _CHECKPOINT_FIELD_TYPES:
        if key in ckpt and not ok(ckpt[key]):
            found = ckpt[key]
            shown = type(found).__name__ + (f" {found!r}" if isinstance(
                found, (str, int, float, bool, type(None))) else "")
            raise ValueError(f"{path}: checkpoint field {key!r} should be {wanted}, found "
                             f"{shown[:80]}: the file is damaged or not this project's")
    return ckpt


_CHECKPOINT_FIELD_TYPES = (
    ("arch", lambda v: isinstance(v, str), "a generator name (str)"),
    ("scale", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 2,
     "an integer >= 2"),
    ("arch_kwargs", lambda v: v is None or isinstance(v, dict), "a dict of settings"),
    ("generator", lambda v: isinstance(v, dict) and all(
        isinstance(k, str) and isinstance(t, torch.Tensor) for k, t in v.items()),
     "a state dict (names -> tensors)"),
    ("generator_ema", lambda v: v is None or (isinstance(v, dict) and all(
        isinstance(t, torch.Tensor) for t in v.values())), "None or a state dict"),
    ("stage", lambda v: v is None or isinstance(v, str), "a stage name (str)"),
    ("epoch", lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)),
     "an integer"),
    ("step", lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)),
     "an integer"),
    ("history", lambda v: v is None or (isinstance(v, list)
                                        and all(isinstance(r, dict) for r in v)),
     "a list of per-epoch dicts"),
)
"""Types of the checkpoint fields that are read (:data:`CHECKPOINT_FORMAT`): checked by
:func:`load_checkpoint` so that a damaged or crafted file is named, not a crash later."""


def generator_state(ckpt, path):
    """The generator weights of the checkpoint dict ``ckpt`` (read from ``path``) for use: the
    EMA weights when it was trained with an EMA, else ``generator``; wrapper prefixes stripped,
    checked to be finite (ValueError naming the file and the tensor)."""
    state = ckpt.get("generator_ema") or ckpt["generator"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: 'generator' should be a state dict, "
                         f"found {type(state).__name__}")
    state = strip_wrapper_prefixes(state)
    check_finite_state(state, path)
    return state


def load_generator(path, device="cpu", expect_scale=None):
    """Load the generator of a checkpoint written by ``train.py`` (:func:`save_checkpoint`).

    Args:
        path: checkpoint file (:data:`CHECKPOINT_FORMAT`, read by :func:`load_checkpoint`).
            State-dict keys with ``module.`` or ``_orig_mod.`` prefixes are accepted.
        device: where to put the model.
        expect_scale: if given, a checkpoint of another scale is an error.

    Returns: ``(model, checkpoint)``: the generator in eval mode on ``device`` and the whole
    checkpoint dict (on the CPU).

    Raises: FileNotFoundError; ValueError naming the file for a file that is not a torch file /
    not a dict / lacks ``arch``, ``scale`` or ``generator`` (e.g. a raw state dict), an unknown
    format or arch, a scale mismatch, a state dict that does not fit the architecture, or
    weights holding NaN/inf (naming the tensor, :func:`check_finite_state`).
    """
    ckpt = load_checkpoint(path)
    arch, scale = ckpt["arch"], ckpt["scale"]
    if arch not in GENERATORS:
        raise ValueError(f"{path}: unknown generator arch {arch!r}; "
                         f"known: {sorted(GENERATORS)}")
    if expect_scale is not None and scale != expect_scale:
        raise ValueError(f"{path}: checkpoint is for x{scale}, but x{expect_scale} was requested")
    kwargs = dict(ckpt.get("arch_kwargs") or {})
    kwargs.pop("scale", None)
    try:
        model = build_generator(arch, scale=scale, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: cannot build {arch!r} with scale={scale}, "
                         f"arch_kwargs={kwargs}: {exc}") from exc
    state = generator_state(ckpt, path)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        why = _state_mismatch(model.state_dict(), state) or str(exc).splitlines()[0]
        raise ValueError(f"{path}: the generator weights do not fit {arch!r} "
                         f"(scale={scale}, arch_kwargs={kwargs}): {why}") from exc
    return model.to(device).eval(), ckpt


# --------------------------------------------------------------------------------------------
# LPIPS (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual
# Metric", CVPR 2018), version 0.1 of the official release
# --------------------------------------------------------------------------------------------
LPIPS_NETS = ("alex", "vgg")
"""Backbones of :class:`LPIPS`: torchvision's ImageNet AlexNet ('alex', the release's default
"forward metric") or VGG16 ('vgg')."""

LPIPS_BACKBONE_URLS = {
    "alex": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "vgg": "https://download.pytorch.org/models/vgg16-397923af.pth",
}
"""torchvision's official ImageNet weights of the backbones (IMAGENET1K_V1); their file names
carry the sha256 prefix that ``torch.hub`` checks on download."""

LPIPS_RELEASE = "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1"
LPIPS_LINEAR_URLS = {net: f"{LPIPS_RELEASE}/{net}.pth" for net in LPIPS_NETS}
"""The learned linear layers of LPIPS v0.1 (keys ``lin0.model.1.weight`` ... ``lin4...``)."""

LPIPS_LINEAR_CACHE_NAMES = {net: f"lpips_v0.1_{net}.pth" for net in LPIPS_NETS}
"""File names of the linear weights in the torch.hub cache (the URLs end in the generic
``alex.pth`` / ``vgg.pth``, which other projects could cache under the same name)."""

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


def lpips_weight_files(net="alex"):
    """Where ``torch.hub`` caches the two files of :class:`LPIPS` ``net``:
    ``{"backbone": Path, "linear": Path}`` (they may not exist)."""
    _check_lpips_net(net)
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    return {"backbone": cache / Path(LPIPS_BACKBONE_URLS[net]).name,
            "linear": cache / LPIPS_LINEAR_CACHE_NAMES[net]}


def _check_lpips_net(net):
    if net not in LPIPS_NETS:
        raise ValueError(f"LPIPS: net must be one of {LPIPS_NETS}, got {net!r}")


def _lpips_from_hub(net, part):
    """``(state, source)`` of ``part`` ('backbone' | 'linear') of LPIPS ``net`` through the
    torch.hub cache (downloaded when missing); ``(None, reason)`` when it cannot be had."""
    url = (LPIPS_BACKBONE_URLS if part == "backbone" else LPIPS_LINEAR_URLS)[net]
    cached = lpips_weight_files(net)[part]
    try:
        state = torch.hub.load_state_dict_from_url(
            url, map_location="cpu", weights_only=True, file_name=cached.name,
            check_hash=part == "backbone")  # the torchvision names carry their hash prefix
    except Exception as exc:  # URLError, HTTPError, hash mismatch, corrupt cache file ...
        return None, f"{type(exc).__name__}: {exc}"
    if not isinstance(state, dict):
        return None, f"{cached} is not a state dict ({type(state).__name__})"
    return state, f"{url} (cached as {cached})"


def _load_lpips_part(net, part, path):
    """``(state, source)`` of one file of LPIPS ``net``: ``path`` if given (FileNotFoundError /
    ValueError for a missing / unreadable file), else the torch.hub cache or a download
    (``(None, reason)`` when that fails)."""
    if path is not None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"LPIPS: {part} weights must be None or a path, "
                            f"got {type(path).__name__}")
        return _torch_load_dict(path, f"LPIPS {net} {part} weights"), str(path)
    return _lpips_from_hub(net, part)


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
        _check_lpips_net(net)
        self.net = net
        self.backbone = _LPIPSBackbone(net)
        self.n_layers = len(self.backbone.channels)
        for k, ch in enumerate(self.backbone.channels):
            setattr(self, f"lin{k}", _LPIPSLinear(ch))
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).reshape(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).reshape(1, 3, 1, 1),
                             persistent=False)
        given = {"backbone": backbone_weights, "linear": linear_weights}
        # the files given by path first: a bad one fails before any download
        order = sorted(given, key=lambda part: given[part] is None)
        loaded = {part: _load_lpips_part(net, part, given[part]) for part in order}
        failures = [(part, loaded[part][1]) for part in given if loaded[part][0] is None]
        if failures:
            raise RuntimeError(self._unavailable_message(failures))
        (backbone, b_source), (linear, l_source) = loaded["backbone"], loaded["linear"]
        self._load_backbone(backbone, b_source)
        self._load_linear(linear, l_source)
        self.sources = {"backbone": b_source, "linear": l_source}
        for p in self.parameters():
            p.requires_grad_(False)
        self.train(False)
        # channels_last convs: 1.28x faster on the CPU (AlexNet, 500x480 pair; same values)
        self.to(memory_format=torch.channels_last)

    def _unavailable_message(self, failures):
        """One line: which files could not be had and why, and how to provide them."""
        files = lpips_weight_files(self.net)
        urls = {"backbone": LPIPS_BACKBONE_URLS[self.net], "linear": LPIPS_LINEAR_URLS[self.net]}
        args = {"backbone": ("backbone_weights", "--lpips-backbone"),
                "linear": ("linear_weights", "--lpips-weights")}
        got = "; ".join(f"{part} {urls[part]} ({why})" for part, why in failures)
        put = " and ".join(f"{urls[part]} as {files[part].name}" for part, _ in failures)
        kwargs = ", ".join(f"{args[part][0]}=PATH" for part, _ in failures)
        flags = " ".join(f"{args[part][1]} PATH" for part, _ in failures)
        return (f"LPIPS ({self.net}) weights unavailable (offline?): could not get {got}. "
                f"Download {put} into the torch.hub cache folder {files['linear'].parent} "
                f"(torch.hub.get_dir()/checkpoints; TORCH_HOME moves it), or pass the files: "
                f"LPIPS({self.net!r}, {kwargs}), evaluate.py {flags}")

    def _load_backbone(self, state, source):
        """Copy the ``features`` convs of a torchvision state dict (``features.``-prefixed or
        not; other keys ignored) into the backbone; ValueError naming ``source`` if some are
        missing or mis-shaped."""
        feats = {}
        for key, value in state.items():
            feats.setdefault(key[len("features."):] if key.startswith("features.") else key, value)
        needed = self.backbone.features.state_dict()
        subset = {k: feats[k] for k in needed if isinstance(feats.get(k), torch.Tensor)}
        why = _state_mismatch(needed, subset)
        if why:
            raise ValueError(f"{source}: not the torchvision {self.net} weights LPIPS needs "
                             f"({LPIPS_BACKBONE_URLS[self.net]}): {why}")
        check_finite_state(subset, source)
        self.backbone.features.load_state_dict(subset)

    def _load_linear(self, state, source):
        """Load the ``lin{k}.model.1.weight`` tensors (strict); ValueError naming ``source``."""
        needed = {k: v for k, v in self.state_dict().items() if k.startswith("lin")}
        why = _state_mismatch(needed, {k: v for k, v in state.items()
                                       if isinstance(v, torch.Tensor)})
        if why:
            raise ValueError(f"{source}: not the LPIPS v0.1 {self.net} linear weights "
                             f"({LPIPS_LINEAR_URLS[self.net]}): {why}")
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
