"""One lent-GPU session, run once and whole (issue 18): how fast the paper's training steps and
data pipeline are, and what the paper preset reaches in a few minutes.

    python benchmarks/gpu_session.py --out OUT [--device cuda] [--budget-min 11]
    python benchmarks/gpu_session.py --out /tmp/gs --smoke     # the same code, CPU, < 1 min idle

Three parts, each timed and guarded (a part that fails, or overruns its hard deadline, is
recorded as failed with its error line, and the next part still runs):

(a) ``steps``: steps/s of the ``paper`` preset's stage-1 step (SRResNet, MSE, batch 16 of 96x96
    HR patches: ``solver.train_epoch_mse`` -> ``solver.pixel_step``) and stage-2 step (SRGAN:
    ``solver.train_epoch_gan`` -> ``discriminator_step`` + ``generator_step`` with the VGG54
    content loss and the adversarial loss) for fp32 / bf16 / fp16 (``train.amp``) x NCHW /
    channels_last, eager and ``torch.compile``d, on synthetic batches already on the device
    (``torch.rand``: LR ``(16,3,24,24)``, HR ``(16,3,96,96)``, float32 in [0,1]). The networks,
    losses and optimisers come from ``train.build_networks`` / ``solver.optimizer_of``; VGG19 has
    random weights (``vgg.weights=random``: the full VGG19 cannot be had offline, and the time
    does not depend on the values). Warm-up steps (compilation, cuDNN autotuning) are not
    timed; the device is synchronised around each timed run; the table gives the median of
    the repeats. Configurations are started in priority order (``STEP_ORDER``: fp32 NCHW, bf16
    channels_last eager then compiled, then the rest) while the part's sub-budget allows; the
    rest are listed as skipped.
(b) ``loader``: patches/s of the whole pipeline on the shared 2K photos (DIV2K / Flickr2K
    samples; list built by ``create_data_lists.list_from_folder``, patches by
    ``datasets.TrainDataset`` through ``datasets.make_stage_loader``) with 0 / 4 / 8 DataLoader
    workers: the loader alone, and with the stage-1 step (``solver.train_epoch_mse`` under a
    ``run_clock.RunClock`` time budget: patches/s and the fraction of time waiting for data).
(c) ``train``: the ``paper`` preset (``train.run_stage``) for stage 1 then stage 2 under time
    budgets (``stage1.time_budget_s`` / ``stage2.time_budget_s``: the lr schedules are laid over
    them), by default 2/3 and 1/3 of what the total budget leaves after (a), (b) and a reserve
    (about 5.5 + 2.75 minutes of 11), on the list ``reference_train`` (T91 + BSD200 + the 2K
    samples, built by ``create_data_lists.ensure_data``), validated on Set5; then both generators exported
    (``export.export_generator``: ``OUT/srresnet_<preset>.pth``, ``OUT/srgan_<preset>.pth``,
    fp16) and evaluated with every metric that can run (``evaluate.evaluate``) on Set5 / Set14.
    VGG: the official VGG19 in the torch.hub cache gives the paper's VGG54; without it (offline)
    the shared slice ``vgg/vgg19_features_conv1_1-conv3_1.pth`` gives VGG22 (phi_{2,2}, the
    paper's SRGAN-VGG22), and session.md says which was used; with neither, SRGAN-MSE.

Everything is written under ``--out``: ``session.md`` (the tables), ``session.json`` (every
number, the per-epoch logs of part (c) included), ``run/`` (the training run: checkpoints, CSV
logs; ``--run-dir`` moves it) and the exported generators; both summaries are rewritten when
each part starts and ends, so a killed session keeps what it measured (a part that failed
keeps the rows it measured before). The data lists and the decoded-image cache go to
``--work`` (default ``OUT/work``). On a lent machine put both outside OUT (e.g. under /tmp),
so that the ~200 MB cache and the stage-2 checkpoints (~300 MB each, through the
discriminator's dense layer) do not travel back.

``--smoke`` runs the same code on the CPU in well under a minute: the ``smoke`` preset (tiny
generator and discriminator, 48x48 patches, batch 4), a few steps, ``torch.compile`` with the
``eager`` backend (graph capture without code generation), 0 / 1 workers, seconds of training
on T91 (one patch per image: 22 steps per stage), Set5. Its numbers say nothing about speed;
they prove the session runs. ``--smoke --device cuda`` is a one-minute check of a lent GPU.

Budget: ``--budget-min`` (default 11) bounds parts a + b + c together; (a) and (b) have their
own sub-budgets (``--steps-s``, ``--loader-s``), part (c) gets the rest less a reserve for its
set-up, validation, evaluation and export. Each part also has a hard deadline (a SIGALRM at its
budget plus a grace period of 30 s; 120 s in the smoke run, for a CPU busy with other work),
so a hung compilation cannot eat the session: the whole run ends within the budget plus 30 s
plus start-up. A lent machine that limits one command to 10 minutes needs ``--budget-min 9``.

On the lent GPU machine (torch 2.11 CUDA, no internet, no package registry)
-----------------------------------------------------------------------------
The project's third-party imports: ``torch``, ``numpy``, ``PIL`` (pillow), ``easydict``
(config.py), ``tqdm`` (progress bars, datasets, evaluate) -- all needed -- and ``scipy`` (NIQE
only; without it NIQE is reported unavailable and stage 2 trains without per-epoch
validation). scikit-image, matplotlib, flask are not used here. Whatever the machine lacks
must be carried as wheels: on a machine with a registry,
``pip download easydict tqdm --no-deps -d wheels/`` (add
``pillow scipy --only-binary=:all: --python-version 3.X --platform manylinux2014_x86_64`` when
those are missing too) into ``wheels/`` at the project root (an untracked folder travels with
the working tree; name it in the run's ``carry`` if it is git-ignored) or into the folder named
by ``$SR_WHEELS``: every ``*.whl`` there is unpacked to a temporary folder and put on
``sys.path`` before the project is imported. When a needed package
is still missing the script writes session.md / session.json naming it and exits with
status 3 (one line on stderr).

The shared data (``--shared``, alias ``--data-root``; default ``config.SHARED_DATA``,
``../shared/data``) needs ``benchmark/Set5``, ``benchmark/Set14``, ``train_sets/T91``,
``train_sets/BSD200``, ``train_samples/`` and ``vgg/``; when ``../shared/data`` is not on the
lent machine, put a copy in the working tree (e.g. ``shared/data``, which travels with it) and
pass ``--shared shared/data``. A lent-GPU run::

    python benchmarks/gpu_session.py --out $OUT/session --device cuda \
        --work /tmp/gpu_session/work --run-dir /tmp/gpu_session/run --budget-min 9

Exit status: 0 every part ran, 1 a part failed (see session.md), 2 bad command line, 3 missing
packages.
"""
import argparse
import contextlib
import importlib.util
import json
import math
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WHEELS_ENV = "SR_WHEELS"
WHEELS_DIR = Path(os.environ.get(WHEELS_ENV) or ROOT / "wheels")
"""Wheels carried to a machine without a package registry (module docstring)."""

REQUIRED_MODULES = {"torch": "torch", "numpy": "numpy", "PIL": "pillow", "easydict": "easydict",
                    "tqdm": "tqdm"}
"""Import name -> pip name of the third-party packages the project needs here."""
OPTIONAL_MODULES = {"scipy": "scipy"}
"""Import name -> pip name of the packages that only some metrics need (scipy: NIQE)."""


def _unpack_wheels(folder):
    """Unpack every ``*.whl`` of ``folder`` into a temporary folder each (once per wheel file)
    and put it first on ``sys.path`` and ``$PYTHONPATH`` (for DataLoader workers started by
    spawn). Returns the folders added (empty when ``folder`` does not exist)."""
    added = []
    for wheel in sorted(Path(folder).glob("*.whl")) if Path(folder).is_dir() else []:
        target = Path(tempfile.gettempdir()) / "sr_wheels" / wheel.stem
        if not target.is_dir():
            with zipfile.ZipFile(wheel) as z:
                z.extractall(target)
        sys.path.insert(0, str(target))
        added.append(str(target))
    if added:
        os.environ["PYTHONPATH"] = os.pathsep.join(added + [os.environ.get("PYTHONPATH", "")])
    return added


def missing_modules(names):
    """The pip names of the modules of ``names`` (import name -> pip name) not importable here."""
    return [pip for module, pip in names.items() if importlib.util.find_spec(module) is None]


WHEELS_ADDED = _unpack_wheels(WHEELS_DIR)
MISSING = missing_modules(REQUIRED_MODULES)
sys.path.insert(0, str(ROOT))          # the project's modules
sys.path.insert(0, str(HERE))          # run_all.machine_description
if not MISSING:
    import torch

    import checkpoint
    import cli
    import config
    import create_data_lists
    import datasets
    import evaluate
    import export
    import pretrained
    import report
    import run_clock
    import runtime
    import solver
    import tables
    import train
    import utils
    from metrics import METRICS
    from run_all import machine_description


# ----------------------------------------------------------------------------------------------
# The plan: sizes and budgets of a full (GPU) session and of a smoke (CPU) session
# ----------------------------------------------------------------------------------------------

AMP_MODES = ("fp32", "bf16", "fp16")
"""Precisions timed in part (a): ``train.amp`` None / 'bf16' / 'fp16'."""
AMP_SETTING = {"fp32": None, "bf16": "bf16", "fp16": "fp16"}
"""The ``train.amp`` value of each name of :data:`AMP_MODES`."""
STEP_ORDER = (("fp32", False, False), ("bf16", True, False), ("bf16", True, True),
              ("fp32", True, False), ("bf16", False, False), ("fp16", True, False),
              ("fp16", False, False), ("fp32", True, True), ("fp16", True, True),
              ("bf16", False, True), ("fp32", False, True), ("fp16", False, True))
"""``(amp, channels_last, compiled)`` in the order part (a) tries them, each for both stages,
while its sub-budget lasts: the float32 baseline, what training uses on an H100 (bf16 +
channels_last), the same compiled, then the rest (a compiled one costs a compilation)."""
LOADER_LIST = "session_2k"
"""The data list of part (b): the shared 2K photos (``--loader-folders``)."""
LOADER_FOLDERS = ("DIV2K/DIV2K_train_HR", "Flickr2K/Flickr2K_HR")
"""HR folders of part (b), under ``<shared>/train_samples``."""
SEED = 0
"""Seed of the synthetic batches and of the loader's order and crops."""


@dataclass(frozen=True)
class Plan:
    """Sizes and budgets of a session (all times in seconds)."""
    preset: str                 # config preset of every part
    budget_s: float             # parts a + b + c together
    steps_s: float              # sub-budget of part (a)
    loader_s: float             # sub-budget of part (b)
    grace_s: float              # a part's hard deadline = its budget + this
    warmup_steps: int           # untimed steps per configuration (compilation, autotuning)
    timed_steps: int            # steps per timed run
    repeats: int                # timed runs per configuration (median)
    compile_backend: str        # torch.compile backend ('inductor'; 'eager' in the smoke run)
    compile_estimate_s: float   # expected cost of a compiled configuration before one was timed
    workers: tuple              # DataLoader workers of part (b)
    loader_window_s: float      # timed window per measurement of part (b)
    loader_warmup_batches: int  # batches before a window (worker start-up)
    loader_patches_per_image: int  # patches per image of part (b)'s dataset (one pass > window)
    train_list: str             # training list of part (c)
    train_overrides: tuple      # part (c): more --set overrides of the plan
    reserve_s: float            # part (c): set-up, validation, evaluation, export
    stage1_share: float         # part (c): stage 1's share of the training time
    stage1_s: float = None      # part (c): explicit stage budgets (None: from the budget)
    stage2_s: float = None
    eval_sets: tuple = ("Set5", "Set14")


FULL = Plan(preset="paper", budget_s=11 * 60, steps_s=90, loader_s=25, grace_s=30,
            warmup_steps=5, timed_steps=20, repeats=3, compile_backend="inductor",
            compile_estimate_s=60, workers=(0, 4, 8), loader_window_s=4.0,
            loader_warmup_batches=8, loader_patches_per_image=1000,
            train_list="reference_train", train_overrides=(), reserve_s=50, stage1_share=2 / 3)
"""A lent GPU: 11 minutes, about 5.5 + 2.75 of them training (660 - 90 - 25 - 50 s, split 2:1)."""

SMOKE = Plan(preset="smoke", budget_s=90, steps_s=8, loader_s=5, grace_s=120,
             warmup_steps=1, timed_steps=2, repeats=2, compile_backend="eager",
             compile_estimate_s=1.0, workers=(0, 1), loader_window_s=0.5,
             loader_warmup_batches=1, loader_patches_per_image=20, train_list="T91",
             train_overrides=("data.patches_per_image=1",),    # T91: 22 steps of 4 per stage
             reserve_s=10, stage1_share=0.5, stage1_s=20.0, stage2_s=20.0, eval_sets=("Set5",))
"""The CPU smoke run: the same code, tiny sizes, seconds (Set5 only). The stage budgets only
bound a machine that is busy with other work: on an idle one the 22 steps end each stage
first."""

MIN_STAGE_S = 1.0
"""Part (c) is not started when less than this is left for a stage."""
MIB, GIB = 2 ** 20, 2 ** 30
"""Bytes per MiB and GiB (memory in the tables)."""
GIT_TIMEOUT_S = 10
"""A git query (the commit in session.md) that takes longer is given up."""


# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------

class PartTimeout(BaseException):
    """A part ran past its hard deadline (:func:`deadline`). A BaseException, so that no
    ``except Exception`` inside torch (compilation, data loading) can swallow it."""


@contextlib.contextmanager
def deadline(seconds, what):
    """Raise :class:`PartTimeout` in the main thread when the block runs longer than
    ``seconds`` (SIGALRM; no limit where there is no SIGALRM, or ``seconds`` is None)."""
    if seconds is None or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum, frame):
        raise PartTimeout(f"{what} ran past its hard deadline ({seconds:.0f} s)")

    before = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)


def synchronize(device):
    """Wait for the work queued on ``device`` (CUDA); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def release(device):
    """Give cached GPU memory back between configurations (so each starts from the same state)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()


def device_info(device):
    """What ran the session: ``{"device", "name", "machine", "torch", ...}`` (plain types)."""
    info = {"device": str(device), "machine": machine_description(), "torch": torch.__version__,
            "python": platform.python_version(), "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                    capability=".".join(map(str, torch.cuda.get_device_capability(device))),
                    memory_gb=round(props.total_memory / GIB, 1),
                    cudnn=torch.backends.cudnn.version(),
                    cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                    matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32)
    else:
        info["name"] = f"CPU ({info['machine'].split(',')[0]})"
    return info


def git_commit():
    """The project's commit (with '+changes' when the tree differs), or None without git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=GIT_TIMEOUT_S)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=GIT_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode:
        return None
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def md_table(header, rows):
    """A markdown table (``tables.markdown_table``, without the final newline): ``header`` (list
    of str; a header ending in ' >' is right-aligned, the marker removed) and ``rows`` (lists of
    cells; a '|' in a cell, e.g. in an error line, is escaped)."""
    names = [h[:-2] if h.endswith(" >") else h for h in header]
    right = {i for i, h in enumerate(header) if h.endswith(" >")}
    return tables.markdown_table(names, rows, right=right).rstrip("\n")


def fmt(value, digits=1):
    """A table cell: a number with ``digits`` decimals, '–' for None."""
    return tables.NO_VALUE if value is None else f"{value:.{digits}f}"


# ----------------------------------------------------------------------------------------------
# (a) Training step speed on synthetic batches
# ----------------------------------------------------------------------------------------------

def step_configurations():
    """Part (a)'s configurations in the order they are tried (:data:`STEP_ORDER`, both stages
    each): ``(stage, amp, channels_last, compiled)``."""
    return [(stage, amp, cl, compiled) for amp, cl, compiled in STEP_ORDER
            for stage in config.STAGES]


def synthetic_batch(cfg, stage, device, channels_last):
    """One batch of the stage's size on ``device``: ``(lr, hr)`` float32 in [0,1],
    ``(B,3,p/s,p/s)`` and ``(B,3,p,p)`` (``B`` the stage's batch, ``p`` its HR patch side)."""
    scfg = config.stage_config(cfg, stage)
    patch, batch = int(scfg.get("patch_size") or cfg.data.patch_size), int(scfg.batch_size)
    gen = torch.Generator(device=device).manual_seed(SEED)
    lr = torch.rand(batch, 3, patch // cfg.scale, patch // cfg.scale, generator=gen, device=device)
    hr = torch.rand(batch, 3, patch, patch, generator=gen, device=device)
    return runtime.to_device(lr, device, channels_last), runtime.to_device(hr, device, channels_last)


def step_runner(plan, stage, amp, channels_last, compiled, device):
    """``(run, cfg)``: ``run(n)`` trains ``n`` steps of ``stage`` of ``plan.preset`` through
    ``solver.train_epoch_mse`` / ``train_epoch_gan`` on one synthetic batch and synchronises.
    The networks, losses and optimisers are the training run's (``train.build_networks``,
    ``solver.optimizer_of``), VGG19 with random weights; ``amp`` a name of :data:`AMP_MODES`."""
    cfg = config.build_config(plan.preset, device=str(device), overrides=[
        f"vgg.weights={pretrained.RANDOM_WEIGHTS}", f"train.channels_last={channels_last}",
        f"train.amp={AMP_SETTING[amp]}", f"train.compile={compiled}"])
    scfg = config.stage_config(cfg, stage)
    generator, discriminator, content_loss = train.build_networks(cfg, stage, device)
    optimizer_g = solver.optimizer_of(generator, scfg)
    optimizer_d = (solver.optimizer_of(discriminator, scfg, last_layer_lr_scale=1.0)
                   if discriminator is not None else None)
    amp = AMP_SETTING[amp]
    scaler_g, scaler_d = runtime.make_grad_scaler(amp, device), runtime.make_grad_scaler(amp, device)
    model, critic = generator, discriminator
    if compiled:                       # as train.py does with train.compile=True
        torch._dynamo.reset()          # fresh caches: no recompilation limit from earlier configs
        model = torch.compile(generator, backend=plan.compile_backend)
        critic = (torch.compile(discriminator, backend=plan.compile_backend)
                  if discriminator is not None else None)
    batch = synthetic_batch(cfg, stage, device, channels_last)
    common = dict(amp=amp, channels_last=channels_last, progress=False)

    def run(n):
        batches = [batch] * n
        if stage == "srresnet":
            solver.train_epoch_mse(solver.Trainee(model, optimizer_g, scaler_g), batches,
                                   content_loss, solver.EpochPlan(device, **common))
        else:
            solver.train_epoch_gan(solver.Trainee(model, optimizer_g, scaler_g),
                                   solver.Trainee(critic, optimizer_d, scaler_d), batches,
                                   content_loss, solver.EpochPlan(device, **common),
                                   solver.GANSettings(adv_weight=scfg.adv_weight))
        synchronize(device)
    return run, cfg


def time_configuration(plan, stage, amp, channels_last, compiled, device):
    """Steps/s of one configuration: ``plan.warmup_steps`` untimed steps, then the median of
    ``plan.repeats`` synchronised runs of ``plan.timed_steps`` steps. Returns a dict of plain
    numbers (``steps_per_s``, ``ms_per_step``, ``patches_per_s``, ``warmup_s``, ``peak_mb``)."""
    with runtime.cudnn_benchmark(device.type == "cuda"):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        run, cfg = step_runner(plan, stage, amp, channels_last, compiled, device)
        start = time.perf_counter()
        run(plan.warmup_steps)
        warmup_s = time.perf_counter() - start
        times = []
        for _ in range(plan.repeats):
            start = time.perf_counter()
            run(plan.timed_steps)
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times) / plan.timed_steps
    batch = int(config.stage_config(cfg, stage).batch_size)
    peak = torch.cuda.max_memory_allocated(device) / MIB if device.type == "cuda" else None
    return {"steps_per_s": 1 / seconds, "ms_per_step": 1000 * seconds,
            "patches_per_s": batch / seconds, "warmup_s": warmup_s, "peak_mb": peak,
            "batch": batch, "timed_steps": plan.timed_steps, "repeats": plan.repeats}


def part_steps(plan, device, budget_s, log, result):
    """Part (a), into ``result``: every configuration of :func:`step_configurations` that fits
    the sub-budget ``budget_s``. A configuration is started only when the time left covers the
    longest time a configuration of its kind (stage, eager/compiled) took so far
    (``plan.compile_estimate_s`` for a compiled one before the first), except the first
    configuration of each stage (the fp32 baseline), which always runs: every session has a
    number for both steps. One that fails is recorded and the next one runs; one stopped by the
    part's hard deadline is recorded and the rest are skipped."""
    end = time.perf_counter() + budget_s
    cost = {}                                 # (stage, compiled) -> longest wall time so far
    rows = []
    result.update(preset=plan.preset, vgg_weights=pretrained.RANDOM_WEIGHTS,
                  compile_backend=plan.compile_backend, configurations=rows)
    out_of_time = None
    for stage, amp, cl, compiled in step_configurations():
        row = {"stage": stage, "amp": amp, "channels_last": cl, "compile": compiled}
        rows.append(row)
        name = f"{stage} {amp} {'channels_last' if cl else 'NCHW'}{' compiled' if compiled else ''}"
        expected = cost.get((stage, compiled), plan.compile_estimate_s if compiled else 0.0)
        left = end - time.perf_counter()
        first_of_stage = not any(r["stage"] == stage for r in rows[:-1])
        if out_of_time or (not first_of_stage and (left <= 0 or left < expected)):
            row.update(status="skipped", error=out_of_time or f"over the part's time budget "
                                                              f"({budget_s:.0f} s)")
            continue
        start = time.perf_counter()
        try:
            row.update(status="ok", **time_configuration(plan, stage, amp, cl, compiled, device))
            log(f"  {name}: {row['steps_per_s']:.2f} steps/s")
        except Exception as e:              # noqa: BLE001 -- one configuration, recorded
            row.update(status="failed", error=cli.one_line(e))
            log(f"  {name}: failed: {row['error']}")
        except PartTimeout as e:            # the part's hard deadline: keep what was timed
            row.update(status="failed", error=str(e))
            out_of_time = "the part's hard deadline had passed"
            log(f"  {name}: {e}")
        row["wall_s"] = time.perf_counter() - start
        cost[(stage, compiled)] = max(cost.get((stage, compiled), 0.0), row["wall_s"])
        release(device)
    if not any(r["status"] == "ok" for r in rows):
        raise RuntimeError(f"no configuration could be timed: "
                           f"{next((r['error'] for r in rows if r.get('error')), 'none ran')}")
    return result


STAGE_LABEL = {"srresnet": "SRResNet (stage 1: {loss})", "srgan": "SRGAN (stage 2: D + G, {vgg})"}


def steps_markdown(result, cfg):
    """Part (a)'s table."""
    vgg, loss = f"VGG{cfg.vgg.i}{cfg.vgg.j}", cfg.stage1.loss.upper()
    rows = []
    order = {stage: i for i, stage in enumerate(config.STAGES)}
    for r in sorted(result["configurations"], key=lambda r: (
            order[r["stage"]], r["compile"], AMP_MODES.index(r["amp"]), r["channels_last"])):
        ok = r["status"] == "ok"
        rows.append([STAGE_LABEL[r["stage"]].format(vgg=vgg, loss=loss), r["amp"],
                     "channels_last" if r["channels_last"] else "NCHW",
                     "yes" if r["compile"] else "no",
                     fmt(r.get("steps_per_s"), 2), fmt(r.get("ms_per_step"), 1),
                     fmt(r.get("patches_per_s"), 0), fmt(r.get("warmup_s"), 1),
                     fmt(r.get("peak_mb"), 0),
                     "ok" if ok else f"{r['status']}: {r.get('error', '')}"])
    return md_table(["step", "amp", "memory format", "compile", "steps/s >", "ms/step >",
                     "patches/s >", "warm-up s >", "peak memory MB >", "status"], rows)


# ----------------------------------------------------------------------------------------------
# (b) Whole pipeline: DataLoader workers
# ----------------------------------------------------------------------------------------------

def loader_config(plan, shared, work, device, amp):
    """The config of part (b): ``plan.preset`` on the list :data:`LOADER_LIST` in ``work``."""
    return config.build_config(plan.preset, device=str(device), overrides=[
        f"data.lists_dir={work / 'lists'}", f"data.cache_dir={work / 'cache'}",
        f"data.root={work / 'data'}", f"data.train_list={LOADER_LIST}",
        f"data.patches_per_image={plan.loader_patches_per_image}", f"train.amp={amp}"])


def loader_dataset(cfg, shared, folders):
    """The ``datasets.TrainDataset`` of part (b): the list of the HR ``folders`` under
    ``<shared>/train_samples`` (built once with ``create_data_lists.list_from_folder``; LR by
    MATLAB-exact imresize), stage-1 patches."""
    path = datasets.list_path(cfg, cfg.data.train_list)
    if not path.is_file():
        dirs = [Path(shared) / "train_samples" / f for f in folders]
        for d in dirs:
            if not d.is_dir():
                raise FileNotFoundError(f"--loader-folders: {d} is not a folder (the shared 2K "
                                        f"photos; see --shared)")
        create_data_lists.list_from_folder([str(d) for d in dirs], None, cfg.data.train_list,
                                           cfg.data.lists_dir, cfg.scale)
    return datasets.build_train_set(cfg, progress=False, patch_size=cfg.stage1.get("patch_size"))


def loader_alone(loader, window_s, warmup_batches):
    """Patches/s the loader delivers by itself over ``window_s`` seconds (after
    ``warmup_batches`` untimed batches: the workers' start)."""
    batches = iter(loader)

    def next_batch():
        nonlocal batches
        try:
            return next(batches)
        except StopIteration:          # one pass done: the next (the workers persist)
            batches = iter(loader)
            return next(batches)

    for _ in range(warmup_batches):
        next_batch()
    patches, start = 0, time.perf_counter()
    while time.perf_counter() - start < window_s:
        patches += next_batch()[0].shape[0]
    return patches / (time.perf_counter() - start)


def part_loader(plan, shared, work, device, amp, workers, folders, budget_s, log, result):
    """Part (b), into ``result``: for each worker count (while the sub-budget ``budget_s``
    lasts, counted after the one-off list and cache building), the loader's patches/s alone
    and with the stage-1 step (``solver.train_epoch_mse`` stopped by a ``run_clock.RunClock``
    time budget; ``patches_per_s``, ``it_per_s``, ``data_wait``)."""
    cfg = loader_config(plan, shared, work, device, amp)
    start = time.perf_counter()
    dataset = loader_dataset(cfg, shared, folders)    # once: not part of the sub-budget
    prepare_s = time.perf_counter() - start
    end = time.perf_counter() + budget_s
    amp = runtime.resolve_amp(cfg.train.amp, device)
    channels_last = bool(cfg.train.channels_last)
    generator, _, loss = train.build_networks(cfg, "srresnet", device)
    optimizer = solver.optimizer_of(generator, cfg.stage1)
    scaler = runtime.make_grad_scaler(amp, device)
    batch = int(cfg.stage1.batch_size)
    rows = []
    result.update(images=len(dataset.pairs), patch_size=dataset.patch_size, batch=batch,
                  amp=amp or "fp32", channels_last=channels_last, prepare_s=prepare_s,
                  folders=list(folders), window_s=plan.loader_window_s, rows=rows)
    for n in workers:
        row = {"workers": n}
        rows.append(row)
        if time.perf_counter() >= end:
            row.update(status="skipped", error=f"over the part's time budget ({budget_s:.0f} s)")
            continue
        loader = None
        try:
            loader = datasets.make_stage_loader(dataset, batch, n, pin_memory=device.type == "cuda")
            datasets.start_epoch(loader, SEED, SEED, 1)
            alone = loader_alone(loader, plan.loader_window_s, plan.loader_warmup_batches)
            trainee = solver.Trainee(generator, optimizer, scaler)
            train_args = dict(amp=amp, channels_last=channels_last, progress=False)
            with runtime.cudnn_benchmark(device.type == "cuda"):
                warmup = run_clock.RunClock(total_steps=plan.loader_warmup_batches).start()
                solver.train_epoch_mse(trainee, loader, loss,
                                       solver.EpochPlan(device, clock=warmup, **train_args))
                window = run_clock.RunClock(time_budget_s=plan.loader_window_s).start()
                m = solver.train_epoch_mse(trainee, loader, loss,
                                           solver.EpochPlan(device, clock=window, **train_args))
            synchronize(device)
            row.update(status="ok", loader_patches_per_s=alone,
                       patches_per_s=m["patches_per_s"], steps_per_s=m["it_per_s"],
                       data_wait=m["data_wait"], steps=m["steps"])
            log(f"  {n} workers: loader {alone:.0f} patches/s, with the step "
                f"{m['patches_per_s']:.0f} patches/s ({100 * m['data_wait']:.0f}% waiting)")
        except Exception as e:              # noqa: BLE001 -- one worker count, recorded
            row.update(status="failed", error=cli.one_line(e))
        finally:
            del loader                      # its persistent workers end here
    if not any(r["status"] == "ok" for r in rows):
        raise RuntimeError(f"no worker count could be measured: "
                           f"{next((r['error'] for r in rows if r.get('error')), 'none ran')}")
    return result


def best_workers(result):
    """The worker count of part (b) with the most patches/s through the step (None without)."""
    rows = [r for r in (result or {}).get("rows", []) if r["status"] == "ok"]
    return max(rows, key=lambda r: (r["patches_per_s"], -r["workers"]))["workers"] if rows else None


def loader_markdown(result):
    """Part (b)'s table."""
    rows = [[r["workers"], fmt(r.get("loader_patches_per_s"), 0), fmt(r.get("patches_per_s"), 0),
             fmt(r.get("steps_per_s"), 2),
             fmt(100 * r["data_wait"], 0) + " %" if r.get("data_wait") is not None else "–",
             "ok" if r["status"] == "ok" else f"{r['status']}: {r.get('error', '')}"]
            for r in result["rows"]]
    return md_table(["workers", "loader alone, patches/s >", "with the stage-1 step, patches/s >",
                     "steps/s >", "waiting for data >", "status"], rows)


# ----------------------------------------------------------------------------------------------
# (c) The paper preset under time budgets, exported and evaluated
# ----------------------------------------------------------------------------------------------

def vgg_choice(shared):
    """``(overrides, note)`` for stage 2's content loss: VGG54 from the official VGG19 in the
    torch.hub cache; else VGG22 from the shared slice (conv1_1..conv3_1 only); else SRGAN-MSE."""
    full = pretrained.vgg19_hub_cache_file()
    if full.is_file():
        return ([f"vgg.weights={full}", "vgg.i=5", "vgg.j=4"],
                f"VGG54 (the paper's), official VGG19 weights from {full}")
    part = Path(shared) / "vgg" / config.SHARED_VGG.name
    if part.is_file():
        return ([f"vgg.weights={part}", "vgg.i=2", "vgg.j=2"],
                f"VGG22 (the paper's SRGAN-VGG22), ImageNet weights from the shared slice {part}: "
                f"it holds conv1_1..conv3_1 only, so the paper's VGG54 cannot be loaded offline")
    return (["stage2.content_loss=mse"],
            f"SRGAN-MSE: no VGG19 weights (neither {full} nor {part})")


def stage_budgets(plan, left_s, stage1_s=None, stage2_s=None):
    """``(stage1_s, stage2_s)``: the explicit ones (the arguments, else the plan's), else
    ``left_s - plan.reserve_s`` split by ``plan.stage1_share``. ValueError when a stage's
    derived budget is under :data:`MIN_STAGE_S`."""
    train_s = left_s - plan.reserve_s
    s1 = stage1_s or plan.stage1_s or train_s * plan.stage1_share
    s2 = stage2_s or plan.stage2_s or train_s * (1 - plan.stage1_share)
    derived = [s for s, given in ((s1, stage1_s or plan.stage1_s), (s2, stage2_s or plan.stage2_s))
               if not given]
    if derived and min(derived) < MIN_STAGE_S:
        raise ValueError(f"only {left_s:.0f} s of the session's budget are left for part (c) "
                         f"(reserve {plan.reserve_s:.0f} s): raise --budget-min or lower "
                         f"--steps-s / --loader-s")
    return s1, s2


def metrics_to_run(device):
    """``(metrics, lpips_model, notes)``: every metric of ``metrics.METRICS`` that can run
    here. LPIPS only when its weights are in the torch.hub cache (no download is tried: the
    lent machine is offline), NIQE only when ``metrics.niqe`` runs (scipy)."""
    files = pretrained.lpips_weight_files(evaluate.LPIPS_DEFAULT_NET)
    notes, wanted = [], list(METRICS)
    if not all(Path(f).is_file() for f in files.values()):
        wanted.remove("lpips")
        notes.append(f"LPIPS not computed: its weights are not in the torch.hub cache "
                     f"({', '.join(str(f) for f in files.values())}); no download tried")
    reason = evaluate.niqe_unavailable_reason()
    if reason:
        wanted.remove("niqe")
        notes.append(f"NIQE not computed: {reason}")
    metrics, lpips_model, _ = evaluate.prepare_metrics(wanted, device)
    return metrics, lpips_model, notes


def train_overrides(plan, shared, work, amp, workers, compile_train, budgets):
    """The ``--set`` overrides of part (c) (before the user's ``--set``): data in ``work``, the
    shared training and test sets, the stage budgets, amp / workers / compile, VGG weights.
    Returns ``(overrides, notes)``."""
    shared, work = Path(shared), Path(work)
    vgg, vgg_note = vgg_choice(shared)
    overrides = [
        f"data.root={work / 'data'}", f"data.lists_dir={work / 'lists'}",
        f"data.cache_dir={work / 'cache'}", f"data.train_list={plan.train_list}",
        f"data.train_sets_root={shared / 'train_sets'}",
        f"data.train_samples_root={shared / 'train_samples'}", "data.skip_small=True",
        "data.val_list=Set5", f"data.benchmark_root={shared / 'benchmark'}",
        f"train.eval_root={json.dumps([str(shared / 'benchmark')])}",   # a list: any preset's
        f"train.eval_sets={json.dumps(list(plan.eval_sets), separators=(',', ':'))}",
        f"train.amp={amp}", f"train.compile={compile_train}",
        f"stage1.time_budget_s={budgets[0]:.6g}", f"stage2.time_budget_s={budgets[1]:.6g}",
        *vgg, *plan.train_overrides]
    if workers is not None:
        overrides.append(f"data.workers={workers}")
    notes = [f"stage 2 content loss: {vgg_note}"]
    if evaluate.niqe_unavailable_reason():
        overrides.append("data.val_list=None")
        notes.append("no per-epoch validation: NIQE cannot run here (stage 2 validates NIQE)")
    return overrides, notes


def part_train(plan, shared, work, out, run_dir, device, amp, workers, compile_train, left_s,
               user_sets, budgets, log, result):
    """Part (c), into ``result``: both stages of ``plan.preset`` (``train.run_stage`` into
    ``run_dir``) under time budgets, the generators exported to ``OUT/<stage>_<preset>.pth``
    and evaluated on ``plan.eval_sets``."""
    budgets = stage_budgets(plan, left_s, *budgets)
    overrides, notes = train_overrides(plan, shared, work, amp, workers, compile_train, budgets)
    overrides += list(user_sets)
    cfg = config.build_config(plan.preset, device=str(device), overrides=overrides)
    command = (f"python train.py --config {plan.preset} --device {device} --out {run_dir} "
               + " ".join(f"--set {shlex.quote(o)}" for o in overrides))
    result.update(preset=plan.preset, overrides=overrides, command=command, notes=notes,
                  budgets_s=list(budgets), amp=runtime.resolve_amp(cfg.train.amp, device) or "fp32",
                  workers=cfg.data.workers, stages=[], run_dir=str(run_dir))
    log(f"  {command}")
    missing = None
    for stage, budget in zip(config.STAGES, budgets):
        start = time.perf_counter()
        history = train.run_stage(cfg, stage, run_dir, progress=False)
        name = train.checkpoint_name(cfg, stage)
        path = run_dir / f"{name}.pth"
        if not path.is_file():   # run_stage saves after an epoch: none ran within the budget
            missing = (f"stage {name} wrote no checkpoint: its time budget ({budget:.0f} s) was "
                       f"spent before its first epoch ended (stage 2: by validating its start); "
                       f"give it more with --stage1-s / --stage2-s / --budget-min")
            break
        clock = checkpoint.load_checkpoint(path).get("clock") or {}
        result["stages"].append({
            "stage": stage, "name": name, "wall_s": time.perf_counter() - start,
            "steps": clock.get("step"), "planned_steps": clock.get("total_steps"),
            "train_s": clock.get("elapsed_s"), "budget_s": clock.get("time_budget_s"),
            "budget_note": run_clock.budget_note(name, clock), "history": history})
    exports = result["exports"] = {}
    for stage in config.STAGES[:len(result["stages"])]:
        name = train.checkpoint_name(cfg, stage)
        dst = Path(out) / f"{name}_{plan.preset}.pth"
        export.export_generator(run_dir / f"{name}.pth", dst)
        exports[report.stage_label(name, plan.preset)] = str(dst)
    metrics, lpips_model, metric_notes = metrics_to_run(device)
    result["notes"] += metric_notes
    result["metrics"] = list(metrics)
    evaluation = result["evaluation"] = {}
    benchmark = Path(shared) / "benchmark"
    for label, spec in {"bicubic": evaluate.BICUBIC, **exports}.items():
        evaluation[label] = evaluate.evaluate(spec, benchmark, list(plan.eval_sets),
                                              scale=cfg.scale, device=device, progress=False,
                                              metrics=metrics, lpips_model=lpips_model)
    if missing:
        raise RuntimeError(missing)      # the part failed; what it did is kept in ``result``
    return result


def train_markdown(result):
    """Part (c)'s tables: the stages, then one table per test set."""
    rows = [[s["name"], f"{s['steps']:,}" if s["steps"] is not None else "–",
             fmt(s["train_s"], 0), fmt(s["budget_s"], 0),
             s["budget_note"] or "all planned steps",
             fmt(s["history"][-1].get("content_loss") if s["history"] else None, 4),
             fmt(s["history"][-1].get("it_per_s") if s["history"] else None, 2)]
            for s in result["stages"]]
    lines = [md_table(["stage", "steps >", "training s >", "budget s >", "stopped",
                       "last epoch's content loss >", "last epoch's steps/s >"], rows), ""]
    metrics = result.get("metrics", [])
    for name in next(iter(result.get("evaluation", {}).values()), {}):
        first = result["evaluation"]["bicubic"][name]
        lines += [f"{name} ({first['images']} images, x4; PSNR / SSIM on Y, 4 px shaved; "
                  f"generators as exported, float16):", ""]
        lines.append(md_table(["method"] + [tables.metric_header(m) + " >" for m in metrics],
                              [[label] + [tables.format_value(m, r[name].get(m))
                                          for m in metrics]
                               for label, r in result["evaluation"].items()]))
        lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# The session: parts, files
# ----------------------------------------------------------------------------------------------

PARTS = ("steps", "loader", "train")
PART_TITLES = {"steps": "a. Training steps/s (synthetic batches)",
               "loader": "b. Whole pipeline: DataLoader workers",
               "train": "c. Training run under time budgets, exported and evaluated"}


def run_part(session, name, hard_s, fn, log, save):
    """Run part ``name`` (``fn(result)``, filling the dict ``result`` as it goes) under a hard
    deadline of ``hard_s`` seconds; record ``status`` ('ok' / 'failed'), ``seconds``, the
    ``result`` (what was measured, also when the part failed later) and, on failure, ``error``
    (one line) and ``traceback`` in ``session['parts'][name]``; ``save()`` writes the session
    files when the part starts and when it ends. Never raises (but for KeyboardInterrupt)."""
    log(f"part {name} ...")
    result = {}
    record = {"status": "running", "result": result}
    session["parts"][name] = record
    save()
    start = time.perf_counter()
    try:
        with deadline(hard_s, f"part {name}"):
            fn(result)
        record["status"] = "ok"
    except (Exception, PartTimeout) as e:   # noqa: BLE001 -- the point: the next part still runs
        record.update(status="failed", error=cli.one_line(e), traceback=traceback.format_exc())
        log(f"part {name} failed: {record['error']}")
    if not result:
        del record["result"]
    record["seconds"] = time.perf_counter() - start
    save()
    return record


def session_markdown(session):
    """session.md: the device, the command, one line per part, then each part's tables."""
    dev = session["device"]
    lines = ["# GPU session (benchmarks/gpu_session.py)", "",
             f"* device: **{dev['name']}** ({dev['device']}"
             + (f", compute capability {dev['capability']}, {dev['memory_gb']} GB, CUDA "
                f"{dev['cuda']}, cuDNN {dev['cudnn']}" if dev.get("capability") else "")
             + f"); {dev['machine']}",
             f"* mode: {session['mode']}", f"* command: `{session['command']}`",
             f"* commit: {session['commit'] or 'unknown (no git)'}; started {session['started']}, "
             f"{session.get('elapsed_s', 0):.0f} s of a {session['budget_s']:.0f} s budget", ""]
    if session["mode"].startswith("smoke"):
        lines += ["**Smoke run: tiny networks and seconds of work; its numbers say nothing about "
                  "speed or quality.**", ""]
    lines.append(md_table(["part", "status", "seconds >", "error"], [
        [PART_TITLES[p], r["status"], fmt(r.get("seconds"), 0), r.get("error", "")]
        for p, r in session["parts"].items()]))
    for name, record in session["parts"].items():
        lines += ["", f"## {PART_TITLES[name]}", ""]
        result = record.get("result")
        if not result:
            lines.append(f"Not measured: {record.get('error', record['status'])}.")
            continue
        if record["status"] != "ok":
            lines += [f"**This part {record['status']}: {record.get('error', '')}; what it "
                      f"measured before is below.**", ""]
        if name == "steps":
            lines += [f"`{result['preset']}` preset; each configuration: "
                      f"{session['plan']['warmup_steps']} untimed warm-up steps (compilation, "
                      f"cuDNN autotuning: the warm-up column), then the median of "
                      f"{session['plan']['repeats']} synchronised runs of "
                      f"{session['plan']['timed_steps']} steps through `solver.train_epoch_*` on "
                      f"one synthetic batch on the device (losses read every "
                      f"{solver.SYNC_EVERY} steps, as in training). VGG19 has random weights "
                      f"(`vgg.weights=random`: the full VGG19 is not available offline; the speed "
                      f"does not depend on the values). "
                      + (f"fp32 = float32 weights with the cuDNN default (TF32 convolutions on "
                         f"Ampere and newer: `cudnn.allow_tf32={dev['cudnn_allow_tf32']}`). "
                         if "cudnn_allow_tf32" in dev else "")
                      + f"torch.compile backend `{result['compile_backend']}`. "
                      f"{sum(c['status'] == 'ok' for c in result['configurations'])} of "
                      f"{len(step_configurations())} configurations timed.", "",
                      steps_markdown(result, session["preset_cfg"])]
        elif name == "loader":
            lines += [f"{result['images']} shared 2K photos ({', '.join(result['folders'])}), "
                      f"random {result['patch_size']}x{result['patch_size']} HR patches with "
                      f"flips, batch {result['batch']}, `datasets.make_stage_loader` "
                      f"(persistent workers{', pinned memory' if 'cuda' in dev['device'] else ''}"
                      f"); windows of {result['window_s']} s after the workers' start. 'With the "
                      f"stage-1 step': `solver.train_epoch_mse` of the preset's SRResNet "
                      f"({result['amp']}, {'channels_last' if result['channels_last'] else 'NCHW'}"
                      f") fed by the loader. Building the list and the decoded-image cache took "
                      f"{result['prepare_s']:.0f} s (once).", "", loader_markdown(result)]
        else:
            lines += [f"`{result['preset']}` preset, amp {result['amp']}, {result['workers']} "
                      f"DataLoader workers, time budgets {result['budgets_s'][0]:.0f} s + "
                      f"{result['budgets_s'][1]:.0f} s. The same run by hand:", "",
                      f"    {result['command']}", ""]
            lines += [f"* {n}" for n in result["notes"]] + [""]
            lines += [train_markdown(result), "Exported generators: " + (", ".join(
                f"`{Path(p).name}` ({label})" for label, p in result.get("exports", {}).items())
                or "none")]
    return "\n".join(lines) + "\n"


def write_session(out, session):
    """Write ``OUT/session.json`` (every number) and ``OUT/session.md`` (the tables) atomically."""
    session["elapsed_s"] = time.perf_counter() - session["_start"]
    payload = {k: v for k, v in session.items() if not k.startswith("_") and k != "preset_cfg"}
    with utils.atomic_write(out / "session.json", "w", what="session numbers") as f:
        json.dump(payload, f, indent=2, default=str)
        f.write("\n")
    try:
        text = session_markdown(session)
    except Exception as e:                  # noqa: BLE001 -- the numbers are in session.json
        text = (f"# GPU session (benchmarks/gpu_session.py)\n\nThe summary could not be "
                f"rendered ({cli.one_line(e)}); every number is in session.json.\n")
    with utils.atomic_write(out / "session.md", "w", what="session summary") as f:
        f.write(text)


def write_missing_packages(out, missing, command):
    """session.md / session.json of a session that could not start: packages missing here."""
    text = (f"not run: the Python packages {', '.join(missing)} are missing here; carry their "
            f"wheels in {WHEELS_DIR} (`pip download {' '.join(missing)} --no-deps -d wheels/` "
            f"on a machine with a package registry; see the docstring of "
            f"benchmarks/gpu_session.py)")
    out.mkdir(parents=True, exist_ok=True)
    (out / "session.json").write_text(json.dumps({"command": command, "missing_packages": missing,
                                                  "error": text, "parts": {}}, indent=2) + "\n")
    (out / "session.md").write_text(f"# GPU session (benchmarks/gpu_session.py)\n\n{text}\n")
    return text


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------

def positive(kind):
    """argparse type: a number of ``kind`` > 0 (one clear line otherwise)."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value > 0 or not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r}: must be > 0")
        return value
    return parse


def non_negative_int(text):
    """argparse type: an integer >= 0 (a worker count)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be >= 0")
    return value


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True,
                   help="output folder (session.md, session.json, run/, exported generators); "
                        "must not hold a session already")
    p.add_argument("--smoke", action="store_true",
                   help="the same code on the CPU with tiny sizes, in well under a minute")
    p.add_argument("--device", default=None,
                   help="auto | cpu | cuda | cuda:N (default: auto; cpu with --smoke)")
    p.add_argument("--shared", "--data-root", dest="shared", type=Path, default=None,
                   help="the shared data folder: benchmark/, train_sets/, train_samples/, vgg/ "
                        "(default: config.SHARED_DATA)")
    p.add_argument("--work", type=Path, default=None,
                   help="data lists and decoded-image cache (default: OUT/work)")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="part (c)'s training run: checkpoints and CSV logs (default: OUT/run; "
                        "the per-epoch logs are in session.json either way)")
    p.add_argument("--budget-min", type=positive(float), default=None,
                   help=f"minutes for parts a + b + c (default {FULL.budget_s / 60:g}; "
                        f"smoke {SMOKE.budget_s / 60:g})")
    p.add_argument("--steps-s", type=positive(float), default=None,
                   help=f"sub-budget of part (a) in seconds (default {FULL.steps_s:g})")
    p.add_argument("--loader-s", type=positive(float), default=None,
                   help=f"sub-budget of part (b) in seconds (default {FULL.loader_s:g})")
    p.add_argument("--stage1-s", type=positive(float), default=None,
                   help="part (c): stage 1's time budget (default: 2/3 of what is left)")
    p.add_argument("--stage2-s", type=positive(float), default=None,
                   help="part (c): stage 2's time budget (default: 1/3 of what is left)")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                   help="parts to run, in this order (default all): steps = (a), loader = (b), "
                        "train = (c; its DataLoader workers: the best of (b) when (b) ran first)")
    p.add_argument("--workers", nargs="+", type=non_negative_int, default=None,
                   help=f"part (b)'s DataLoader worker counts "
                        f"(default {' '.join(map(str, FULL.workers))})")
    p.add_argument("--loader-folders", nargs="+", default=list(LOADER_FOLDERS),
                   help="part (b)'s HR folders under <shared>/train_samples (default: %(default)s)")
    p.add_argument("--amp", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                   help="precision of parts (b) and (c) (train.amp; auto: bf16 on H100)")
    p.add_argument("--compile-train", action="store_true",
                   help="part (c) with train.compile=True (compilation counts in its budget)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="part (c): a config override applied last, as train.py --set")
    return p.parse_args(argv)


def make_plan(args):
    """The :class:`Plan` of the command line: :data:`FULL` or :data:`SMOKE` with the options."""
    plan = SMOKE if args.smoke else FULL
    changes = {k: v for k, v in {
        "budget_s": args.budget_min * 60 if args.budget_min else None,
        "steps_s": args.steps_s, "loader_s": args.loader_s,
        "workers": tuple(args.workers) if args.workers else None}.items() if v is not None}
    return replace(plan, **changes)


def main(argv=None):
    args = parse_args(argv)
    command = "python benchmarks/gpu_session.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    out = args.out
    if out.exists() and not out.is_dir():
        print(f"gpu_session.py: error: --out {out} is a file; give a folder", file=sys.stderr)
        return 2
    if (out / "session.json").exists():
        print(f"gpu_session.py: error: --out {out} already holds a session (session.json); "
              f"choose a new folder", file=sys.stderr)
        return 2
    if MISSING:
        print(f"gpu_session.py: error: {write_missing_packages(out, MISSING, command)}",
              file=sys.stderr)
        return 3
    plan = make_plan(args)
    try:
        device = cli.device_setting(runtime.resolve_device,
                                    args.device or ("cpu" if args.smoke else "auto"))
    except ValueError as e:
        print(f"gpu_session.py: error: {e}", file=sys.stderr)
        return 2
    shared = Path(args.shared or config.SHARED_DATA)
    work = Path(args.work or out / "work")
    run_dir = Path(args.run_dir or out / "run")
    out.mkdir(parents=True, exist_ok=True)
    amp = "auto" if args.amp == "auto" else AMP_SETTING[args.amp]
    log = lambda text: print(text, flush=True)
    session = {"_start": time.perf_counter(), "command": command,
               "mode": (f"smoke ({plan.preset} preset, CPU-sized)" if args.smoke
                        else f"full ({plan.preset} preset)"),
               "device": device_info(device), "commit": git_commit(),
               "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "budget_s": plan.budget_s,
               "shared": str(shared), "work": str(work), "run_dir": str(run_dir),
               "plan": asdict(plan),
               "missing_optional_packages": missing_modules(OPTIONAL_MODULES),
               "wheels_unpacked": WHEELS_ADDED, "parts": {},
               "preset_cfg": config.build_config(plan.preset)}
    log(f"gpu_session: {session['device']['name']} ({device}), {session['mode']}, budget "
        f"{plan.budget_s:.0f} s, output {out}")
    session_end = session["_start"] + plan.budget_s
    save = lambda: write_session(out, session)
    loader_result = None
    for name in dict.fromkeys(args.parts):            # in the order given, each once
        if name == "steps":
            run_part(session, name, plan.steps_s + plan.grace_s,
                     lambda result: part_steps(plan, device, plan.steps_s, log, result), log, save)
        elif name == "loader":
            record = run_part(session, name, plan.loader_s + plan.grace_s,
                              lambda result: part_loader(plan, shared, work, device, amp,
                                                         plan.workers, args.loader_folders,
                                                         plan.loader_s, log, result), log, save)
            loader_result = record.get("result")
        else:
            left = session_end - time.perf_counter()
            given = ((args.stage1_s or plan.stage1_s or 0) + (args.stage2_s or plan.stage2_s or 0)
                     + plan.reserve_s)          # explicit stage budgets may exceed what is left
            run_part(session, name, max(left, given) + plan.grace_s,
                     lambda result: part_train(plan, shared, work, out, run_dir, device, amp,
                                               best_workers(loader_result), args.compile_train,
                                               left, args.overrides,
                                               (args.stage1_s, args.stage2_s), log, result),
                     log, save)
    save()
    failed = [p for p, r in session["parts"].items() if r["status"] != "ok"]
    log(f"gpu_session: done in {time.perf_counter() - session['_start']:.0f} s; "
        + (f"failed: {', '.join(failed)}; " if failed else "every part ran; ")
        + f"see {out / 'session.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
