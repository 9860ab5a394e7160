"""What a notebook starts from: its parameters (:func:`params`: the values of its ``parameters``
cell, or the smoke run's under ``SR_SMOKE=1``) and the settings of that smoke run
(:func:`smoke_settings`: the tiny preset on the demo photos, everything under one folder)."""
import os
from pathlib import Path

from easydict import EasyDict

from config import ROOT, SHARED_DATA, SHARED_VGG


SMOKE_ENV = "SR_SMOKE"      # SR_SMOKE=1: the notebooks run their ~1-minute smoke settings


RUN_DIR_ENV = "SR_RUN_DIR"  # where a smoke run writes everything (default runs/smoke)


def smoke_settings(run_dir=None):
    """Every notebook setting of a smoke run (CPU, tiny 'smoke' preset, demo data), as a dict.

    Everything is written under ``run_dir`` (default ``$SR_RUN_DIR``, else ``runs/smoke``): the
    demo dataset in ``data/``, checkpoints at the top, tables in ``results/``, images in
    ``images/``. Stage 2 uses the shared VGG22 slice (``SHARED_VGG``, phi_{2,2}) when present,
    else an MSE content loss (``notes`` says so). The test sets are the demo test images
    (set ``test`` under the demo root) and, when present, the shared Set5.
    """
    run = Path(run_dir or os.environ.get(RUN_DIR_ENV) or ROOT / "runs" / "smoke")
    data = run / "data"
    overrides = [f"data.root={data / 'demo'}", f"data.lists_dir={data / 'lists'}",
                 f"data.cache_dir={data / 'cache'}", "train.device=cpu"]
    notes = {}   # parameter -> a note printed by params() when a notebook uses it
    if SHARED_VGG.is_file():
        overrides += [f"vgg.weights={SHARED_VGG}", "vgg.i=2", "vgg.j=2"]
    else:
        notes["overrides"] = (f"smoke run: no VGG19 weights at {SHARED_VGG}; stage 2 uses an "
                              f"MSE content loss instead")
        overrides.append("stage2.content_loss=mse")
    shared_set5 = SHARED_DATA / "benchmark" / "Set5" / "HR"
    return {
        "preset": "smoke", "overrides": overrides, "device": "cpu", "run_dir": str(run),
        "checkpoints": {"SRResNet": str(run / "srresnet.pth"), "SRGAN": str(run / "srgan.pth"),
                        **{label: str(run / f"{arch}.pth") for label, arch in (
                            ("TransposedConvSR", "tconv"), ("SRCNN", "srcnn"),
                            ("FSRCNN", "fsrcnn"), ("VDSR", "vdsr"))}},
        "data_roots": [str(data / "demo"), str(SHARED_DATA / "benchmark")],
        "test_sets": ["test", "Set5"],
        "image_set": "Set5" if shared_set5.is_dir() else "test",
        "results_dir": str(run / "results"), "images_dir": str(run / "images"),
        "notes": notes,
    }


def params(**params):
    """A notebook's settings: its ``parameters`` cell (``params``) as an EasyDict, plus
    ``smoke`` (bool). With the environment variable ``SR_SMOKE=1`` every key that
    :func:`smoke_settings` knows is replaced by its smoke value (other keys are kept; for a
    dict, such as ``checkpoints``, only the notebook's own entries are replaced)."""
    if os.environ.get(SMOKE_ENV, "0").strip() in ("", "0"):
        return EasyDict(params, smoke=False)
    smoke = smoke_settings()
    for key, note in smoke.pop("notes").items():
        if key in params:
            print(note)
    out = {}
    for key, value in params.items():
        new = smoke.get(key, value)
        if isinstance(value, dict) and isinstance(new, dict):
            new = {k: new.get(k, v) for k, v in value.items()}
        out[key] = new
    return EasyDict(out, smoke=True)
