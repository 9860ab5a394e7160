"""Training machinery shared by ``train.py`` and the notebooks: losses, one epoch of each training
stage, validation, learning-rate schedules, devices, RNG state and checkpoints.

The two stages of the SRGAN paper (Ledig et al., CVPR 2017):

* stage 1 -- :func:`train_epoch_mse`: the generator (SRResNet, or SRCNN/VDSR) alone, with a pixel
  loss (MSE, or L1 per config) between its output and the HR patch;
* stage 2 -- :func:`train_epoch_gan`: SRGAN. Each iteration makes one discriminator step on real HR
  patches (label 1) and generated ones (label 0), and every ``k``-th iteration a generator step with
  the perceptual loss ``content + adv_weight * adversarial``; the content loss is the MSE of
  rescaled VGG19 feature maps phi_{i,j} (:class:`VGGLoss`), the adversarial loss is
  ``-log D(G(LR))`` (:func:`generator_adversarial_loss`).

The epoch functions take ready-made objects (models, a DataLoader, optimisers, a loss) so the
notebook can drive them step by step; ``train.py`` builds those objects from the config and
strings the epochs together with checkpoints and logs.

Multi-process training (``torchrun``, see ``train.py``): :func:`init_distributed` joins the
process group, the models are wrapped in DistributedDataParallel, and the helpers of the section
"Multi-process training" keep the ranks in lock-step -- a non-finite loss on any rank stops every
rank (:class:`LossWatch`, :func:`check_finite`), the time budget is measured on one shared clock
(:class:`RunClock`), and :func:`unwrap` gives the plain module whose weights are saved.

Host synchronisations: the epoch functions keep their losses on the device and read them every
``sync_every`` steps (:class:`LossWatch`), so a GPU is never waited for in between.

Learning rate: every iteration the optimisers' lr is set to ``lr_fn(clock.progress())``, where the
:class:`RunClock` progress is the fraction of the planned iterations done (or of the wall-clock
budget spent, whichever is further) -- see :func:`make_lr_fn`. Stage 2's "1e-4, then 1e-5 for the
second half" is the ``step`` schedule.
"""
import contextlib
import copy
import datetime
import math
import os
import random
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm.auto import tqdm

import utils
from imresize import imresize_torch

CHECKPOINT_FORMAT = "srgan-course/1"
"""Value of the ``format`` key of every checkpoint this project writes (read by models.load_generator)."""

REAL_LABEL, FAKE_LABEL = 1.0, 0.0
"""Discriminator targets: D should output probability 1 for HR images, 0 for generated ones."""

LR_SCHEDULES = ("constant", "cosine", "step")
"""Names accepted by :func:`make_lr_fn` (config key ``stage*.lr_schedule``)."""


# ----------------------------------------------------------------------------------------------
# Devices, precision, memory format
# ----------------------------------------------------------------------------------------------

def resolve_device(spec="auto"):
    """``'auto'`` -> CUDA when available, else CPU; otherwise ``torch.device(spec)``.

    Raises RuntimeError naming the device when CUDA is asked for but not available.
    """
    if spec in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {spec!r} requested but CUDA is not available "
                           f"(torch {torch.__version__}); use --device cpu")
    return device


AMP_MODES = (None, "bf16", "fp16", "auto")
"""Values of ``train.amp``: full float32, bfloat16 autocast, float16 autocast with gradient
scaling (:func:`make_grad_scaler`), or the best of them for the device (:func:`resolve_amp`)."""

BF16_MIN_CAPABILITY = (8, 0)
"""CUDA compute capability from which bfloat16 runs natively (Ampere: A100, RTX 30xx); older
cards (T4 7.5, V100 7.0) emulate it slowly, so ``'auto'`` picks float16 there."""

_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_amp(amp, device):
    """The amp mode to train with on ``device``: ``'auto'`` -> ``'bf16'`` on CUDA devices of
    compute capability >= :data:`BF16_MIN_CAPABILITY`, ``'fp16'`` on older CUDA devices, None
    (float32) elsewhere (the CPU keeps its float32 numerics); other values are returned as
    they are (ValueError for an unknown one)."""
    if amp not in AMP_MODES:
        raise ValueError(f"unknown amp mode {amp!r}: use one of {AMP_MODES}")
    if amp != "auto":
        return amp
    device = torch.device(device)
    if device.type != "cuda":
        return None
    capability = torch.cuda.get_device_capability(device)
    return "bf16" if tuple(capability) >= BF16_MIN_CAPABILITY else "fp16"


def autocast(device, amp=None):
    """Autocast context for ``amp`` (None: full float32; ``'bf16'`` / ``'fp16'``: autocast to
    bfloat16 / float16 on ``device``'s type; resolve ``'auto'`` with :func:`resolve_amp` first)."""
    if amp not in (None, "bf16", "fp16"):
        raise ValueError(f"unknown amp mode {amp!r}: use None, 'bf16' or 'fp16'"
                         + (" (resolve 'auto' with solver.resolve_amp)" if amp == "auto" else ""))
    return torch.autocast(device_type=torch.device(device).type,
                          dtype=_AMP_DTYPES.get(amp, torch.bfloat16), enabled=amp is not None)


def float32_region(x):
    """A context in which autocast is off on ``x``'s device: what runs inside computes in the
    dtype of its inputs (the content losses run in float32 under any amp mode)."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def make_grad_scaler(amp, device):
    """A ``torch.amp.GradScaler`` for ``amp == 'fp16'`` (float16 gradients underflow without
    loss scaling), else None. Make one per optimiser: each scaler's ``update()`` must follow
    exactly one ``step()`` of its optimiser (a shared scaler stepped for G and D would adjust
    its scale from the mixed history of both). Its state dict goes into the checkpoint."""
    if amp != "fp16":
        return None
    return torch.amp.GradScaler(torch.device(device).type)


GRAD_CLIP_MODES = ("norm", "value")
"""How :func:`optimizer_step` clips: the global L2 norm of all gradients, or each element."""


def optimizer_step(loss, optimizer, scaler=None, clip=None, clip_mode="norm"):
    """``zero_grad``, backward of ``loss`` and one step of ``optimizer`` -- through ``scaler``
    (fp16: scaled backward, the step skipped when the gradients overflowed, then the scale
    updated; note that GradScaler reads its overflow flag on the host, one synchronisation per
    step) when one is given. ``clip``: the gradients are first clipped to this bound, on
    their global L2 norm (``clip_mode='norm'``) or element by element (``'value'``); VDSR's
    adjustable clipping passes theta / lr (:func:`adjustable_clip`). None: no clipping."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
    else:
        scaler.scale(loss).backward()
        if clip is not None:
            scaler.unscale_(optimizer)          # clip the true gradients, not the scaled ones
    if clip is not None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if clip_mode == "norm":
            torch.nn.utils.clip_grad_norm_(params, clip)
        elif clip_mode == "value":
            torch.nn.utils.clip_grad_value_(params, clip)
        else:
            raise ValueError(f"unknown clip mode {clip_mode!r}: use one of {GRAD_CLIP_MODES}")
    if scaler is None:
        optimizer.step()
        return
    scaler.step(optimizer)
    scaler.update()


def adjustable_clip(theta, lr):
    """The bound of VDSR's adjustable gradient clipping (Kim et al. 2016, Sec. 3.2):
    ``theta / lr``, so that the SGD update ``lr * g`` never exceeds ``theta`` while the lr is
    high and the clipping loosens as the lr falls. None when ``theta`` is None."""
    return None if theta is None else theta / lr


OPTIMIZERS = ("adam", "sgd")
"""Optimisers of a stage (``stage1.optimizer``): Adam (SRGAN, the demo) or momentum SGD (the
SRCNN, FSRCNN and VDSR papers)."""


def make_optimizer(model, kind="adam", lr=1e-4, betas=(0.9, 0.999), momentum=0.9,
                   weight_decay=0.0, last_layer_lr_scale=1.0):
    """The optimiser of ``model``: ``'adam'`` (``betas``) or ``'sgd'`` (``momentum``), with L2
    ``weight_decay``. With ``last_layer_lr_scale`` != 1 the model's ``last_layer`` gets its own
    parameter group whose lr is that multiple of the lr (SRCNN: 1e-4 for the first layers,
    1e-5 for the last; FSRCNN: 1e-3 and 1e-4). Every group carries its ``lr_scale``, which
    :func:`set_lr` keeps when the schedule changes the lr."""
    if kind not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {kind!r}: use one of {OPTIMIZERS}")
    last = getattr(unwrap(model), "last_layer", None) if last_layer_lr_scale != 1 else None
    if last_layer_lr_scale != 1 and last is None:
        raise ValueError(f"{type(unwrap(model)).__name__} has no last_layer: "
                         f"last_layer_lr_scale must stay 1")
    last_ids = {id(p) for p in last.parameters()} if last is not None else set()
    groups = [{"params": [p for p in model.parameters() if id(p) not in last_ids], "lr_scale": 1.0}]
    if last_ids:
        groups.append({"params": list(last.parameters()), "lr_scale": float(last_layer_lr_scale)})
    for group in groups:
        group["lr"] = lr * group["lr_scale"]
    if kind == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=tuple(betas), weight_decay=weight_decay)
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)


@contextlib.contextmanager
def cudnn_benchmark(enabled):
    """Within the block ``torch.backends.cudnn.benchmark = enabled`` (then restored): cuDNN
    picks the fastest convolution algorithms for the fixed training patch size once; validation
    (whole images of varying sizes, which would be re-tuned for every size) runs outside."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = bool(enabled) or before
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def to_device(x, device, channels_last=False):
    """Move a batch tensor to ``device`` (NHWC memory format when ``channels_last`` and 4-D)."""
    if channels_last and x.dim() == 4:
        return x.to(device, memory_format=torch.channels_last, non_blocking=True)
    return x.to(device, non_blocking=True)


def prepare_model(model, device, channels_last=False):
    """Move ``model`` to ``device`` (and to NHWC memory format when ``channels_last``); returns it."""
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def unwrap(model):
    """The plain module behind ``torch.compile`` and DistributedDataParallel wrappers (in any
    order and number; the module itself when not wrapped): the one whose state dict is saved,
    without ``_orig_mod.`` / ``module.`` key prefixes."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


# ----------------------------------------------------------------------------------------------
# Multi-process training (DistributedDataParallel)
# ----------------------------------------------------------------------------------------------

DIST_TIMEOUT = datetime.timedelta(minutes=30)
"""How long a rank waits at a collective (e.g. for rank 0's validation and checkpoint) before
the run is declared hung."""


def init_distributed(device_spec="auto"):
    """Join the process group when started by ``torchrun`` (environment ``WORLD_SIZE`` > 1).

    Backend NCCL when ``device_spec`` resolves to CUDA (each rank then uses ``cuda:LOCAL_RANK``),
    gloo on the CPU. A no-op without torchrun or when already initialised. Returns the
    world size.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or is_distributed():
        return world_size()
    device = rank_device(device_spec)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", timeout=DIST_TIMEOUT, device_id=device)
    else:
        dist.init_process_group("gloo", timeout=DIST_TIMEOUT)
    return world_size()


def close_distributed():
    """Leave the process group (when in one)."""
    if is_distributed():
        dist.destroy_process_group()


def is_distributed():
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank():
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def world_size():
    """Number of processes training together (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process():
    """True on rank 0: the process that validates and writes checkpoints and logs."""
    return rank() == 0


def rank_device(spec="auto"):
    """:func:`resolve_device`, except that a CUDA device under torchrun is ``cuda:LOCAL_RANK``
    (one GPU per rank; the index of ``spec`` is then ignored). A CUDA device is made the
    current one (``torch.cuda.set_device``), so nothing of this process -- the pin-memory
    thread, the RNG, the caching allocator -- opens a context on GPU 0 when it trains on
    ``cuda:N``. A CPU device touches nothing of CUDA."""
    device = resolve_device(spec)
    if device.type == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
    return device


def local_rank():
    """This process's rank on its node (``LOCAL_RANK`` of torchrun; the global rank without
    it, 0 without a process group)."""
    return int(os.environ.get("LOCAL_RANK", rank())) if is_distributed() else 0


def _collective_device():
    """Where small tensors for collectives live: the rank's GPU for NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_max(value):
    """The largest float ``value`` over all ranks (``value`` itself without a process group)."""
    if not is_distributed():
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.item()


def all_reduce_mean(metrics, keys):
    """``metrics`` (dict) with the float entries ``keys`` averaged over all ranks (in place)."""
    keys = [k for k in keys if k in metrics]
    if is_distributed() and keys:
        t = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64,
                         device=_collective_device())
        dist.all_reduce(t)
        for k, v in zip(keys, (t / world_size()).tolist()):
            metrics[k] = v
    return metrics


class RankFailure(RuntimeError):
    """Raised on the ranks that were fine when another rank of the run failed."""


def agree(ok, what="another rank failed"):
    """A barrier that also carries failure: every rank calls it with ``ok`` (its own success);
    if any rank passes False, the ranks that passed True raise :class:`RankFailure`. Without
    a process group it does nothing. Used where rank 0 alone validates and writes files, so a
    failure there stops the others instead of leaving them waiting (:class:`RankFailure`)."""
    if not is_distributed():
        return
    failed = all_reduce_max(0.0 if ok else 1.0)
    if failed and ok:
        raise RankFailure(f"rank {rank()} stops: {what}")


def broadcast_buffers(model):
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank, so that all ranks
    hold the module that rank 0 saves. (DDP broadcasts them at the start of every forward, so
    after the last step of an epoch they differ by that step's update.)"""
    if is_distributed():
        for buf in unwrap(model).buffers():
            dist.broadcast(buf, src=0)


# ----------------------------------------------------------------------------------------------
# Random number generators
# ----------------------------------------------------------------------------------------------

def seed_everything(seed):
    """Seed python's ``random``, numpy's global RNG and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def get_rng_state():
    """States of the python, numpy and torch (+CUDA) RNGs as tensors and plain types.

    The dict can be stored in a checkpoint read with ``torch.load(weights_only=True)``.
    """
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():   # a CPU run never touches CUDA
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state, device=None):
    """Restore the RNG states saved by :func:`get_rng_state`.

    CUDA states (one per GPU of the saving machine) are restored by index onto the GPUs this
    process sees, as many as fit: a run saved by 4 torchrun ranks resumes on 1 GPU (or with
    ``CUDA_VISIBLE_DEVICES=0``) with GPU 0's state, the others are dropped. Skipped when
    ``device`` (where this run trains; None: whenever CUDA is available) is not a CUDA device.
    """
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["gauss"]))
    torch.set_rng_state(state["torch"])
    on_cuda = device is None or torch.device(device).type == "cuda"
    if state.get("cuda") and on_cuda and torch.cuda.is_available():
        for index, cuda_state in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)


def epoch_generator(seed, epoch):
    """A ``torch.Generator`` seeded with ``seed + epoch``: the shuffling order of that epoch.

    Giving each epoch's DataLoader its own generator makes the data order depend only on the
    seed and the epoch number, so a resumed run sees the same batches as an uninterrupted one.
    """
    return torch.Generator().manual_seed(int(seed) + int(epoch))


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------

def pixel_loss(sr, hr, kind="mse", y_only=False):
    """Pixel content loss between ``sr`` and ``hr``, both ``(N,3,H,W)`` float in [0,1].

    ``kind`` is ``'mse'`` or ``'l1'``. With ``y_only`` (SRCNN/VDSR, which only predict luminance)
    the loss compares the Y channels of ``utils.rgb2ycbcr_torch``. Returns a float32 scalar.
    """
    if kind not in ("mse", "l1"):
        raise ValueError(f"unknown pixel loss {kind!r}: use 'mse' or 'l1'")
    with float32_region(sr):                   # the Y conversion (a matmul) stays float32 under amp
        sr, hr = sr.float(), hr.float()
        if y_only:
            sr, hr = utils.rgb2ycbcr_torch(sr)[:, :1], utils.rgb2ycbcr_torch(hr)[:, :1]
        return F.mse_loss(sr, hr) if kind == "mse" else F.l1_loss(sr, hr)


class PixelLoss(torch.nn.Module):
    """:func:`pixel_loss` as a module: ``forward(sr, hr) -> scalar``."""

    def __init__(self, kind="mse", y_only=False):
        super().__init__()
        if kind not in ("mse", "l1"):
            raise ValueError(f"unknown pixel loss {kind!r}: use 'mse' or 'l1'")
        self.kind, self.y_only = kind, y_only

    def forward(self, sr, hr):
        return pixel_loss(sr, hr, self.kind, self.y_only)


class VGGLoss(torch.nn.Module):
    """The paper's VGG content loss: MSE between ``feature_scale * phi_{i,j}`` of SR and HR.

    ``vgg`` is a frozen ``models.TruncatedVGG19`` (it normalises its ``(N,3,H,W)`` [0,1] input
    itself). The paper multiplies the feature maps by 1/12.75 (``cfg.vgg.feature_scale``) so the
    loss has the magnitude of a pixel MSE. Gradients flow to ``sr`` (and so to the generator);
    the HR features are computed without a graph. The VGG runs in float32 with autocast off
    (under bf16 autocast its features, and so the loss, would change by ~1%). Returns a float32
    scalar.
    """

    def __init__(self, vgg, feature_scale):
        super().__init__()
        self.vgg, self.feature_scale = vgg, float(feature_scale)
        for p in self.vgg.parameters():
            p.requires_grad_(False)
        self.vgg.eval()

    def train(self, mode=True):
        """The VGG stays in eval mode (it is a fixed feature extractor)."""
        super().train(mode)
        self.vgg.eval()
        return self

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


def check_finite(loss, name, stage, epoch, step):
    """Raise FloatingPointError naming the loss, stage, epoch and step when ``loss`` is NaN/inf.

    Called before every optimiser step, so non-finite values never reach the weights or a
    checkpoint. In a multi-process run the ranks agree first (one small all-reduce): a
    non-finite loss on any rank stops all of them at the same step, none is left waiting.
    Returns ``loss.item()``.
    """
    value = loss.item()
    here = not math.isfinite(value)
    anywhere = all_reduce_max(float(here)) > 0 if is_distributed() else here
    if anywhere:
        raise non_finite_error(name, stage, epoch, step, value=value if here else None,
                               other_rank=not here, before_update=True)
    return value


SYNC_EVERY = 25
"""Default steps between two host reads of the training losses (``train.sync_every``)."""


def non_finite_error(name, stage, epoch, step, checked_at=None, value=None, other_rank=False,
                     before_update=False):
    """The FloatingPointError of a non-finite ``name`` loss first seen at ``step`` (said to have
    stopped the run before the optimiser step when ``before_update``)."""
    what = (f"non-finite {name} loss on another rank (this is rank {rank()})" if other_rank
            else f"non-finite {name} loss" + (f" ({value})" if value is not None else ""))
    later = ("" if checked_at is None or checked_at == step else
             f" (found at the check after step {checked_at}: the weights of steps {step}-"
             f"{checked_at} in memory are not finite and are not saved)")
    stopped = "before the optimiser step and " if before_update else ""
    return FloatingPointError(
        f"{what} in stage {stage!r}, epoch {epoch}, step {step}{later}: training stopped "
        f"{stopped}before any checkpoint of this epoch was written (the previous checkpoint is "
        f"intact). Lower the learning rate, or check the data and the model.")


class LossWatch:
    """Running sums of training losses kept on their device, and the first non-finite one.

    The epoch functions call :meth:`add` every step; nothing of it waits for the GPU. The host
    reads everything at once with :meth:`read` -- every ``train.sync_every`` steps (progress
    bar, the non-finite check, and in a multi-process run the ranks' agreement on it) and at the
    end of the epoch: one synchronisation per read instead of several per step. Names added
    with ``check=True`` are watched for NaN/inf: :meth:`read` raises the FloatingPointError of
    the earliest non-finite value (:func:`non_finite_error`) naming its step. So a non-finite
    loss stops the run at most ``sync_every`` steps after it happened, and always before the
    end of its epoch, i.e. before any checkpoint is written with it.
    """

    LABELS = {"content_loss": "content", "d_loss": "discriminator"}
    """How the error names a watched sum (others by their own name, e.g. 'generator')."""

    def __init__(self):
        self.sums, self.counts, self.alive, self.good = {}, {}, {}, {}
        self.extremes = {}

    def add(self, name, value, check=False):
        """Add the 0-dim tensor ``value`` to the sum ``name`` (and, with ``check``, keep count of
        the values before the first non-finite one)."""
        value = value.detach()
        if name not in self.sums:
            self.sums[name] = torch.zeros((), dtype=torch.float64, device=value.device)
            self.counts[name] = 0
            if check:
                self.alive[name] = torch.ones((), dtype=torch.bool, device=value.device)
                self.good[name] = torch.zeros((), dtype=torch.int64, device=value.device)
        self.sums[name] += value
        self.counts[name] += 1
        if name in self.alive:
            self.alive[name] &= torch.isfinite(value)
            self.good[name] += self.alive[name]

    def extreme(self, name, value, largest):
        """Keep the largest (``largest``) or smallest ``value`` under ``name``."""
        value = value.detach().to(torch.float64)
        old = self.extremes.get(name)
        self.extremes[name] = value if old is None else (
            torch.maximum(old, value) if largest else torch.minimum(old, value))

    def read(self, steps_of=None, where=("train", 1), checked_at=None):
        """Everything on the host in one transfer: ``{name: mean}`` and ``{name: extreme}``.

        ``steps_of(name, index)`` maps the 0-based index of an added value to its training step
        (default ``index + 1``); ``where = (stage, epoch)``; ``checked_at``: the step now, named
        in the error. Raises FloatingPointError for a non-finite watched value -- in a process
        group on every rank, the ranks agreeing with one all-reduce.
        """
        names, extremes, watched = list(self.sums), list(self.extremes), list(self.good)
        parts = ([self.sums[n] for n in names] + [self.extremes[n] for n in extremes]
                 + [self.good[n].to(torch.float64) for n in watched])
        values = torch.stack(parts).tolist() if parts else []        # the one host sync
        sums = dict(zip(names, values))
        extreme = dict(zip(extremes, values[len(names):]))
        good = dict(zip(watched, values[len(names) + len(extremes):]))
        steps_of = steps_of or (lambda name, index: index + 1)
        bad = [(steps_of(n, int(good[n])), n) for n in watched if int(good[n]) < self.counts[n]]
        first = min(bad) if bad else None
        if is_distributed():
            worst = all_reduce_max(1.0 if first else 0.0)
            if worst and first is None:
                raise non_finite_error("training", *where, checked_at, other_rank=True)
        if first is not None:
            raise non_finite_error(self.LABELS.get(first[1], first[1]), *where, first[0], checked_at)
        means = {n: sums[n] / max(self.counts[n], 1) for n in names}
        return means, extreme


# ----------------------------------------------------------------------------------------------
# Learning-rate schedule and run clock
# ----------------------------------------------------------------------------------------------

class RunClock:
    """Iterations and wall time of a training stage; gives the schedule's progress in [0, 1].

    ``progress() = max(step / total_steps, elapsed / time_budget_s)`` (terms whose denominator is
    None are left out), capped at 1. With a time budget a slow machine ends the stage on time and
    still follows its lr schedule to the end; without one the progress depends only on ``step``,
    so runs are reproducible. ``elapsed_s`` counts the wall time since :meth:`start` plus the
    time of earlier sessions (restored from a checkpoint).

    In a multi-process run with a time budget the progress uses the largest elapsed time over
    the ranks, agreed at :meth:`start` and every ``share_every`` :meth:`tick` (one all-reduce
    each time, not one per step), so every rank sets the same lr and stops at the same step.
    """

    def __init__(self, total_steps=None, time_budget_s=None, step=0, elapsed_s=0.0,
                 share_every=SYNC_EVERY):
        self.total_steps = total_steps
        self.time_budget_s = time_budget_s
        self.share_every = max(1, int(share_every))
        self.step = int(step)
        self._elapsed_before = float(elapsed_s)
        self._started = None
        self._shared_elapsed = None    # the agreed elapsed time of a multi-process run

    def _share(self):
        if self.time_budget_s and is_distributed():
            self._shared_elapsed = all_reduce_max(self.elapsed_s)

    def start(self):
        """Start (or restart) counting wall time."""
        self._started = time.perf_counter()
        self._share()
        return self

    @property
    def elapsed_s(self):
        running = time.perf_counter() - self._started if self._started is not None else 0.0
        return self._elapsed_before + running

    def progress(self):
        fractions = [0.0]
        if self.total_steps:
            fractions.append(self.step / self.total_steps)
        if self.time_budget_s:
            elapsed = self.elapsed_s if self._shared_elapsed is None else self._shared_elapsed
            fractions.append(elapsed / self.time_budget_s)
        return min(1.0, max(fractions))

    def finished(self):
        """True once the planned iterations are done or the time budget is spent."""
        return self.progress() >= 1.0

    def tick(self):
        """Count one iteration (and agree the elapsed time every ``share_every`` of them)."""
        self.step += 1
        if self.step % self.share_every == 0:
            self._share()

    def state_dict(self):
        return {"step": self.step, "elapsed_s": self.elapsed_s, "total_steps": self.total_steps,
                "time_budget_s": self.time_budget_s}

    @classmethod
    def from_state_dict(cls, state, total_steps=None, time_budget_s=None, share_every=SYNC_EVERY):
        """A clock continuing ``state``; the plan (``total_steps``, budget) may be changed."""
        return cls(total_steps, time_budget_s, state["step"], state["elapsed_s"], share_every)


def make_lr_fn(base_lr, schedule="constant", decay_at=0.5, decay_factor=0.1, min_lr=0.0):
    """Return ``lr_fn(progress) -> lr`` for ``progress`` in [0, 1].

    ``'constant'``: ``base_lr``. ``'cosine'``: from ``base_lr`` down to ``min_lr`` along half a
    cosine. ``'step'``: ``base_lr`` until ``decay_at`` (a fraction, or a list of fractions), then
    multiplied by ``decay_factor`` at each one (the paper's SRGAN: 1e-4, then 1e-5 for the
    second half).
    """
    if schedule == "constant":
        return lambda progress: base_lr
    if schedule == "cosine":
        return lambda progress: min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "step":
        points = sorted(decay_at if isinstance(decay_at, (list, tuple)) else [decay_at])
        return lambda progress: base_lr * decay_factor ** sum(progress >= p for p in points)
    raise ValueError(f"unknown lr schedule {schedule!r}: use one of {LR_SCHEDULES}")


def set_lr(optimizer, lr):
    """Set the learning rate of every parameter group of ``optimizer`` to ``lr`` x the group's
    ``lr_scale`` (1 when absent; see :func:`make_optimizer`)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


# ----------------------------------------------------------------------------------------------
# One epoch of each stage
# ----------------------------------------------------------------------------------------------

def _progress_bar(loader, stage, epoch, progress):
    return tqdm(loader, desc=f"{stage} epoch {epoch}", disable=not progress, leave=False,
                dynamic_ncols=True)


def _timed(iterable, waits):
    """Yield from ``iterable``, adding the seconds spent waiting for each item to ``waits[0]``
    (the data-wait time of the throughput report)."""
    iterator = iter(iterable)
    while True:
        t0 = time.perf_counter()
        try:
            item = next(iterator)
        except StopIteration:
            return
        waits[0] += time.perf_counter() - t0
        yield item


def _throughput(steps, patches, seconds, data_s):
    """The epoch's throughput entries: ``it_per_s``, ``patches_per_s`` and ``data_wait`` (the
    fraction of the epoch spent waiting for the DataLoader: near 1 = the loader is the
    bottleneck, near 0 = the model is)."""
    return {"it_per_s": steps / seconds if seconds > 0 else 0.0,
            "patches_per_s": patches / seconds if seconds > 0 else 0.0,
            "data_wait": data_s / seconds if seconds > 0 else 0.0}


def pixel_step(generator, optimizer, lr_img, hr_img, loss_fn, amp=None, device="cpu",
               scaler=None, clip=None, clip_mode="norm"):
    """One update of the generator alone (stage 1): ``loss = loss_fn(G(lr), hr)``.

    ``lr_img`` ``(N,3,h,w)``, ``hr_img`` ``(N,3,s*h,s*w)``, float in [0,1]. ``clip``,
    ``clip_mode``: gradient clipping (VDSR, :func:`optimizer_step`). Returns the loss as a 0-dim
    tensor, not read on the host."""
    with autocast(torch.device(device), amp):
        sr = generator(lr_img)                         # (N,3,s*h,s*w) ~[0,1]
        loss = loss_fn(sr, hr_img)                     # pixel (Y for SRCNN/FSRCNN/VDSR) or VGG
    optimizer_step(loss, optimizer, scaler, clip, clip_mode)
    return loss.detach()


def train_epoch_mse(generator, loader, optimizer, loss_fn, device, *, clock=None, lr_fn=None,
                    amp=None, channels_last=False, stage="srresnet", epoch=1, progress=True,
                    scaler=None, sync_every=SYNC_EVERY, clip_theta=None, clip_mode="norm"):
    """One epoch of stage 1: the generator alone with a pixel loss.

    ``loader`` yields ``(lr, hr)``: ``(N,3,h,w)`` and ``(N,3,s*h,s*w)`` float in [0,1].
    ``loss_fn(sr, hr) -> scalar`` (e.g. :class:`PixelLoss`). Before every iteration the lr is set
    to ``lr_fn(clock.progress())`` (when ``lr_fn`` is given); the epoch stops early once
    ``clock.finished()``. ``amp`` None / 'bf16' / 'fp16' (then with ``scaler``, see
    :func:`make_grad_scaler`). ``clip_theta``: VDSR's adjustable gradient clipping at theta / lr
    (:func:`adjustable_clip`) of the gradients' norm or elements (``clip_mode``); None: none.

    The losses stay on the device (:class:`LossWatch`) and are read on the host every
    ``sync_every`` steps and at the end: a non-finite loss raises FloatingPointError naming its
    step at the next read, before the epoch ends (so before any checkpoint is written).

    Returns a dict of epoch means: ``content_loss``, plus ``steps`` (iterations run), ``lr``
    (the last one), ``stopped_early`` and the throughput (``it_per_s``, ``patches_per_s``,
    ``data_wait``, see :func:`_throughput`).
    """
    device = torch.device(device)
    clock = clock if clock is not None else RunClock().start()
    generator.train()
    watch, steps, patches, waits = LossWatch(), 0, 0, [0.0]
    lr = optimizer.param_groups[0]["lr"]
    first_step = clock.step
    where = (stage, epoch)
    steps_of = lambda name, index: first_step + index + 1
    start = time.perf_counter()
    bar = _progress_bar(loader, stage, epoch, progress)
    for lr_img, hr_img in _timed(bar, waits):
        if clock.finished():
            break
        if lr_fn is not None:
            lr = lr_fn(clock.progress())
            set_lr(optimizer, lr)
        lr_img, hr_img = to_device(lr_img, device, channels_last), to_device(hr_img, device, channels_last)
        loss = pixel_step(generator, optimizer, lr_img, hr_img, loss_fn, amp, device, scaler,
                          adjustable_clip(clip_theta, lr), clip_mode)
        watch.add("content_loss", loss, check=True)
        clock.tick()
        steps += 1
        patches += lr_img.shape[0]
        if steps % sync_every == 0:
            means, _ = watch.read(steps_of, where, clock.step)
            bar.set_postfix(loss=f"{means['content_loss']:.4g}", refresh=False)
    bar.close()
    means, _ = watch.read(steps_of, where, clock.step)
    seconds = time.perf_counter() - start
    return {"content_loss": means.get("content_loss", 0.0), "steps": steps, "lr": lr,
            "stopped_early": clock.finished(), **_throughput(steps, patches, seconds, waits[0])}


def _set_requires_grad(model, flag):
    for p in model.parameters():
        p.requires_grad_(flag)


class GeneratorEMA:
    """Exponential moving average of a generator's weights (an option of stage 2).

    After every generator step: ``ema = decay * ema + (1 - decay) * w`` for every floating-point
    parameter and buffer ``w`` (BatchNorm running statistics included; integer buffers such as
    ``num_batches_tracked`` are copied). The averaged generator is steadier than the raw one,
    whose weights jitter with every adversarial step; it is the one validated and the one
    ``models.load_generator`` loads (checkpoint key ``generator_ema``). ``decay`` in [0, 1).
    """

    def __init__(self, model, decay):
        if not 0.0 <= float(decay) < 1.0:
            raise ValueError(f"stage2.ema_decay must be in [0, 1), got {decay!r}")
        self.decay = float(decay)
        self.model = copy.deepcopy(unwrap(model)).eval()
        _set_requires_grad(self.model, False)

    @torch.no_grad()
    def update(self, model):
        """Blend the current weights of ``model`` (the trained generator) into the average."""
        source = unwrap(model).state_dict()
        for name, avg in self.model.state_dict().items():
            new = source[name].detach()
            if avg.dtype.is_floating_point:
                avg.mul_(self.decay).add_(new.to(avg.dtype), alpha=1.0 - self.decay)
            else:
                avg.copy_(new)

    def state_dict(self):
        return self.model.state_dict()

    def load_state_dict(self, state):
        self.model.load_state_dict(state)


def discriminator_step(discriminator, optimizer_d, hr, sr, amp=None, device="cpu",
                       where=("srgan", 1, 1), scaler=None, check=True):
    """One update of D: real HR patches should score 1, generated ones 0.

    ``hr``, ``sr``: ``(N,3,H,W)`` float in [0,1]; ``sr`` is detached here, so this step never
    trains the generator. ``where`` = ``(stage, epoch, step)`` names the step if the loss is
    not finite (FloatingPointError before the update, see :func:`check_finite`; with ``check``
    False the caller watches the returned loss itself, without a host sync here: see
    :class:`LossWatch`). ``scaler``: D's own GradScaler under fp16. Returns ``(d_loss, d_real,
    d_fake)`` as 0-dim tensors (D's loss and its mean probabilities on the real and the fake
    batch) without reading them on the host.
    """
    _set_requires_grad(discriminator, True)
    with autocast(torch.device(device), amp):
        real_logits = discriminator(hr)                         # (N,) logits
        fake_logits = discriminator(sr.detach())                # (N,) logits
        d_loss = discriminator_loss(real_logits, fake_logits)   # BCE(real, 1) + BCE(fake, 0)
    if check:
        check_finite(d_loss, "discriminator", *where)
    optimizer_step(d_loss, optimizer_d, scaler)
    return (d_loss.detach(), torch.sigmoid(real_logits.detach().float()).mean(),
            torch.sigmoid(fake_logits.detach().float()).mean())


def generator_step(discriminator, optimizer_g, sr, hr, content_loss_fn, adv_weight, amp=None,
                   device="cpu", where=("srgan", 1, 1), scaler=None, check=True):
    """One update of G with the paper's perceptual loss (eq. 3):
    ``l_SR = l_content(SR, HR) + adv_weight * (-log D(SR))``.

    ``sr = G(lr)`` ``(N,3,H,W)`` (with its graph), ``hr`` the same shape, both float ~[0,1].
    D is frozen during the step (no gradient reaches its weights). ``where``, ``check`` as in
    :func:`discriminator_step`; ``scaler``: G's own GradScaler under fp16. Returns ``(g_loss,
    content, adversarial)`` as 0-dim tensors.
    """
    _set_requires_grad(discriminator, False)
    with autocast(torch.device(device), amp):
        content = content_loss_fn(sr, hr)                                    # VGG (+ pixel) loss
        adversarial = generator_adversarial_loss(unwrap(discriminator)(sr))  # -log D(G(LR))
        g_loss = content + adv_weight * adversarial
    if check:
        check_finite(g_loss, "generator", *where)
    optimizer_step(g_loss, optimizer_g, scaler)
    _set_requires_grad(discriminator, True)
    return g_loss.detach(), content.detach(), adversarial.detach()


def train_epoch_gan(generator, discriminator, loader, optimizer_g, optimizer_d, content_loss_fn,
                    device, *, adv_weight=1e-3, d_steps=1, clock=None, lr_fn=None, d_lr_scale=1.0,
                    ema=None, amp=None, channels_last=False, stage="srgan", epoch=1,
                    progress=True, collapse_fake=None, collapse_real=None, scaler_g=None,
                    scaler_d=None, sync_every=SYNC_EVERY):
    """One epoch of stage 2 (SRGAN), the paper's Algorithm: for each batch, one step of D
    (:func:`discriminator_step`), then -- every ``d_steps``-th batch (``k`` of Goodfellow et al.;
    the paper uses k = 1) -- one step of G (:func:`generator_step`) on the same batch.

    ``loader`` yields ``(lr, hr)`` float in [0,1] as for :func:`train_epoch_mse`. The lr of G is
    set to ``lr_fn(clock.progress())`` before each batch, D's to ``d_lr_scale`` times that; the
    clock counts generator steps. ``ema`` (a :class:`GeneratorEMA`) is updated after every G
    step. ``amp`` as in :func:`train_epoch_mse`; under fp16 G and D have a GradScaler each
    (``scaler_g``, ``scaler_d``).

    The losses and D's probabilities stay on the device (:class:`LossWatch`), read on the host
    every ``sync_every`` batches and at the end of the epoch; a non-finite D or G loss raises
    FloatingPointError naming its step at the next read, before the epoch ends (so before any
    checkpoint is written).

    A collapsed discriminator -- every batch of the epoch with mean D(G(lr)) below
    ``collapse_fake`` and mean D(hr) above ``collapse_real`` -- is reported with a
    RuntimeWarning naming the epoch and step (the generator then gets almost no useful
    adversarial gradient).

    Returns a dict of epoch means: ``content_loss``, ``adv_loss`` (generator steps), ``d_loss``,
    ``d_real``, ``d_fake`` (mean probabilities of D steps), plus ``steps`` (generator steps),
    ``lr``, ``stopped_early``, ``d_collapsed`` and the throughput (``it_per_s`` in batches per
    second, ``patches_per_s``, ``data_wait``).
    """
    if d_steps < 1:
        raise ValueError(f"d_steps must be >= 1, got {d_steps}")
    device = torch.device(device)
    clock = clock if clock is not None else RunClock().start()
    generator.train()
    discriminator.train()
    watch, g_steps, d_count, patches, lr, waits = LossWatch(), 0, 0, 0, None, [0.0]
    first_step = clock.step
    # the index-th D loss of the epoch belongs to G step first_step + index // d_steps + 1
    steps_of = lambda name, index: first_step + (index // d_steps if name == "d_loss" else index) + 1
    where = (stage, epoch)
    start = time.perf_counter()
    bar = _progress_bar(loader, stage, epoch, progress)
    for i, (lr_img, hr_img) in enumerate(_timed(bar, waits)):
        if clock.finished():
            break
        if lr_fn is not None:
            lr = lr_fn(clock.progress())
            set_lr(optimizer_g, lr)
            set_lr(optimizer_d, lr * d_lr_scale)
        lr_img, hr_img = to_device(lr_img, device, channels_last), to_device(hr_img, device, channels_last)
        g_turn = (i + 1) % d_steps == 0
        with autocast(device, amp), torch.set_grad_enabled(g_turn):
            sr = generator(lr_img)                              # (N,3,4h,4w) super-resolved

        # 1. Discriminator step: tell HR (real) from SR (fake).
        d_loss, d_real, d_fake = discriminator_step(discriminator, optimizer_d, hr_img, sr, amp,
                                                    device, scaler=scaler_d, check=False)
        watch.add("d_loss", d_loss, check=True)
        watch.add("d_real", d_real)
        watch.add("d_fake", d_fake)
        watch.extreme("max_fake", d_fake, largest=True)
        watch.extreme("min_real", d_real, largest=False)
        d_count += 1
        patches += lr_img.shape[0]

        # 2. Generator step: content loss + adversarial loss through the (frozen) D.
        if g_turn:
            g_loss, content, adversarial = generator_step(
                discriminator, optimizer_g, sr, hr_img, content_loss_fn, adv_weight, amp, device,
                scaler=scaler_g, check=False)
            watch.add("generator", g_loss, check=True)
            watch.add("content_loss", content)
            watch.add("adv_loss", adversarial)
            if ema is not None:
                ema.update(generator)
            clock.tick()
            g_steps += 1
        if d_count % sync_every == 0:
            means, _ = watch.read(steps_of, where, clock.step)
            bar.set_postfix(content=f"{means.get('content_loss', math.nan):.4g}",
                            d_real=f"{means['d_real']:.2f}", d_fake=f"{means['d_fake']:.2f}",
                            refresh=False)
    bar.close()
    means, extreme = watch.read(steps_of, where, clock.step)
    seconds = time.perf_counter() - start
    metrics = {k: means.get(k, 0.0) for k in ("content_loss", "adv_loss", "d_loss", "d_real", "d_fake")}
    collapsed = (d_count > 0 and collapse_fake is not None and collapse_real is not None
                 and extreme["max_fake"] < collapse_fake and extreme["min_real"] > collapse_real)
    if collapsed:
        warnings.warn(
            f"discriminator collapse in stage {stage!r}, epoch {epoch} (up to step {clock.step}): "
            f"for the whole epoch D(real) > {collapse_real} and D(fake) < {collapse_fake} "
            f"(means {metrics['d_real']:.4f} / {metrics['d_fake']:.4f}); the generator gets almost no "
            f"adversarial signal -- consider a lower D learning rate or adv_weight",
            RuntimeWarning, stacklevel=2)
    metrics.update(steps=g_steps, lr=lr if lr is not None else optimizer_g.param_groups[0]["lr"],
                   stopped_early=clock.finished(), d_collapsed=bool(collapsed),
                   **_throughput(d_count, patches, seconds, waits[0]))
    return metrics


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------

VALIDATION_METRICS = ("psnr", "ssim", "lr_psnr", "niqe")
"""What :func:`validate` can measure: PSNR-Y / SSIM-Y (dB / [0,1], ``scale`` px shaved), LR-PSNR
(dB, RGB, ``imresize(SR, 1/scale)`` vs the LR input: faithfulness) and NIQE (no reference,
lower = more natural)."""


VALIDATION_TILE = 128
"""LR tile side of validation on CUDA (:func:`validation_tile`): a 2K DIV2K_valid image whole
through SRResNet needs several GB of activations; tiles with the receptive-field overlap of
``super_resolve.upscale_image`` give the same image (within one gray level)."""


def validation_tile(device):
    """The ``tile`` of ``super_resolve.upscale_image`` for validating on ``device``:
    :data:`VALIDATION_TILE` on CUDA, None (whole images, as before) on the CPU."""
    return VALIDATION_TILE if torch.device(device).type == "cuda" else None


def validate(generator, dataset, scale, device="cpu", metrics=("psnr", "ssim"), tile="auto"):
    """Mean ``metrics`` (names from :data:`VALIDATION_METRICS`) of ``generator`` over ``dataset``.

    ``dataset`` yields ``(lr, hr, name)`` uint8 images (``datasets.TestDataset``); each LR image
    is super-resolved by ``super_resolve.upscale_image``: in tiles of ``tile`` LR pixels
    (``'auto'``: :func:`validation_tile`, i.e. tiled on CUDA, whole on the CPU; None: whole). The generator is put in eval mode
    and returned to its previous mode. NIQE skips images smaller than one 96x96 block (its
    mean is None when no image is large enough). Returns ``{metric: float, "images": int}``.
    """
    import super_resolve  # imported here: super_resolve imports models, which may import solver

    unknown = set(metrics) - set(VALIDATION_METRICS)
    if unknown:
        raise ValueError(f"unknown validation metric(s) {sorted(unknown)}: use {VALIDATION_METRICS}")
    model = unwrap(generator)
    tile = validation_tile(device) if tile == "auto" else tile
    was_training = model.training
    model.eval()
    scores = {m: [] for m in metrics}
    try:
        for i in range(len(dataset)):
            lr, hr, _ = dataset[i]
            sr = super_resolve.upscale_image(model, lr, device=device, tile=tile)  # uint8, HR
            for m in metrics:
                if m == "psnr":
                    scores[m].append(utils.psnr(sr, hr, shave=scale))
                elif m == "ssim":
                    scores[m].append(utils.ssim(sr, hr, shave=scale))
                elif m == "lr_psnr":
                    scores[m].append(utils.lr_psnr(sr, lr, scale))
                elif min(sr.shape[:2]) >= utils.NIQE_BLOCK:
                    scores[m].append(utils.niqe(sr, crop_border=scale))
    finally:
        model.train(was_training)
    if len(dataset) == 0:
        raise ValueError("validation set is empty")
    out = {m: (float(np.mean(v)) if v else None) for m, v in scores.items()}
    out["images"] = len(dataset)
    return out


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------

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


class WriteError(OSError):
    """A checkpoint or log could not be written (e.g. a full disk); the previous file is intact.
    ``errno`` is the cause's; the message names the file."""

    def __str__(self):
        return str(self.strerror)


def write_failed(path, error, what="checkpoint"):
    """The :class:`WriteError` for ``error`` (an OSError) raised while replacing ``path``."""
    kept = f"the previous {what} is intact" if Path(path).exists() else "nothing was written"
    return WriteError(error.errno, f"cannot write {what} {path}: {error.strerror or error}; {kept}")


def save_checkpoint(path, state):
    """Write ``state`` to ``path`` atomically: a temp file ``.<name>.*.tmp`` in the same folder,
    flushed and fsynced, then ``os.replace``d over ``path``. A crash (SIGKILL, OOM, power loss)
    leaves either the old or the new file, never a truncated one; a failing write (e.g. a full
    disk) removes its temp file and raises :class:`WriteError` naming the file, with
    the previous checkpoint untouched. Makes the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, WriteError):
            raise write_failed(path, e) from e
        raise
    with contextlib.suppress(OSError):   # make the rename itself durable (not possible everywhere)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def remove_stale_temp_files(path):
    """Delete the temp files ``.<name>.*.tmp`` that writing ``path`` atomically left behind when
    the writing process was killed (they are never complete files). Returns their paths."""
    path = Path(path)
    stale = sorted(path.parent.glob(f".{path.name}.*.tmp")) if path.parent.is_dir() else []
    for tmp in stale:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return stale


def load_checkpoint(path, map_location="cpu"):
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises FileNotFoundError for a missing file and ValueError naming the file when it is not
    a readable checkpoint of this project (other format, truncated, not a torch file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types (pickle, zip, runtime) for a bad file
        from models import load_failure_reason
        raise ValueError(f"{path} is not a readable checkpoint: "
                         f"{load_failure_reason(path, e)}") from e
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path} is not a checkpoint of this project: format {found!r}, "
                         f"expected {CHECKPOINT_FORMAT!r}")
    return state


def make_checkpoint(*, stage, arch, arch_kwargs, scale, generator, epoch, step, config, history,
                    optimizer_g=None, scheduler_g=None, discriminator=None, optimizer_d=None,
                    scheduler_d=None, clock=None, finished=False, world_size=1, ema=None,
                    scaler_g=None, scaler_d=None):
    """The checkpoint dict of the contract (see module docstring of models.py).

    ``generator`` holds the trained weights (what a resumed run continues); with ``ema`` (a
    :class:`GeneratorEMA`) its averaged weights are stored too, as ``generator_ema``, and
    that is the generator ``models.load_generator`` returns for inference.

    Models may be ``torch.compile``d or DDP-wrapped (the plain module's weights are stored, keys
    without prefixes); ``world_size`` records how many processes trained; ``config`` may be
    an EasyDict (stored as plain dicts/lists); ``scheduler_*`` are dicts (see :func:`make_lr_fn`
    and :class:`RunClock`). ``scaler_g``/``scaler_d``: the fp16 GradScalers (their state dicts
    are stored, None without fp16). The RNG states are captured now.
    """
    def state_of(obj):
        return unwrap(obj).state_dict() if obj is not None else None

    return {
        "format": CHECKPOINT_FORMAT,
        "arch": arch,
        "arch_kwargs": to_plain(arch_kwargs),
        "scale": int(scale),
        "stage": stage,
        "generator": state_of(generator),
        "generator_ema": ema.state_dict() if ema is not None else None,
        "discriminator": state_of(discriminator),
        "optimizer_g": state_of(optimizer_g),
        "optimizer_d": state_of(optimizer_d),
        "scheduler_g": to_plain(scheduler_g),
        "scheduler_d": to_plain(scheduler_d),
        "clock": clock.state_dict() if clock is not None else None,
        "scaler_g": scaler_g.state_dict() if scaler_g is not None else None,
        "scaler_d": scaler_d.state_dict() if scaler_d is not None else None,
        "epoch": int(epoch),
        "step": int(step),
        "finished": bool(finished),
        "world_size": int(world_size),
        "rng": get_rng_state(),
        "config": to_plain(config),
        "history": to_plain(history),
    }
