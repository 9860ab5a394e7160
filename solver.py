"""The training algorithm of both stages: optimisers (with VDSR's clipping), lr schedules, the
step functions, one epoch of each stage, the generator's EMA, and the watch on the training
losses (:class:`LossWatch`: read on the host every few steps, non-finite ones named).
``train.py`` builds the objects from the config and strings the epochs together with
validation (``evaluate.validate``), checkpoints (``checkpoint.save_checkpoint``) and logs
(``train_log.py``); the losses live in ``losses.py``, the stage's clock in ``run_clock.py``,
devices and precision in ``runtime.py``, several processes in ``distributed.py``.

The two stages of the SRGAN paper (Ledig et al., CVPR 2017):

* stage 1 -- :func:`train_epoch_mse`: the generator alone (SRResNet, or a baseline: SRCNN,
  FSRCNN, VDSR, TransposedConvSR), :func:`pixel_step` after :func:`pixel_step` with a pixel loss
  (MSE, or L1 / VGG per config) between its output and the HR patch;
* stage 2 -- :func:`train_epoch_gan`: SRGAN. Each iteration makes one :func:`discriminator_step`
  on real HR patches (label 1) and generated ones (label 0), and every ``k``-th iteration a
  :func:`generator_step` with the perceptual loss ``content + adv_weight * adversarial``; the
  content loss is the MSE of rescaled VGG19 feature maps phi_{i,j} (``losses.VGGLoss``), the
  adversarial loss is ``-log D(G(LR))`` (``losses.generator_adversarial_loss``).

The epoch functions take ready-made objects -- each network with its optimiser
(:class:`Trainee`), a DataLoader, a loss, how the epoch runs (:class:`EpochPlan`) and stage 2's
settings (:class:`GANSettings`) -- which ``train.py`` builds from the config
(:func:`optimizer_of`, :func:`lr_schedule_of`); a test or a benchmark builds them by hand.

Host synchronisations: the epoch functions keep their losses on the device and read them every
``sync_every`` steps (:class:`LossWatch`), so a GPU is never waited for in between; under
``torchrun`` a non-finite loss on any rank stops every rank and the time budget is measured on
one shared clock (``run_clock.RunClock``).

Learning rate: every iteration the optimisers' lr is set to ``lr_fn(clock.progress())``, where the
clock's progress is the fraction of the planned iterations done (or of the wall-clock budget
spent, whichever is further) -- see :func:`make_lr_fn`. Stage 2's "1e-4, then 1e-5 for the
second half" is the ``step`` schedule.
"""
import copy
import math
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import torch

from distributed import all_reduce_max, is_distributed, rank
from losses import discriminator_loss, generator_adversarial_loss
from progress import progress_bar
from run_clock import SYNC_EVERY, RunClock
from runtime import autocast, to_device, unwrap

LR_SCHEDULES = ("constant", "cosine", "step")
"""Names accepted by :func:`make_lr_fn` (config key ``stage*.lr_schedule``)."""


# ----------------------------------------------------------------------------------------------
# Optimisers
# ----------------------------------------------------------------------------------------------

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
    groups = [{"params": list(model.parameters()), "lr_scale": 1.0}]
    if last_layer_lr_scale != 1:
        last = getattr(unwrap(model), "last_layer", None)
        if last is None:
            raise ValueError(f"{type(unwrap(model)).__name__} has no last_layer: "
                             f"last_layer_lr_scale must stay 1")
        last_ids = {id(p) for p in last.parameters()}
        groups = [{"params": [p for p in model.parameters() if id(p) not in last_ids],
                   "lr_scale": 1.0},
                  {"params": list(last.parameters()), "lr_scale": float(last_layer_lr_scale)}]
    for group in groups:
        group["lr"] = lr * group["lr_scale"]
    if kind == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=tuple(betas), weight_decay=weight_decay)
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)


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
# Learning-rate schedule
# ----------------------------------------------------------------------------------------------


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

@dataclass
class Trainee:
    """A network being trained: ``model`` (possibly DDP / compile wrapped), its ``optimizer``,
    and its fp16 ``GradScaler`` (None without fp16)."""
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler = None


@dataclass
class EpochPlan:
    """How one epoch runs, for both stages.

    ``device``: where the batches go; ``clock``: the stage's ``RunClock`` (None: a fresh
    one, started now); ``lr_fn``: ``progress -> lr`` set before every iteration (None: the
    optimisers' lr stays); ``amp``: None / 'bf16' / 'fp16' (``runtime.resolve_amp``);
    ``channels_last``: batches in channels-last memory format; ``stage``, ``epoch``: names in
    the progress bar and in errors (stage None: the epoch function's, 'srresnet' / 'srgan');
    ``progress``: show the bar; ``sync_every``: steps between two host reads of the losses
    (:class:`LossWatch`).
    """
    device: "torch.device | str" = "cpu"
    clock: RunClock = None
    stage: str = None
    epoch: int = 1
    lr_fn: Callable[[float], float] = None
    amp: str = None
    channels_last: bool = False
    progress: bool = True
    sync_every: int = SYNC_EVERY


@dataclass
class GANSettings:
    """Stage 2's settings (``cfg.stage2``): ``adv_weight`` of the adversarial loss, ``d_steps``
    (D steps per G step, the ``k`` of Goodfellow et al.; the paper: 1), ``d_lr_scale`` (D's lr
    over G's), and the collapse thresholds ``collapse_fake`` / ``collapse_real`` (None: no
    check; see :func:`_collapsed`)."""
    adv_weight: float = 1e-3
    d_steps: int = 1
    d_lr_scale: float = 1.0
    collapse_fake: float = None
    collapse_real: float = None


class _EpochLoop:
    """The bookkeeping both epoch functions share: the clock, the timed batches (on the
    device, until the clock is finished), the progress bar, the :class:`LossWatch`, the patch
    count, and the epoch's throughput at the end."""

    def __init__(self, plan, loader, stage):
        self.plan, self.loader, self.stage = plan, loader, plan.stage or stage
        self.device = torch.device(plan.device)
        self.clock = plan.clock if plan.clock is not None else RunClock().start()
        self.first_step, self.watch, self.patches, self.waits = self.clock.step, LossWatch(), 0, [0.0]
        self.start = time.perf_counter()
        self.bar = _progress_bar(self.clock, self.stage, plan.epoch, plan.progress)

    def batches(self):
        """``(index, lr, hr)`` batches moved to the device, until the clock is finished."""
        for i, (lr_img, hr_img) in enumerate(_timed(self.loader, self.waits)):
            if self.clock.finished():
                break
            self.patches += lr_img.shape[0]
            yield (i, to_device(lr_img, self.device, self.plan.channels_last),
                   to_device(hr_img, self.device, self.plan.channels_last))

    def read(self, steps_of):
        """The watch's means and extremes (see :meth:`LossWatch.read`)."""
        return self.watch.read(steps_of, (self.stage, self.plan.epoch), self.clock.step)

    def finish(self, iterations):
        """Close the bar; the throughput of ``iterations`` (see :func:`_throughput`)."""
        self.bar.close()
        seconds = time.perf_counter() - self.start
        return _throughput(iterations, self.patches, seconds, self.waits[0])


def _progress_bar(clock, stage, epoch, progress):
    """The bar of one epoch, counting the stage's steps (``clock.step`` of
    ``clock.total_steps``): its rate and ETA are those of the whole stage. Advanced by one per
    optimiser step of the generator (``bar.update()``)."""
    return progress_bar(total=clock.total_steps, initial=clock.step, unit="step",
                        desc=f"{stage} epoch {epoch}", disable=not progress, leave=False,
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


def train_epoch_mse(generator, loader, loss_fn, plan, clip_theta=None, clip_mode="norm"):
    """One epoch of stage 1: the generator alone with a pixel loss.

    ``generator``: a :class:`Trainee`; ``loader`` yields ``(lr, hr)``: ``(N,3,h,w)`` and
    ``(N,3,s*h,s*w)`` float in [0,1]; ``loss_fn(sr, hr) -> scalar`` (e.g.
    ``losses.PixelLoss``); ``plan``: an :class:`EpochPlan`. Before every iteration the lr is set
    to ``plan.lr_fn(clock.progress())``; the epoch stops early once ``clock.finished()``.
    ``clip_theta``: VDSR's adjustable gradient clipping at theta / lr (:func:`adjustable_clip`)
    of the gradients' norm or elements (``clip_mode``); None: none.

    The losses stay on the device (:class:`LossWatch`) and are read on the host every
    ``plan.sync_every`` steps and at the end: a non-finite loss raises FloatingPointError naming
    its step at the next read, before the epoch ends (so before any checkpoint is written).

    Returns a dict of epoch means: ``content_loss``, plus ``steps`` (iterations run), ``lr``
    (the last one), ``stopped_early`` and the throughput (``it_per_s``, ``patches_per_s``,
    ``data_wait``, see :func:`_throughput`).
    """
    loop, g = _EpochLoop(plan, loader, "srresnet"), generator
    g.model.train()
    lr = g.optimizer.param_groups[0]["lr"]
    steps_of = lambda name, index: loop.first_step + index + 1
    steps = 0
    for _, lr_img, hr_img in loop.batches():
        if plan.lr_fn is not None:
            lr = plan.lr_fn(loop.clock.progress())
            set_lr(g.optimizer, lr)
        loss = pixel_step(g.model, g.optimizer, lr_img, hr_img, loss_fn, plan.amp, loop.device,
                          g.scaler, adjustable_clip(clip_theta, lr), clip_mode)
        loop.watch.add("content_loss", loss, check=True)
        loop.clock.tick()
        loop.bar.update()
        steps += 1
        if steps % plan.sync_every == 0:
            means, _ = loop.read(steps_of)
            loop.bar.set_postfix(loss=f"{means['content_loss']:.4g}", refresh=False)
    means, _ = loop.read(steps_of)
    return {"content_loss": means.get("content_loss", 0.0), "steps": steps, "lr": lr,
            "stopped_early": loop.clock.finished(), **loop.finish(steps)}


def _set_requires_grad(model, flag):
    for p in model.parameters():
        p.requires_grad_(flag)


class GeneratorEMA:
    """Exponential moving average of a generator's weights (an option of stage 2).

    After every generator step: ``ema = decay * ema + (1 - decay) * w`` for every floating-point
    parameter and buffer ``w`` (BatchNorm running statistics included; integer buffers such as
    ``num_batches_tracked`` are copied). The averaged generator is steadier than the raw one,
    whose weights jitter with every adversarial step; it is the one validated and the one
    ``checkpoint.load_generator`` loads (checkpoint key ``generator_ema``). ``decay`` in [0, 1).
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


def train_epoch_gan(generator, discriminator, loader, content_loss_fn, plan,
                    gan=GANSettings(), ema=None):
    """One epoch of stage 2 (SRGAN), the paper's algorithm: for each batch, one step of D
    (:func:`discriminator_step`), then -- every ``gan.d_steps``-th batch -- one step of G
    (:func:`generator_step`) on the same batch.

    ``generator``, ``discriminator``: a :class:`Trainee` each (fp16: with its GradScaler);
    ``loader``, ``plan`` as for :func:`train_epoch_mse`; ``gan``: :class:`GANSettings`. G's lr
    is ``plan.lr_fn(clock.progress())`` before each batch, D's ``gan.d_lr_scale`` times that;
    the clock counts G steps. ``ema`` (a :class:`GeneratorEMA`) is updated after every G step.
    Losses are read on the host every ``plan.sync_every`` batches (a non-finite one raises
    FloatingPointError naming its step, before any checkpoint). A discriminator that wins every
    batch of the epoch is reported (:func:`_collapsed`).

    Returns a dict of epoch means: ``content_loss``, ``adv_loss`` (G steps), ``d_loss``,
    ``d_real``, ``d_fake`` (mean probabilities of D steps), plus ``steps`` (G steps), ``lr``,
    ``stopped_early``, ``d_collapsed`` and the throughput (``it_per_s`` in batches per second).
    """
    if gan.d_steps < 1:
        raise ValueError(f"d_steps must be >= 1, got {gan.d_steps}")
    loop, g, d, lr = _EpochLoop(plan, loader, "srgan"), generator, discriminator, None
    g.model.train()
    d.model.train()
    # the index-th D loss of the epoch belongs to G step first_step + index // d_steps + 1
    steps_of = lambda name, index: loop.first_step + (
        index // gan.d_steps if name == "d_loss" else index) + 1
    for i, lr_img, hr_img in loop.batches():
        if plan.lr_fn is not None:
            lr = plan.lr_fn(loop.clock.progress())
            set_lr(g.optimizer, lr)
            set_lr(d.optimizer, lr * gan.d_lr_scale)
        g_turn = (i + 1) % gan.d_steps == 0
        with autocast(loop.device, plan.amp), torch.set_grad_enabled(g_turn):
            sr = g.model(lr_img)                                # (N,3,4h,4w) super-resolved

        # 1. Discriminator step: tell HR (real) from SR (fake).
        _watch_d(loop.watch, *discriminator_step(d.model, d.optimizer, hr_img, sr, plan.amp,
                                                 loop.device, scaler=d.scaler, check=False))

        # 2. Generator step: content loss + adversarial loss through the (frozen) D.
        if g_turn:
            _watch_g(loop.watch, *generator_step(d.model, g.optimizer, sr, hr_img, content_loss_fn,
                                                 gan.adv_weight, plan.amp, loop.device,
                                                 scaler=g.scaler, check=False))
            if ema is not None:
                ema.update(g.model)
            loop.clock.tick()
            loop.bar.update()
        if (i + 1) % plan.sync_every == 0:
            _show_gan_losses(loop, steps_of)
    return _gan_epoch_result(loop, steps_of, gan, lr if lr is not None else
                             g.optimizer.param_groups[0]["lr"])


def _show_gan_losses(loop, steps_of):
    """Read the watch (the non-finite check) and show the running means on the bar."""
    means, _ = loop.read(steps_of)
    loop.bar.set_postfix(content=f"{means.get('content_loss', math.nan):.4g}",
                         d_real=f"{means['d_real']:.2f}", d_fake=f"{means['d_fake']:.2f}",
                         refresh=False)


def _gan_epoch_result(loop, steps_of, gan, lr):
    """The dict :func:`train_epoch_gan` returns (see there)."""
    means, extreme = loop.read(steps_of)
    result = {k: means.get(k, 0.0) for k in GAN_METRICS}
    collapsed = _collapsed(extreme, result, gan.collapse_fake, gan.collapse_real, loop.stage,
                           loop.plan.epoch, loop.clock.step)
    result.update(steps=loop.clock.step - loop.first_step, stopped_early=loop.clock.finished(),
                  lr=lr, d_collapsed=collapsed,
                  **loop.finish(loop.watch.counts.get("d_loss", 0)))
    return result


GAN_METRICS = ("content_loss", "adv_loss", "d_loss", "d_real", "d_fake")
"""The epoch means :func:`train_epoch_gan` returns (besides its counts and throughput)."""


def _watch_d(watch, d_loss, d_real, d_fake):
    """Add a discriminator step's loss and mean probabilities to ``watch`` (on the device)."""
    watch.add("d_loss", d_loss, check=True)
    watch.add("d_real", d_real)
    watch.add("d_fake", d_fake)
    watch.extreme("max_fake", d_fake, largest=True)
    watch.extreme("min_real", d_real, largest=False)


def _watch_g(watch, g_loss, content, adversarial):
    """Add a generator step's losses to ``watch`` (on the device)."""
    watch.add("generator", g_loss, check=True)
    watch.add("content_loss", content)
    watch.add("adv_loss", adversarial)


def _collapsed(extreme, metrics, collapse_fake, collapse_real, stage, epoch, step):
    """True (with a RuntimeWarning naming the epoch and step) when D won for the whole epoch:
    every batch had mean D(fake) < ``collapse_fake`` and mean D(real) > ``collapse_real``."""
    if collapse_fake is None or collapse_real is None or "max_fake" not in extreme:
        return False
    if not (extreme["max_fake"] < collapse_fake and extreme["min_real"] > collapse_real):
        return False
    warnings.warn(
        f"discriminator collapse in stage {stage!r}, epoch {epoch} (up to step {step}): "
        f"for the whole epoch D(real) > {collapse_real} and D(fake) < {collapse_fake} "
        f"(means {metrics['d_real']:.4f} / {metrics['d_fake']:.4f}); the generator gets almost no "
        f"adversarial signal -- consider a lower D learning rate or adv_weight",
        RuntimeWarning, stacklevel=3)
    return True


def optimizer_of(model, scfg, **changes):
    """The optimiser a stage config ``scfg`` describes (:func:`make_optimizer`): Adam, or
    momentum SGD with weight decay and a separate lr for the last layer (the baselines'
    recipes); ``changes`` override single settings."""
    settings = dict(kind=scfg.get("optimizer", "adam"), lr=scfg.lr,
                    betas=tuple(scfg.get("betas", (0.9, 0.999))),
                    momentum=scfg.get("momentum", 0.9), weight_decay=scfg.get("weight_decay", 0.0),
                    last_layer_lr_scale=scfg.get("last_layer_lr_scale", 1.0))
    settings.update(changes)
    return make_optimizer(model, **settings)


def lr_schedule_of(scfg):
    """The lr schedule of a stage config as a plain dict (stored in checkpoints) and its
    ``lr_fn(progress) -> lr`` (see :func:`make_lr_fn`)."""
    schedule = {"schedule": scfg.lr_schedule, "base_lr": scfg.lr,
                "decay_at": scfg.get("lr_decay_at", 0.5),
                "decay_factor": scfg.get("lr_decay_factor", 0.1), "min_lr": scfg.get("lr_min", 0.0)}
    lr_fn = make_lr_fn(schedule["base_lr"], schedule["schedule"], schedule["decay_at"],
                              schedule["decay_factor"], schedule["min_lr"])
    return schedule, lr_fn
