"""Tests of train.py: config overrides, resuming bit for bit, non-finite losses, the CLI end to end."""
import csv
import subprocess
import sys

import numpy as np
import pytest
import torch

import create_data_lists
import datasets
import solver
import train
import utils

ROOT = train.Path(train.__file__).resolve().parent
SCALE = 4


def _smooth_image(rng, side):
    """uint8 ``(side, side, 3)`` smooth random colours (bilinear upsampling of a 4x4 grid)."""
    coarse = torch.from_numpy(rng.random((1, 3, 4, 4)).astype(np.float32))
    img = torch.nn.functional.interpolate(coarse, size=(side, side), mode="bilinear", align_corners=False)
    return utils.tensor_to_image(img)


@pytest.fixture
def tiny_data(tmp_path):
    """A tiny dataset in the demo layout: 3 training images (64 px) and 1 validation image
    (48 px) under ``tmp/data/<set>/{HR,LR_bicubic/X4}``, lists ``tiny_train``/``tiny_val``."""
    rng = np.random.default_rng(0)
    root, lists = tmp_path / "data", tmp_path / "lists"
    for name, count, side in (("tiny_train", 3, 64), ("tiny_val", 1, 48)):
        hr_dir, lr_dir = root / name / "HR", root / name / "LR_bicubic" / f"X{SCALE}"
        for i in range(count):
            hr = _smooth_image(rng, side)
            utils.save_image(hr_dir / f"im{i}.png", hr)
            utils.save_image(lr_dir / f"im{i}x{SCALE}.png", datasets.make_lr(hr, SCALE))
        create_data_lists.list_from_folder(hr_dir, lr_dir, name, lists, SCALE)
    return {"root": root, "lists": lists,
            "overrides": [f"data.lists_dir={str(lists)!r}", f"data.root={str(root)!r}",
                          "data.train_list='tiny_train'", "data.val_list='tiny_val'",
                          "data.cache_dir=None", "data.workers=0", "train.eval_root=None",
                          "train.eval_sets=['tiny_val']"]}


def smoke_config(tiny_data, epochs=2):
    return train.build_config("smoke", overrides=tiny_data["overrides"], epochs=epochs)


# ----------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------

def test_overrides_parse_values_and_reject_unknown_keys():
    cfg = train.build_config("smoke", overrides=["stage1.lr=2e-4", "stage2.content_loss=mse",
                                                 "train.time_budget_s=None", "data.augment=False",
                                                 "stage1.betas=(0.5, 0.9)"])
    assert cfg.stage1.lr == 2e-4 and cfg.stage2.content_loss == "mse"
    assert cfg.train.time_budget_s is None and cfg.data.augment is False
    assert tuple(cfg.stage1.betas) == (0.5, 0.9)
    with pytest.raises(ValueError, match="stage1 has no key 'lrr'"):
        train.build_config("smoke", overrides=["stage1.lrr=1"])
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        train.build_config("smoke", overrides=["stage1.lr"])


def test_missing_demo_data_is_built_and_other_lists_are_explained(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(create_data_lists, "build_demo_dataset", lambda **kw: calls.append(kw))
    cfg = train.build_config("demo", overrides=[f"data.lists_dir={str(tmp_path)!r}"])
    train.ensure_data(cfg)
    assert calls == [{"root": cfg.data.root, "lists_dir": str(tmp_path), "scale": 4}]
    cfg.data.train_list = "DIV2K_train"
    with pytest.raises(FileNotFoundError, match="DIV2K_train.json not found.*create_data_lists"):
        train.ensure_data(cfg)


# ----------------------------------------------------------------------------------------------
# Resuming
# ----------------------------------------------------------------------------------------------

def _interrupt_after_first_checkpoint(monkeypatch):
    """Make the run die (KeyboardInterrupt) right after its first checkpoint is written."""
    real_save = solver.save_checkpoint

    def save_then_die(path, state):
        real_save(path, state)
        raise KeyboardInterrupt("simulated kill after epoch 1")

    monkeypatch.setattr(solver, "save_checkpoint", save_then_die)


def _assert_same_state(a, b, keys):
    for key in keys:
        sa, sb = a[key], b[key]
        if key.startswith("optimizer"):
            sa = {i: s for i, s in sa["state"].items()}
            sb = {i: s for i, s in sb["state"].items()}
            assert sa.keys() == sb.keys()
            for i in sa:
                for name in sa[i]:
                    assert torch.equal(sa[i][name], sb[i][name]), (key, i, name)
        else:
            assert sa.keys() == sb.keys()
            for name in sa:
                assert torch.equal(sa[name], sb[name]), (key, name)


@pytest.mark.parametrize("stage", ["srresnet", "srgan"])
def test_resume_gives_the_weights_of_an_uninterrupted_run(tiny_data, tmp_path, monkeypatch, stage):
    cfg = smoke_config(tiny_data, epochs=2)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    if stage == "srgan":                          # both start from the same stage-1 generator
        train.run_stage(smoke_config(tiny_data, epochs=1), "srresnet", straight, progress=False)
        resumed.mkdir()
        (resumed / "srresnet.pth").write_bytes((straight / "srresnet.pth").read_bytes())
    history = train.run_stage(cfg, stage, straight, progress=False)

    with monkeypatch.context() as m:
        _interrupt_after_first_checkpoint(m)
        with pytest.raises(KeyboardInterrupt):
            train.run_stage(cfg, stage, resumed, progress=False)
    interrupted = solver.load_checkpoint(resumed / f"{stage}.pth")
    assert interrupted["epoch"] == 1 and not interrupted["finished"]
    resumed_history = train.run_stage(cfg, stage, resumed, resume=True, progress=False)

    a, b = solver.load_checkpoint(straight / f"{stage}.pth"), solver.load_checkpoint(resumed / f"{stage}.pth")
    keys = ["generator", "optimizer_g"] + (["discriminator", "optimizer_d"] if stage == "srgan" else [])
    _assert_same_state(a, b, keys)
    assert a["step"] == b["step"] == 2 * 3        # 3 batches of 4 patches per epoch
    assert [r["content_loss"] for r in history] == [r["content_loss"] for r in resumed_history]
    with open(resumed / f"{stage}_log.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2]


def test_non_finite_loss_stops_and_keeps_the_previous_checkpoint(tiny_data, tmp_path):
    out = tmp_path / "run"
    cfg = smoke_config(tiny_data, epochs=1)
    train.run_stage(cfg, "srresnet", out, progress=False)
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    cfg.stage1.epochs, cfg.stage1.lr = 2, 1e30     # the first step of epoch 2 blows G up
    with pytest.raises(FloatingPointError, match=r"stage 'srresnet', epoch 2, step 5\b"):
        train.run_stage(cfg, "srresnet", out, resume=True, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files     # nothing written
    assert torch.load(out / "srresnet.pth", weights_only=True)["epoch"] == 1


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------

def test_cli_smoke_end_to_end(tiny_data, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "train.py"), "--config", "smoke", "--out", str(out), "--no-progress"]
    for item in tiny_data["overrides"]:
        cmd += ["--set", item]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for stage in ("srresnet", "srgan"):          # the smoke preset runs both stages
        ckpt = torch.load(out / f"{stage}.pth", weights_only=True)
        assert ckpt["format"] == solver.CHECKPOINT_FORMAT and ckpt["finished"] and ckpt["epoch"] == 1
        with open(out / f"{stage}_log.csv") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 1 and float(rows[0]["val_psnr"]) > 0
    assert ckpt["discriminator"] is not None and ckpt["history"][0]["d_real"] >= 0
    assert "bicubic" in proc.stdout and "tiny_val" in proc.stdout


def test_cli_refuses_to_overwrite_without_resume(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--config", "smoke", "--out", str(out), "--stage", "srresnet", "--no-progress"]
    for item in tiny_data["overrides"]:
        args += ["--set", item]
    assert train.main(args) == 0
    before = (out / "srresnet.pth").read_bytes()
    assert train.main(args) == 1
    assert "srresnet.pth exists: pass --resume" in capsys.readouterr().err
    assert (out / "srresnet.pth").read_bytes() == before
    assert train.main(args + ["--resume", "--epochs", "2"]) == 0      # continues to epoch 2
    assert torch.load(out / "srresnet.pth", weights_only=True)["epoch"] == 2
