"""Where and how the networks run: the device, mixed precision (autocast, gradient scaling),
cuDNN, channels-last models, and the seeds and random-number-generator states of a run."""
import contextlib
import random

import numpy as np
import torch


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
                         + (" (resolve 'auto' with runtime.resolve_amp)" if amp == "auto" else ""))
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
