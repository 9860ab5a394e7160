"""The three notebooks: committed without outputs and with a papermill ``parameters`` cell, and
executed headless in smoke mode (``SR_SMOKE=1``, everything written under ``SR_RUN_DIR`` =
a temporary folder): train first, then test and super_resolution on its checkpoints."""
import ast
import csv
import re

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

import checkpoint
import evaluate
import figures
import metrics
import report
import tables
import utils
from config import ROOT, SHARED_DATA
from imresize import imresize

NOTEBOOKS = ("train", "test", "super_resolution")
CELL_TIMEOUT_S = 300      # per cell; a smoke notebook takes ~15 s in all on 2 CPU cores
SHARED_SET5 = SHARED_DATA / "benchmark" / "Set5" / "HR"


def _read(name):
    return nbformat.read(ROOT / f"{name}.ipynb", as_version=4)


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def _outputs(nb, output_type=None):
    return [o for c in _code_cells(nb) for o in c.outputs
            if output_type is None or o.output_type == output_type]


def _labels(run):
    """The table labels of the smoke run's checkpoints: "SRResNet (smoke)", "SRGAN (smoke)"
    (the recipe read back from each checkpoint; "smoke srgan-mse" without the shared VGG)."""
    return {name: report.method_label(label, checkpoint.recipe_of(
                checkpoint.load_checkpoint(run / f"{name}.pth")))
            for name, label in (("srresnet", "SRResNet"), ("srgan", "SRGAN"))}


STALLED_BAR = re.compile(r"\b0%\|")


def assert_plain_progress(nb):
    """No progress widget and no redrawn bar (carriage returns, a bar stuck at "0%|") is kept in
    the outputs of an executed notebook: progress off a terminal is plain lines."""
    for o in _outputs(nb):
        assert "application/vnd.jupyter.widget-view+json" not in o.get("data", {}), o
        text = o.get("text", "") + o.get("data", {}).get("text/plain", "")
        assert "\r" not in text and not STALLED_BAR.search(text), text


# ----------------------------------------------------------------------------------------------
# The committed files
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_is_clean_with_parameters_cell(name):
    nb = _read(name)
    nbformat.validate(nb)
    cells = _code_cells(nb)
    assert all(not c.outputs and c.execution_count is None for c in cells), \
        f"{name}.ipynb is committed with outputs: clear them"
    first = cells[0]
    assert "parameters" in first.metadata.get("tags", [])
    # papermill can only override plain assignments of literals
    values = {}
    for stmt in ast.parse(first.source).body:
        assert isinstance(stmt, ast.Assign), ast.dump(stmt)
        values[stmt.targets[0].id] = ast.literal_eval(stmt.value)
    # the defaults are the real run's (paper config, data/ and runs/), not the smoke run's
    assert "smoke" not in repr(values)
    assert "paper" in repr(values)
    assert values.get("data_roots", ["data"]) == ["data"]


# ----------------------------------------------------------------------------------------------
# Smoke runs
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, lpips_torch_home):
    """Execute the notebooks in smoke mode; returns (run dir, {name: executed notebook}).
    The torch.hub cache holds fake (random) LPIPS weights, so the LPIPS columns are exercised
    offline (see conftest.lpips_torch_home)."""
    run = tmp_path_factory.mktemp("smoke")
    executed = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SR_SMOKE", "1")
        mp.setenv("SR_RUN_DIR", str(run))
        mp.setenv("TORCH_HOME", str(lpips_torch_home))
        for name in NOTEBOOKS:
            nb = _read(name)
            # raises CellExecutionError (with the cell and traceback) on any cell error
            NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                           resources={"metadata": {"path": str(ROOT)}}).execute()
            executed[name] = nb
    return run, executed


def test_train_notebook(smoke_run):
    run, executed = smoke_run
    nb = executed["train"]
    for name in ("srresnet", "srgan"):
        model, ckpt = checkpoint.load_generator(run / f"{name}.pth")
        assert ckpt["stage"] == name and ckpt["epoch"] == 1
        log = figures.load_history(run / f"{name}_log.csv")
        # stage 2 logs its starting generator as epoch 0, with NIQE and LR-PSNR beside PSNR
        assert [r["epoch"] for r in log] == ([0, 1] if name == "srgan" else [1])
        if name == "srgan":
            assert log[0]["val_lr_psnr"] is not None and log[-1]["val_psnr"] is not None
    # config table, one loss figure per stage, the table of files written
    text = "".join(o.get("text", "") for o in _outputs(nb, "stream"))
    assert "SMOKE run" in text
    markdown = [o.data["text/markdown"] for o in _outputs(nb, "display_data")
                if "text/markdown" in o.data]
    assert any("stage1.lr" in m for m in markdown)
    assert any(str(run / "srgan.pth") in m for m in markdown)
    pngs = [o for o in _outputs(nb) if "image/png" in o.get("data", {})]
    assert len(pngs) == 2
    # training progress as plain lines (about ten per stage), never a stalled bar
    assert_plain_progress(nb)
    progress = "".join(o.text for o in _outputs(nb, "stream") if o.name == "stderr")
    assert "srresnet epoch 1: 100%" in progress and "srgan epoch 1: 100%" in progress


def test_test_notebook(smoke_run, lpips_torch_home, monkeypatch):
    run, executed = smoke_run
    sets = ["test"] + (["Set5"] if SHARED_SET5.is_dir() else [])
    with open(run / "results" / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["method", "source", "file"] + [f"{s}_{m}" for s in sets
                                                              for m in metrics.METRICS]
    labels = _labels(run)
    assert labels["srresnet"].startswith("SRResNet (smoke")       # the recipe, never the paper's
    ours = {r["method"]: r for r in rows if r["source"] == "this run"}
    assert list(ours) == ["Bicubic", labels["srresnet"], labels["srgan"]]   # baselines: no file
    # each row names the file it measured; srgan.pth (the last epoch) is the default
    assert ours[labels["srgan"]]["file"] == str(run / "srgan.pth") and ours["Bicubic"]["file"] == ""
    assert any(r["source"] == "published" for r in rows) == ("Set5" in sets)
    # the numbers are evaluate.evaluate's, every metric (LPIPS with the same fake weights)
    monkeypatch.setenv("TORCH_HOME", str(lpips_torch_home))
    want = evaluate.evaluate(str(run / "srresnet.pth"), run / "data" / "demo", ["test"],
                             progress=False)["test"]
    assert set(metrics.METRICS) <= set(want)
    for m in metrics.METRICS:
        decimals = metrics.METRICS[m].csv_decimals
        assert float(ours[labels["srresnet"]][f"test_{m}"]) == pytest.approx(want[m],
                                                                     abs=2 * 10 ** -decimals), m
    md = (run / "results" / "results.md").read_text()
    header = "| set | method | file | " + " | ".join(tables.metric_header(m)
                                                    for m in metrics.METRICS) + " |"
    assert header in md and "NIQE ↓" in header and "LPIPS ↓" in header
    assert f"| test | {labels['srresnet']} | {run / 'srresnet.pth'} | " in md
    assert report.METRICS_LEGEND in md
    assert all(f"{label}: no checkpoint" in md
               for label in ("TransposedConvSR", "SRCNN", "FSRCNN", "VDSR"))
    shown = [o.data["text/markdown"] for o in _outputs(executed["test"], "display_data")
             if "text/markdown" in o.data]
    assert any(header in m for m in shown)
    # where each model comes from: file, recipe, stage and step
    assert any(f"| {labels['srgan']} | {run / 'srgan.pth'} | " in m for m in shown)
    assert_plain_progress(executed["test"])


def test_super_resolution_notebook(smoke_run):
    run, executed = smoke_run
    shared = SHARED_SET5.is_dir()
    root = SHARED_DATA / "benchmark" if shared else run / "data" / "demo"
    dataset = report.open_test_set("Set5" if shared else "test", [root])
    names = []
    for i in range(len(dataset)):
        lr, hr, name = dataset[i]
        names.append(name)
        for method in ("bicubic", "srresnet", "srgan"):
            sr = utils.load_image(run / "images" / f"{name}_{method}.png")
            assert sr.shape == hr.shape, (name, method)
        np.testing.assert_array_equal(utils.load_image(run / "images" / f"{name}_bicubic.png"),
                                      imresize(lr, 4))
    assert len(list((run / "images").iterdir())) == 3 * len(names)
    pngs = [o for o in _outputs(executed["super_resolution"]) if "image/png" in o.get("data", {})]
    assert len(pngs) == len(names)
    # the per-image table: PSNR / SSIM / LPIPS / NIQE of every method, the HR's NIQE, the mean
    sources, table = [o.data["text/markdown"] for o in _outputs(executed["super_resolution"],
                                                                 "display_data")
                      if "text/markdown" in o.data]
    assert f"| {run / 'srgan.pth'} | " in sources
    what = " / ".join(tables.metric_header(m) for m in report.COMPARE_METRICS)
    labels = _labels(run)
    assert (f"| image | Bicubic: {what} | {labels['srresnet']}: {what} | {labels['srgan']}: "
            f"{what} | HR: NIQE ↓ |") in table
    assert all(f"| {name} | " in table for name in names) and "| mean | " in table
    assert_plain_progress(executed["super_resolution"])
