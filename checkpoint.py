"""The checkpoint format of this project: building, writing, reading and checking checkpoints,
loading the trained generator of one (:func:`load_generator`), starting a generator from one
(:func:`init_generator`: stage 2 from stage 1), and naming the recipe that made one
(:func:`recipe_of`, from :func:`recorded_settings`: the labels of tables and figures).

Also the shared readers of weight files: :func:`read_torch_dict` (``weights_only=True``, with a
one-line reason when a file is not a plain torch file), :func:`check_finite_state` and
:func:`state_mismatch`, which pretrained.py uses for the VGG19 and LPIPS files.
"""
import errno
import re
from pathlib import Path

import numpy as np
import torch

import config
from models import GENERATORS, build_generator
from runtime import get_rng_state, unwrap
from utils import WriteError, atomic_write


TORCH_ZIP_MAGIC = b"PK\x03\x04"
"""First bytes of a file written by ``torch.save`` (a zip archive since PyTorch 1.6)."""


PICKLE_PROTO = b"\x80"
"""First byte of a pickle of protocol >= 2 (a raw ``pickle.dump``, not ``torch.save``)."""


def read_torch_dict(path, what):
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


def state_mismatch(expected, found):
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


# key prefixes added by wrappers: DistributedDataParallel / DataParallel, torch.compile
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


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
  not a torch scheduler; ``clock``: ``run_clock.RunClock.state_dict()`` (steps done, seconds
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
    ``run_clock.RunClock``; the scalers fp16 GradScalers or None. The RNG states are captured now.
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
    lacking ``arch``, ``scale`` or ``generator`` (e.g. a raw state dict).
    """
    ckpt = read_torch_dict(path, "checkpoint")
    missing = [k for k in ("arch", "scale", "generator") if k not in ckpt]
    if missing:
        raise ValueError(f"{path}: not a generator checkpoint of this project: missing "
                         f"{missing}; found {_describe(ckpt)}")
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: unknown checkpoint format {ckpt.get('format')!r} "
                         f"(expected {CHECKPOINT_FORMAT!r})")
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
        why = state_mismatch(model.state_dict(), state) or str(exc).splitlines()[0]
        raise ValueError(f"{path}: the generator weights do not fit {arch!r} "
                         f"(scale={scale}, arch_kwargs={kwargs}): {why}") from exc
    return model.to(device).eval(), ckpt


def init_generator(generator, path, arch, scale):
    """Stage 2 starts from the generator of a checkpoint of this project (read like
    :func:`load_generator` reads it: its EMA weights when it has them)."""
    ckpt = load_checkpoint(path)
    if ckpt["arch"] != arch or ckpt["scale"] != scale:
        raise ValueError(f"{path} holds a x{ckpt['scale']} {ckpt['arch']!r} generator, but this "
                         f"run trains a x{scale} {arch!r}")
    try:
        generator.load_state_dict(generator_state(ckpt, path))
    except RuntimeError as e:
        raise ValueError(f"{path}: its generator does not fit the configured one "
                         f"(cfg.generator): {e}") from e



# ----------------------------------------------------------------------------------------------
# Which recipe made a checkpoint (for the labels of tables and figures)
# ----------------------------------------------------------------------------------------------

RECIPE_KEYS = {
    "stage1": ("generator.arch", "generator.n_blocks", "generator.n_channels",
               "generator.batch_norm", "generator.upsample", "generator.bicubic_skip",
               *(f"generator.{arch}" for arch in ("tconv", "srcnn", "fsrcnn", "vdsr")),
               "stage1.loss", "stage1.optimizer", "stage1.lr_schedule"),
    "stage2": ("stage2.content_loss", "stage2.pixel_weight", "stage2.lr_consistency_weight",
               "stage2.ema_decay", "vgg.i", "vgg.j"),
}
"""The settings that tell the recipes apart (:func:`recipe_of`): a stage-1 checkpoint is matched
on the ``'stage1'`` keys (generator and pixel loss), a stage-2 one on both groups (adding the
content loss, the demo's extra terms and EMA, and the VGG layer). Budgets, epochs, batch sizes,
data paths and devices are left out: they change how long a recipe ran, not what it is."""


CUSTOM_RECIPE = "custom"
"""What :func:`recipe_of` answers for settings that match no preset or preset + variant."""


_UNRECORDED = object()   # a setting absent from a checkpoint's record (see _setting)


def _setting(settings, dotted):
    """The value of ``dotted`` (e.g. ``'stage1.loss'``) in nested dicts, or ``_UNRECORDED`` when
    a level is missing (a setting the checkpoint did not record is not compared)."""
    node = settings
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _UNRECORDED
        node = node[part]
    return to_plain(node)


def _recipe_candidates():
    """``(name, config)`` of every preset, then every preset with every variant applied
    (``'paper srgan-vgg22'``), in that order: the first match names a checkpoint's recipe."""
    yield from ((name, config.get_config(name)) for name in config.PRESETS)
    for name in config.PRESETS:
        for variant, overrides in config.VARIANTS.items():
            yield f"{name} {variant}", config.apply_overrides(config.get_config(name), overrides)


def recorded_settings(ckpt):
    """The recorded settings of a checkpoint dict (:data:`CHECKPOINT_FORMAT`) as nested dicts
    ``{"generator": ..., "stage1": ..., "stage2": ..., "vgg": ...}``: its ``config`` (a training
    checkpoint), else its ``exported_from`` (a file written by ``export.py``), else only what
    every checkpoint holds, ``arch`` and ``arch_kwargs`` (as the ``generator`` section)."""
    recorded = ckpt.get("config") or ckpt.get("exported_from") or {}
    settings = {k: to_plain(v) for k, v in recorded.items() if isinstance(v, dict)}
    if not settings.get("generator"):
        arch, kwargs = ckpt.get("arch"), dict(ckpt.get("arch_kwargs") or {})
        kwargs.pop("scale", None)
        settings["generator"] = ({"arch": arch, **kwargs} if arch == "srresnet"
                                 else {"arch": arch, arch: kwargs})
    return settings


def recipe_of(ckpt):
    """The recipe that made ``ckpt`` (a checkpoint dict, see :func:`recorded_settings`): the
    name of the first preset of ``config.PRESETS`` whose :data:`RECIPE_KEYS` settings equal the
    recorded ones (``'demo'``, ``'paper'``, ``'reference'`` ...), else the first preset + variant
    of ``config.VARIANTS`` that does (``'paper srgan-vgg22'``), else :data:`CUSTOM_RECIPE`. A
    stage-2 checkpoint (its ``stage`` is its config's ``stage2.name``) is compared on both key
    groups, any other on the ``'stage1'`` group; settings it did not record are not compared.
    Returns a str."""
    settings = recorded_settings(ckpt)
    stage2_name = _setting(settings, "stage2.name")
    keys = RECIPE_KEYS["stage1"]
    if ckpt.get("stage") is not None and ckpt.get("stage") == stage2_name:
        keys += RECIPE_KEYS["stage2"]
    recorded = {k: _setting(settings, k) for k in keys}
    recorded = {k: v for k, v in recorded.items() if v is not _UNRECORDED}
    for name, cfg in _recipe_candidates():
        if all(_setting(cfg, k) == v for k, v in recorded.items()):
            return name
    return CUSTOM_RECIPE
