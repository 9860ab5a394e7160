"""Networks (``nn.Module``s only): the SRResNet generator, the SRGAN discriminator, the
truncated VGG19 of the content loss, the baselines (TransposedConvSR, SRCNN, FSRCNN, VDSR), and
building a generator from its settings (:func:`build_generator`).

Their weights come from elsewhere: checkpoints through checkpoint.py, the ImageNet VGG19 through
pretrained.py.

Conventions shared by every generator (the contract of ``solver.py``, ``tiling.py`` and
``evaluate.py``):

* input: an LR RGB batch ``(N,3,h,w)`` float in [0,1];
* output: an SR RGB batch ``(N,3,s*h,s*w)`` float, approximately in [0,1]. It is **not clamped**
  in ``forward`` (clamping would zero the gradient of out-of-range pixels during training);
  ``tiling`` rounds and clips when it makes an image.
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
import inspect
import math
import numbers

import torch
from torch import nn

from imresize import imresize_torch
from utils import rgb2ycbcr_torch, ycbcr2rgb_torch

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
VGG19_BLOCK_SIZES = (2, 2, 4, 4, 4)           # 3x3 convs before each of the 5 max-pools
VGG19_BLOCK_CHANNELS = (64, 128, 256, 512, 512)
IMAGENET_MEAN = (0.485, 0.456, 0.406)          # torchvision's input normalisation
IMAGENET_STD = (0.229, 0.224, 0.225)


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


class TruncatedVGG19(nn.Module):
    """ImageNet VGG19 truncated at phi_{i,j} (after the ReLU of the ``j``-th conv before the
    ``i``-th max-pool): phi_{2,2} = ``features[:9]`` (the paper's VGG22), phi_{5,4} =
    ``features[:36]`` (VGG54). Frozen and always in eval mode, but differentiable w.r.t. its input.

    Args:
        i, j: the depth; ``i`` in 1..5, ``j`` in 1..(2,2,4,4,4)[i-1], else ValueError.

    The weights start random; ``pretrained.vgg19`` loads the ImageNet ones into ``features``.

    Shapes: ``(N,3,H,W)`` float in [0,1] -> ``(N,C,H/2^(i-1),W/2^(i-1))`` features, C = 64, 128,
    256, 512, 512 for i = 1..5. ImageNet mean/std normalisation is applied inside.
    """

    def __init__(self, i=5, j=4):
        super().__init__()
        self.i, self.j = i, j
        self.features = _vgg19_features(vgg19_feature_end(i, j))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1),
                             persistent=False)
        for p in self.parameters():
            p.requires_grad_(False)
        self.train(False)

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
