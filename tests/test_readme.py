"""README.md's notebook commands, run as written: every ``papermill`` command of its bash blocks,
in a temporary copy of the project set up as after the README's first command
(``python train.py --config demo --out runs/demo``: ``runs/demo/`` with finished SRResNet and
SRGAN checkpoints of the demo preset, the demo photos in ``data/demo/``), with ``../shared/data``
beside it when this checkout has one. The demo run is shortened (one step per epoch, validated
at the end of each stage): same preset, same files, same epochs. A command that shows a set
only ``../shared/data`` holds is skipped when it is absent.

Also run: the notebooks' defaults on such a fresh clone, where ``runs/paper/`` is empty, fall
back to the shipped reference models and say so."""
import csv
import os
import re
import shlex
import shutil
import subprocess
import sys

import nbformat
import pytest
import yaml

import report
import train
from config import ROOT, SHARED_DATA, STAGES, build_config
from test_notebooks import assert_plain_progress

README = ROOT / "README.md"
COPIED = ("*.py", "*.ipynb")            # the project's code and notebooks ...
COPIED_DIRS = ("assets", "weights")     # ... the NIQE model and the reference models
DEMO_RUN = "runs/demo"                  # what the README's first command writes
SHORT_DEMO = ["data.patches_per_image=1", "stage1.batch_size=6",   # 6 photos: one batch...
              "stage2.batch_size=6", "data.patch_size=48",           # ... of small patches
              "stage2.patch_size=48",
              "train.val_every=1000",            # validate at the end of each stage only
              "train.checkpoint_every=1000"]     # save at the end of each stage only
"""Overrides that shorten the demo run to one small step per epoch (the preset's epochs,
generator, losses, EMA and data are kept: the checkpoints are those of a finished demo run,
``checkpoint.recipe_of`` reads them as 'demo')."""
COMMAND_TIMEOUT_S = 300


def readme_commands(text):
    """The ``papermill`` commands of the bash blocks of README ``text``, as written (a command
    continues over the lines of a quoted argument): a list of str."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        pending = ""
        for line in block.splitlines():
            pending = f"{pending}\n{line}" if pending else line
            try:
                words = shlex.split(pending, comments=True)
            except ValueError:           # an open quote: the command goes on
                continue
            if words and words[0] == "papermill":
                commands.append(pending)
            pending = ""
    return commands


COMMANDS = readme_commands(README.read_text())


def _parameters(words):
    """The notebook parameters a papermill command sets (``-p NAME VALUE``, ``-y YAML``)."""
    params, i = {}, 0
    while i < len(words):
        if words[i] in ("-p", "--parameters"):
            params[words[i + 1]] = yaml.safe_load(words[i + 2])
            i += 3
        elif words[i] in ("-y", "--parameters_yaml"):
            params.update(yaml.safe_load(words[i + 1]))
            i += 2
        else:
            i += 1
    return params


def _papermill(clone, words, torch_home):
    """Run papermill (this interpreter's) with ``words`` (the command after ``papermill``) in
    ``clone``; LPIPS reads the fake weights of ``torch_home`` (offline, no download). Returns
    the executed notebook; a failing cell fails the test with papermill's output."""
    env = {**os.environ, "TORCH_HOME": str(torch_home)}
    env.pop("SR_SMOKE", None)
    done = subprocess.run([sys.executable, "-m", "papermill", *words], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return nbformat.read(clone / words[1], as_version=4)


@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory):
    """A copy of the project as after the README's first command (see the module docstring),
    with ``../shared/data`` linked beside it when this checkout has one."""
    base = tmp_path_factory.mktemp("clone")
    clone = base / "project"
    clone.mkdir()
    for pattern in COPIED:
        for path in ROOT.glob(pattern):
            shutil.copy2(path, clone / path.name)
    for name in COPIED_DIRS:
        shutil.copytree(ROOT / name, clone / name)
    if SHARED_DATA.is_dir():
        (base / "shared").mkdir()
        (base / "shared" / "data").symlink_to(SHARED_DATA)
    data = clone / "data"
    cfg = build_config("demo", overrides=[
        f"data.root={data / 'demo'}", f"data.lists_dir={data / 'lists'}",
        f"data.cache_dir={data / 'cache'}", *SHORT_DEMO])
    for stage in STAGES:
        train.run_stage(cfg, stage, clone / DEMO_RUN, progress=False)
    return clone


def test_the_readme_shows_the_notebook_commands():
    notebooks = [shlex.split(c)[1] for c in COMMANDS]
    assert {"train.ipynb", "test.ipynb", "super_resolution.ipynb"} <= set(notebooks)


@pytest.mark.parametrize("command", COMMANDS, ids=[
    f"{i}-{shlex.split(c)[1]}" for i, c in enumerate(COMMANDS)])
def test_readme_notebook_command_runs_as_written(fresh_clone, command, lpips_torch_home):
    words = shlex.split(command)[1:]
    params = _parameters(words)
    roots = [fresh_clone / r for r in params.get("data_roots", ["data"])]
    if "image_set" in params and not report.find_sets([params["image_set"]], roots)[0]:
        assert not SHARED_DATA.is_dir(), f"{params['image_set']} not under {roots}"
        pytest.skip(f"{params['image_set']} is in ../shared/data, absent here")
    nb = _papermill(fresh_clone, words, lpips_torch_home)
    assert_plain_progress(nb)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    text = "".join(o.get("text", "") for o in outputs)
    assert "reference" not in text                  # runs/demo exists: nothing stands in
    if words[0] == "train.ipynb":                   # the curves of both finished stages
        assert len(figures) == 2 and "resuming srgan" in text
    elif words[0] == "test.ipynb":
        with open(fresh_clone / "results" / "results.csv", newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["source"] == "this run"]
        assert [(r["method"], r["file"]) for r in rows] == [
            ("Bicubic", ""), ("SRResNet (demo)", f"{DEMO_RUN}/srresnet.pth"),
            ("SRGAN (demo)", f"{DEMO_RUN}/srgan.pth")]
        assert all(r["test_psnr"] for r in rows)    # the demo's held-out photos
    else:
        images = report.open_test_set(params["image_set"], roots)
        names = [images.pairs[i][0].stem for i in range(len(images))]
        assert len(figures) == len(names)
        for name in names:
            for tag in ("bicubic", "srresnet", "srgan"):
                assert (fresh_clone / "results" / "images" / f"{name}_{tag}.png").is_file()
        assert "| image | Bicubic: " in str(outputs) and "SRGAN (demo): " in str(outputs)


def test_a_fresh_clone_uses_the_reference_models_and_says_so(fresh_clone, lpips_torch_home):
    """super_resolution.ipynb with its default checkpoints (runs/paper/, empty here)."""
    words = ["super_resolution.ipynb", "runs/demo/reference.ipynb", "-y",
             "{data_roots: [data/demo], image_set: test, images_dir: results/reference}"]
    nb = _papermill(fresh_clone, words, lpips_torch_home)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    lines = "".join(o.get("text", "") for o in outputs).splitlines()
    (note,) = [line for line in lines if "reference models" in line]
    assert "runs/paper/srresnet.pth" in note and "'SRGAN (reference)'" in note
    tables = [o.data["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})]
    assert any("| SRGAN (reference) | " in t and "weights/srgan.pth" in t for t in tables)
    assert any("SRResNet (reference): PSNR" in t for t in tables)   # the per-image table
    assert not any("(paper)" in t for t in tables)
    assert (fresh_clone / "results" / "reference" / "chelsea_srgan.png").is_file()
