"""Tests of benchmarks/gpu_session.py: the smoke session through the CLI (every part, the files
it writes, the exported generators), a failing part recorded while the others run, bad command
lines, missing packages, carried wheels, and a compiled configuration of part (a)."""
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import zipfile

import pytest
import torch

import checkpoint
from config import ROOT, SHARED_DATA

SCRIPT = ROOT / "benchmarks" / "gpu_session.py"
SMOKE_TIMEOUT_S = 600          # a hung session fails the test (idle ~30 s; busy: minutes)
SCALE = 4
LR_SIDE = 12                   # side of the LR probe fed to the exported generators


def _load_script():
    spec = importlib.util.spec_from_file_location("gpu_session", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(*args, env=None, timeout=SMOKE_TIMEOUT_S):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout, env=env)


def _need_shared():
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"shared data not found at {SHARED_DATA}")


@pytest.fixture(scope="module")
def smoke_session(tmp_path_factory):
    """One full smoke session (all three parts) into a temporary folder."""
    _need_shared()
    out = tmp_path_factory.mktemp("gpu_session") / "out"
    proc = _run("--out", out, "--smoke")
    return out, proc


def test_smoke_session_runs_every_part_and_writes_its_files(smoke_session):
    out, proc = smoke_session
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    session = json.loads((out / "session.json").read_text())
    md = (out / "session.md").read_text()
    assert set(session["parts"]) == {"steps", "loader", "train"}
    assert all(p["status"] == "ok" and p["seconds"] > 0 for p in session["parts"].values())

    # the device is named, in the JSON and in the summary
    assert session["device"]["device"] == "cpu" and session["device"]["name"]
    assert session["device"]["name"] in md and "torch" in session["device"]

    # (a): both stages timed (the first configuration of each always runs); every configuration
    # that ran has positive speeds, every other one says why it did not run
    steps = session["parts"]["steps"]["result"]["configurations"]
    ran = [c for c in steps if c["status"] == "ok"]
    assert {c["stage"] for c in ran} == {"srresnet", "srgan"}
    for c in ran:
        assert c["steps_per_s"] > 0 and c["patches_per_s"] > 0 and c["ms_per_step"] > 0
    assert all(c.get("error") for c in steps if c["status"] != "ok")
    assert len(steps) == 2 * 3 * 2 * 2        # stages x amp x memory format x compile

    # (b): every worker count listed; those measured (all, on an idle machine: a busy one may
    # spend the sub-budget on the first) loader alone and with the step
    rows = session["parts"]["loader"]["result"]["rows"]
    assert [r["workers"] for r in rows] == [0, 1] and rows[0]["status"] == "ok"
    for r in rows:
        if r["status"] == "ok":
            assert r["loader_patches_per_s"] > 0 and r["patches_per_s"] > 0 and r["steps"] > 0
        else:
            assert r["status"] == "skipped" and "time budget" in r["error"]

    # (c): both stages trained, exported, evaluated with every metric that runs offline
    train = session["parts"]["train"]["result"]
    assert [s["stage"] for s in train["stages"]] == ["srresnet", "srgan"]
    assert all(s["steps"] > 0 for s in train["stages"]), train["stages"]
    assert {"psnr", "ssim", "psnr_rgb", "lr_psnr", "niqe"} <= set(train["metrics"])
    for label, by_set in train["evaluation"].items():
        assert by_set["Set5"]["images"] == 5
        for m in ("psnr", "ssim", "lr_psnr", "niqe"):
            assert by_set["Set5"][m] > 0, (label, m)
    assert any("VGG22" in n for n in train["notes"])      # the shared slice, said so

    # the markdown tables
    for header in ("| step | amp | memory format | compile | steps/s |",
                   "| workers | loader alone, patches/s |", "| stage | steps |",
                   "| method | PSNR (dB) ↑ |", "random weights"):
        assert header in md, header

    # the exported generators load and upscale x4
    for name in ("srresnet_smoke.pth", "srgan_smoke.pth"):
        model, ckpt = checkpoint.load_generator(out / name)
        assert ckpt["arch"] == "srresnet" and ckpt["exported_from"]["dtype"] == "float16"
        with torch.no_grad():
            sr = model(torch.rand(1, 3, LR_SIDE, LR_SIDE))
        assert sr.shape == (1, 3, SCALE * LR_SIDE, SCALE * LR_SIDE)
        assert torch.isfinite(sr).all()


def test_a_failing_part_is_recorded_and_the_next_part_still_runs(tmp_path):
    _need_shared()
    out = tmp_path / "out"
    proc = _run("--out", out, "--smoke", "--parts", "loader", "steps",
                "--loader-folders", "no_such_folder", "--steps-s", "3")
    assert proc.returncode == 1, proc.stderr[-2000:]
    session = json.loads((out / "session.json").read_text())
    assert list(session["parts"]) == ["loader", "steps"]
    loader = session["parts"]["loader"]
    assert loader["status"] == "failed" and "no_such_folder" in loader["error"]
    assert "result" not in loader
    steps = session["parts"]["steps"]
    assert steps["status"] == "ok"
    assert any(c["status"] == "ok" and c["steps_per_s"] > 0
               for c in steps["result"]["configurations"])
    md = (out / "session.md").read_text()
    assert "| b. Whole pipeline: DataLoader workers | failed |" in md and "no_such_folder" in md


@pytest.mark.parametrize("args, message", [
    (["--budget-min", "0"], "--budget-min: '0': must be > 0"),
    (["--workers", "-1"], "--workers: '-1': must be >= 0"),
    (["--parts", "nothing"], "invalid choice: 'nothing'"),
])
def test_bad_command_lines_give_one_error_line(tmp_path, args, message):
    proc = _run("--out", tmp_path / "out", "--smoke", *args, timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_an_output_folder_holding_a_session_is_refused(tmp_path):
    (tmp_path / "session.json").write_text("{}")
    proc = _run("--out", tmp_path, "--smoke", timeout=60)
    assert proc.returncode == 2
    assert "already holds a session" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_packages_are_named_in_the_session_files(tmp_path):
    out = tmp_path / "out"
    hide = ("import runpy, sys; sys.modules['easydict'] = None; sys.modules['tqdm'] = None; "
            f"sys.argv = [{str(SCRIPT)!r}, '--out', {str(out)!r}]; "
            f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')")
    env = {**os.environ, "SR_WHEELS": str(tmp_path / "no_wheels")}
    proc = subprocess.run([sys.executable, "-c", hide], cwd=ROOT, text=True, capture_output=True,
                          timeout=60, env=env)
    assert proc.returncode == 3, proc.stderr
    assert "easydict, tqdm" in proc.stderr and "pip download easydict tqdm" in proc.stderr
    session = json.loads((out / "session.json").read_text())
    assert session["missing_packages"] == ["easydict", "tqdm"]
    assert "easydict" in (out / "session.md").read_text()


def test_carried_wheels_are_importable(tmp_path, monkeypatch):
    gs = _load_script()
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "carried_probe-1.0-py3-none-any.whl", "w") as z:
        z.writestr("carried_probe/__init__.py", "VALUE = 42\n")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", "")
    added = gs._unpack_wheels(wheels)
    assert len(added) == 1 and added[0] in os.environ["PYTHONPATH"]
    import carried_probe
    assert carried_probe.VALUE == 42
    sys.modules.pop("carried_probe")


def test_a_compiled_configuration_is_timed():
    gs = _load_script()
    row = gs.time_configuration(gs.SMOKE, "srresnet", "fp32", True, True, torch.device("cpu"))
    assert row["steps_per_s"] > 0 and row["warmup_s"] > 0 and row["batch"] == 4
    assert row["peak_mb"] is None          # CPU: no device memory counter


def test_stage_budgets_split_what_is_left_and_refuse_too_little():
    gs = _load_script()
    s1, s2 = gs.stage_budgets(gs.FULL, 600)
    assert s1 == pytest.approx(2 * s2) and s1 + s2 == pytest.approx(600 - gs.FULL.reserve_s)
    assert gs.stage_budgets(gs.FULL, 600, 100, 50) == (100, 50)
    assert gs.stage_budgets(gs.FULL, 0, 0.5, 0.5) == (0.5, 0.5)     # given: taken as given
    with pytest.raises(ValueError, match="raise --budget-min"):
        gs.stage_budgets(gs.FULL, gs.FULL.reserve_s)
