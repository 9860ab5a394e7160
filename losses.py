"""The losses of both stages, each an ``nn.Module`` or a function of ``(N,3,H,W)`` tensors in
[0,1] returning a float32 scalar: the pixel losses (MSE, L1, Caffe's Euclidean; on Y for the
baselines), the paper's VGG content loss, the LR-consistency loss, their weighted sum (the
content loss), the adversarial losses of the generator and the discriminator, and building a
stage's content loss from the configuration (:func:`content_loss_of`)."""
import torch
import torch.nn.functional as F

import pretrained
import utils
from config import stage_config
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



# ----------------------------------------------------------------------------------------------
# A stage's content loss, from the configuration
# ----------------------------------------------------------------------------------------------

def vgg_content_loss(cfg):
    """The VGG content loss phi_{i,j} of ``cfg.vgg`` (:class:`VGGLoss`), or None with the
    reason when no VGG19 weights covering phi_{i,j} can be had.

    Weights are looked for where ``pretrained.vgg19_candidates`` says.
    """
    reasons = []
    for weights in pretrained.vgg19_candidates(cfg.vgg.weights):
        try:
            vgg = pretrained.vgg19(cfg.vgg.i, cfg.vgg.j, weights=weights)
        except (OSError, RuntimeError, ValueError) as e:
            reasons.append(str(e).splitlines()[0])
            continue
        return VGGLoss(vgg, cfg.vgg.feature_scale), None
    return None, "; ".join(reasons)


def content_loss_of(cfg, stage, y_only=False):
    """The content loss of a stage: :class:`ContentLoss` of its terms.

    Stage 1: ``cfg.stage1.loss`` ('mse', 'l1', or 'vgg' for SRResNet-VGG). Stage 2: the main
    term ``cfg.stage2.content_loss`` -- 'vgg' (phi_{i,j}) or 'mse' (SRGAN-MSE, x
    ``mse_range_factor`` for the paper's [-1,1] range) -- plus ``pixel_weight`` x the pixel loss
    ``pixel_loss`` and ``lr_consistency_weight`` x :class:`LRConsistencyLoss` when > 0. A VGG
    loss whose weights cannot be had falls back to the MSE loss with a one-line note when
    ``cfg.vgg.weights`` is None, and is an error when a file was named.
    """
    scfg = stage_config(cfg, stage)
    kind = scfg.loss if stage == "srresnet" else scfg.content_loss
    if kind == "vgg":
        vgg_loss, why = vgg_content_loss(cfg)
        if vgg_loss is None and cfg.vgg.weights is not None:
            raise ValueError(f"vgg.weights={cfg.vgg.weights}: {why}")
        if vgg_loss is None:
            print(f"note: no VGG19 weights for phi_{cfg.vgg.i},{cfg.vgg.j} ({why}); stage "
                  f"{stage} uses the MSE content loss instead", flush=True)
            kind = "mse"
    if kind == "vgg":
        terms = [(1.0, vgg_loss)]
    else:
        factor = scfg.get("mse_range_factor", 1.0) if stage == "srgan" and kind == "mse" else 1.0
        terms = [(factor, PixelLoss(kind, y_only))]
    if stage == "srgan" and scfg.get("pixel_weight", 0) > 0:
        terms.append((scfg.pixel_weight, PixelLoss(scfg.pixel_loss, y_only)))
    if stage == "srgan" and scfg.get("lr_consistency_weight", 0) > 0:
        terms.append((scfg.lr_consistency_weight,
                       LRConsistencyLoss(cfg.scale, scfg.pixel_loss)))
    return ContentLoss(terms)
