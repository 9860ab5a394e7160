"""The training algorithm of both stages: losses, optimisers and lr schedules, and one epoch of
each stage, built from one step function each. ``train.py`` builds the objects from the config
and strings the epochs together with validation (``evaluate.validate``), checkpoints
(``checkpoint.save_checkpoint``) and logs; devices live in ``utils.py``, several processes in
``distributed.py``.

The two stages of the SRGAN paper (Ledig et al., CVPR 2017):

* stage 1 -- :func:`train_epoch_mse`: the generator alone (SRResNet, or a baseline: SRCNN,
  FSRCNN, VDSR, TransposedConvSR), :func:`pixel_step` after :func:`pixel_step` with a pixel loss
  (MSE, or L1 / VGG per config) between its output and the HR patch;
* stage 2 -- :func:`train_epoch_gan`: SRGAN. Each iteration makes one :func:`discriminator_step`
  on real HR patches (label 1) and generated ones (label 0), and every ``k``-th iteration a
  :func:`generator_step` with the perceptual loss ``content + adv_weight * adversarial``; the
  content loss is the MSE of rescaled VGG19 feature maps phi_{i,j} (:class:`VGGLoss`), the
  adversarial loss is ``-log D(G(LR))`` (:func:`generator_adversarial_loss`).

The epoch functions take ready-made objects (models, a DataLoader, optimisers, a loss) so a
notebook can drive them step by step.

Host synchronisations: the epoch functions keep their losses on the device and read them every
``sync_every`` steps (:class:`LossWatch`), so a GPU is never waited for in between; under
``torchrun`` a non-finite loss on any rank stops every rank and the time budget is measured on
one shared clock (:class:`RunClock`).

Learning rate: every iteration the optimisers' lr is set to ``lr_fn(clock.progress())``, where the
:class:`RunClock` progress is the fraction of the planned iterations done (or of the wall-clock
budget spent, whichever is further) -- see :func:`make_lr_fn`. Stage 2's "1e-4, then 1e-5 for the
second half" is the ``step`` schedule.
"""
import copy
import math
import time
import warnings

import torch

from distributed import all_reduce_max, is_distributed, rank
from losses import discriminator_loss, generator_adversarial_loss
from progress import progress_bar
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
                 share_every=SYNC_EVERY, on_estimate=None):
        self.total_steps = total_steps
        self.time_budget_s = time_budget_s
        self.share_every = max(1, int(share_every))
        self.step = int(step)
        self._elapsed_before = float(elapsed_s)
        self._started = None
        self._shared_elapsed = None    # the agreed elapsed time of a multi-process run
        self.on_estimate = on_estimate  # called once as on_estimate(clock, steps_per_s)
        self._timing = None             # (step, time) where this session's speed is measured from

    def _share(self):
        if self.time_budget_s and is_distributed():
            self._shared_elapsed = all_reduce_max(self.elapsed_s)

    def start(self):
        """Start (or restart) counting wall time."""
        self._started = time.perf_counter()
        self._timing = None
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
        """Count one iteration (and agree the elapsed time every ``share_every`` of them). The
        speed of steps ``ESTIMATE_WARMUP + 1`` to ``ESTIMATE_WARMUP + ESTIMATE_STEPS`` after
        :meth:`start` is passed once to ``on_estimate`` (when set)."""
        self.step += 1
        if self.step % self.share_every == 0:
            self._share()
        if self.on_estimate is not None:
            self._measure()

    def _measure(self):
        now = time.perf_counter()
        if self._timing is None:                 # the first step of this session
            self._timing = [self.step, now, False]   # [its step, a time, reported]
            return
        first, since, reported = self._timing
        done = self.step - first
        if reported:
            return
        if done == ESTIMATE_WARMUP:              # the first steps warm caches up: not timed
            self._timing[1] = now
        elif done == ESTIMATE_WARMUP + ESTIMATE_STEPS:
            self._timing[2] = True
            self.on_estimate(self, ESTIMATE_STEPS / max(now - since, 1e-9))

    def stopped_by_budget(self):
        """True when the time budget ended the stage before its planned steps."""
        return bool(self.time_budget_s and self.total_steps and self.step < self.total_steps
                    and self.finished())

    def budget_note(self, name):
        """One line saying where the time budget stopped stage ``name``, or None when it did
        not: e.g. "srresnet stopped by its time budget (450 s) at step 455 of 3,600 (13%)"."""
        return budget_note(name, self.state_dict()) if self.stopped_by_budget() else None

    def state_dict(self):
        return {"step": self.step, "elapsed_s": self.elapsed_s, "total_steps": self.total_steps,
                "time_budget_s": self.time_budget_s}

    @classmethod
    def from_state_dict(cls, state, total_steps=None, time_budget_s=None, share_every=SYNC_EVERY):
        """A clock continuing ``state``; the plan (``total_steps``, budget) may be changed."""
        return cls(total_steps, time_budget_s, state["step"], state["elapsed_s"], share_every)


ESTIMATE_WARMUP, ESTIMATE_STEPS = 5, 20
"""The stage's speed is measured over ESTIMATE_STEPS steps after ESTIMATE_WARMUP warm-up steps
(``RunClock.on_estimate``: the time estimate printed at the start of a stage)."""


def budget_note(name, clock_state):
    """The line of :meth:`RunClock.budget_note` from a clock's ``state_dict()`` (also read back
    from a checkpoint), or None when the stage ran all its planned steps."""
    step, total = clock_state.get("step", 0), clock_state.get("total_steps")
    budget = clock_state.get("time_budget_s")
    if not budget or not total or step >= total:
        return None
    return (f"{name} stopped by its time budget ({budget:.0f} s) at step {step:,} of "
            f"{total:,} ({100 * step / total:.0f}%)")


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
    bar = _progress_bar(clock, stage, epoch, progress)
    for lr_img, hr_img in _timed(loader, waits):
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
        bar.update()
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
    watch, patches, lr, waits = LossWatch(), 0, None, [0.0]
    first_step = clock.step
    # the index-th D loss of the epoch belongs to G step first_step + index // d_steps + 1
    steps_of = lambda name, index: first_step + (index // d_steps if name == "d_loss" else index) + 1
    start = time.perf_counter()
    bar = _progress_bar(clock, stage, epoch, progress)
    for i, (lr_img, hr_img) in enumerate(_timed(loader, waits)):
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
        _watch_d(watch, *discriminator_step(discriminator, optimizer_d, hr_img, sr, amp, device,
                                            scaler=scaler_d, check=False))
        patches += lr_img.shape[0]

        # 2. Generator step: content loss + adversarial loss through the (frozen) D.
        if g_turn:
            _watch_g(watch, *generator_step(discriminator, optimizer_g, sr, hr_img, content_loss_fn,
                                            adv_weight, amp, device, scaler=scaler_g, check=False))
            if ema is not None:
                ema.update(generator)
            clock.tick()
            bar.update()
        if (i + 1) % sync_every == 0:
            means, _ = watch.read(steps_of, (stage, epoch), clock.step)
            bar.set_postfix(content=f"{means.get('content_loss', math.nan):.4g}",
                            d_real=f"{means['d_real']:.2f}", d_fake=f"{means['d_fake']:.2f}",
                            refresh=False)
    bar.close()
    means, extreme = watch.read(steps_of, (stage, epoch), clock.step)
    metrics = {k: means.get(k, 0.0) for k in GAN_METRICS}
    collapsed = _collapsed(extreme, metrics, collapse_fake, collapse_real, stage, epoch, clock.step)
    metrics.update(steps=clock.step - first_step, stopped_early=clock.finished(),
                   lr=lr if lr is not None else optimizer_g.param_groups[0]["lr"],
                   d_collapsed=collapsed, **_throughput(watch.counts.get("d_loss", 0), patches,
                                                        time.perf_counter() - start, waits[0]))
    return metrics


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
