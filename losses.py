"""The losses of both stages, each an ``nn.Module`` or a function of ``(N,3,H,W)`` tensors in
[0,1] returning a float32 scalar: the pixel losses (MSE, L1, Caffe's Euclidean; on Y for the
baselines), the paper's VGG content loss, the LR-consistency loss, their weighted sum (the
content loss), the adversarial losses of the generator and the discriminator, and building a
stage's content loss from the configuration (:func:`content_loss_of`)."""
import torch
import torch.nn.functional as F

import utils
from imresize import imresize_torch
from runtime import float32_region

REAL_LABEL, FAKE_LABEL = 1.0, 0.0
"""Discriminator targets: D should output probability 1 for HR images, 0 for generated ones."""

PIXEL_LOSSES = ("mse", "l1", "euclidean")
"""The kinds of :func:`pixel_loss`."""


def _check_pixel_loss(kind):
    """ValueError (one line) unless ``kind`` is one of :data:`PIXEL_LOSSES`."""
    if kind not in PIXEL_LOSSES:
        raise ValueError(f"unknown pixel loss {kind!r}: use one of {', '.join(PIXEL_LOSSES)}")


def pixel_loss(sr, hr, kind="mse", y_only=False):
    """Pixel content loss between ``sr`` and ``hr``, both ``(N,3,H,W)`` float in [0,1].

    ``kind`` is ``'mse'`` or ``'l1'`` (means over every value), or ``'euclidean'``: Caffe's
    EuclideanLoss, the loss of the SRCNN, FSRCNN and VDSR papers, ``sum((sr - hr)**2) / (2 N)``
    for a batch of N -- half the squared error summed over each patch's pixels, averaged over
    the patches. It is the MSE times ``C*H*W / 2`` (~800 for VDSR's 40x40 Y patches), and the
    papers' SGD learning rates are tuned to that scale. With ``y_only`` (SRCNN/FSRCNN/VDSR,
    which only predict luminance) the loss compares the Y channels of ``utils.rgb2ycbcr_torch``.
    Returns a float32 scalar.
    """
    _check_pixel_loss(kind)
    with float32_region(sr):                   # the Y conversion (a matmul) stays float32 under amp
        sr, hr = sr.float(), hr.float()
        if y_only:
            sr, hr = utils.rgb2ycbcr_torch(sr)[:, :1], utils.rgb2ycbcr_torch(hr)[:, :1]
        if kind == "euclidean":
            return (sr - hr).square().sum() / (2 * sr.shape[0])
        return F.mse_loss(sr, hr) if kind == "mse" else F.l1_loss(sr, hr)


class PixelLoss(torch.nn.Module):
    """:func:`pixel_loss` as a module: ``forward(sr, hr) -> scalar``."""

    def __init__(self, kind="mse", y_only=False):
        super().__init__()
        _check_pixel_loss(kind)                # at construction, before any training step
        self.kind, self.y_only = kind, y_only

    def forward(self, sr, hr):
        return pixel_loss(sr, hr, self.kind, self.y_only)


class VGGLoss(torch.nn.Module):
    """The paper's VGG content loss: MSE between ``feature_scale * phi_{i,j}`` of SR and HR.

    ``vgg`` is a ``models.TruncatedVGG19``, which freezes itself (no gradients to its weights,
    always in eval mode) and normalises its ``(N,3,H,W)`` [0,1] input itself. The paper
    multiplies the feature maps by 1/12.75 (``cfg.vgg.feature_scale``) so the loss has the
    magnitude of a pixel MSE. Gradients flow to ``sr`` (and so to the generator);
    the HR features are computed without a graph. The VGG runs in float32 with autocast off
    (under bf16 autocast its features, and so the loss, would change by ~1%). Returns a float32
    scalar.
    """

    def __init__(self, vgg, feature_scale):
        super().__init__()
        self.vgg, self.feature_scale = vgg, float(feature_scale)   # frozen by TruncatedVGG19

    def forward(self, sr, hr):
        with float32_region(sr):
            with torch.no_grad():
                target = self.vgg(hr.float()) * self.feature_scale
            return F.mse_loss(self.vgg(sr.float()) * self.feature_scale, target)


class LRConsistencyLoss(torch.nn.Module):
    """Pixel loss between SR and HR after both are shrunk by ``1/scale`` with the MATLAB-exact
    bicubic (``imresize.imresize_torch``, differentiable): ``loss(imresize(SR), imresize(HR))``.

    It constrains only what survives the degradation the LR images were made with -- the
    colours and low frequencies that LR-PSNR measures -- and leaves the high frequencies,
    where the VGG and adversarial losses add texture, free (an option of stage 2,
    ``stage2.lr_consistency_weight``; not in the paper). ``sr``, ``hr`` ``(N,3,H,W)`` float in
    [0,1], H and W multiples of ``scale``; returns a float32 scalar.
    """

    def __init__(self, scale, kind="l1"):
        super().__init__()
        self.scale, self.pixel = int(scale), PixelLoss(kind)

    def forward(self, sr, hr):
        shrink = lambda x: imresize_torch(x.float().contiguous(), 1 / self.scale)
        with float32_region(sr):
            return self.pixel(shrink(sr), shrink(hr))


class ContentLoss(torch.nn.Module):
    """A weighted sum of content losses: ``forward(sr, hr) = sum(w * loss(sr, hr))``.

    ``terms`` is a list of ``(weight, loss_module)``, e.g. ``[(1.0, VGGLoss(...)), (1e-2,
    PixelLoss('l1'))]`` (stage 2 with ``stage2.pixel_weight``: the VGG loss keeps the textures,
    the small pixel term holds the colours and the low frequencies in place). ``sr``, ``hr``
    ``(N,3,H,W)`` float in [0,1]; returns a float32 scalar.
    """

    def __init__(self, terms):
        super().__init__()
        if not terms:
            raise ValueError("ContentLoss needs at least one (weight, loss) term")
        self.weights = [float(w) for w, _ in terms]
        self.losses = torch.nn.ModuleList([loss for _, loss in terms])

    def forward(self, sr, hr):
        return sum(w * loss(sr, hr) for w, loss in zip(self.weights, self.losses))


def generator_adversarial_loss(fake_logits):
    """``-log D(G(LR))`` averaged over the batch: BCE-with-logits of D's logits ``(N,)`` vs 1."""
    fake_logits = fake_logits.float()
    return F.binary_cross_entropy_with_logits(fake_logits, torch.full_like(fake_logits, REAL_LABEL))


def discriminator_loss(real_logits, fake_logits):
    """BCE-with-logits of D on HR images (target 1) plus on generated images (target 0).

    Both ``(N,)`` logits; ``fake_logits`` must come from a detached generator output so this
    loss only trains D. Returns a float32 scalar (the sum of the two means).
    """
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    return (F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, REAL_LABEL))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.full_like(fake_logits, FAKE_LABEL)))
