"""Faults during training: a killed run, a full disk, non-finite losses, a collapsed discriminator.

* SIGKILL of a real ``train.py`` process in its second epoch, then ``--resume``: the final
  weights equal those of an uninterrupted run with the same seed, bit for bit (CPU, workers=0;
  the resumed run restarts the interrupted epoch from the last epoch checkpoint).
* A checkpoint write that dies half-way (SIGKILL, or ``ENOSPC`` from ``torch.save``) leaves the
  previous checkpoint intact; the failing run removes its temporary file, a killed run's stale
  temporary file is removed when the run is resumed.
* Non-finite losses and a collapsed discriminator are reported with the stage, epoch and step.
"""
import csv
import errno
import os
import signal
import subprocess
import sys
import time
import warnings

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
KILL_DELAY_S = 0.3       # after the epoch-1 checkpoint appears: well inside epoch 2 (~2 s)
RUN_TIMEOUT_S = 120


def _smooth_image(rng, side):
    """uint8 ``(side, side, 3)``: bilinear upsampling of random 4x4 colours."""
    coarse = torch.from_numpy(rng.random((1, 3, 4, 4)).astype(np.float32))
    return utils.tensor_to_image(torch.nn.functional.interpolate(
        coarse, size=(side, side), mode="bilinear", align_corners=False))


@pytest.fixture
def tiny_data(tmp_path):
    """3 training images (64 px) and 1 validation image (48 px) with lists; the config
    overrides that point the 'smoke' preset at them (CPU, no workers, no cache)."""
    rng = np.random.default_rng(0)
    root, lists = tmp_path / "data", tmp_path / "lists"
    for name, count, side in (("tiny_train", 3, 64), ("tiny_val", 1, 48)):
        hr_dir, lr_dir = root / name / "HR", root / name / "LR_bicubic" / f"X{SCALE}"
        for i in range(count):
            hr = _smooth_image(rng, side)
            utils.save_image(hr_dir / f"im{i}.png", hr)
            utils.save_image(lr_dir / f"im{i}x{SCALE}.png", datasets.make_lr(hr, SCALE))
        create_data_lists.list_from_folder(hr_dir, lr_dir, name, lists, SCALE)
    return [f"data.lists_dir={str(lists)!r}", f"data.root={str(root)!r}",
            "data.train_list='tiny_train'", "data.val_list='tiny_val'", "data.cache_dir=None",
            "data.workers=0", "train.device='cpu'", "train.eval_root=None",
            "train.eval_sets=[]"]


def _cli_args(overrides, out, *extra):
    args = ["--config", "smoke", "--out", str(out), "--no-progress", *extra]
    for item in overrides:
        args += ["--set", item]
    return args


def _assert_same_weights(a, b, keys=("generator", "optimizer_g")):
    for key in keys:
        sa, sb = a[key], b[key]
        if key.startswith("optimizer"):
            sa, sb = sa["state"], sb["state"]
            assert sa.keys() == sb.keys()
            for i in sa:
                for name in sa[i]:
                    assert torch.equal(torch.as_tensor(sa[i][name]), torch.as_tensor(sb[i][name])), \
                        (key, i, name)
        else:
            assert sa.keys() == sb.keys()
            for name in sa:
                assert torch.equal(sa[name], sb[name]), (key, name)


def _temp_files(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ----------------------------------------------------------------------------------------------
# SIGKILL of a real training process
# ----------------------------------------------------------------------------------------------

def test_sigkill_in_epoch_two_then_resume_equals_an_uninterrupted_run(tiny_data, tmp_path):
    # 3 images x 80 patches / batch 4 = 60 steps per epoch: about 2 s on one CPU thread
    overrides = tiny_data + ["data.patches_per_image=80"]
    stage_args = ("--stage", "srresnet", "--epochs", "3")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

    def start(out, *extra):
        cmd = [sys.executable, str(ROOT / "train.py"), *_cli_args(overrides, out, *stage_args,
                                                                  *extra)]
        return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    reference = start(straight)                      # runs alongside the victim
    victim = start(killed)
    ckpt = killed / "srresnet.pth"
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not ckpt.exists():
        assert victim.poll() is None, victim.stdout.read()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    time.sleep(KILL_DELAY_S)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=RUN_TIMEOUT_S)
    assert victim.returncode == -signal.SIGKILL

    # the kill landed in epoch 2: the checkpoint on disk is the complete one of epoch 1
    interrupted = solver.load_checkpoint(ckpt)
    assert interrupted["epoch"] == 1 and not interrupted["finished"]
    with open(killed / "srresnet_log.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1]

    resumed = start(killed, "--resume")
    out, _ = resumed.communicate(timeout=RUN_TIMEOUT_S)
    assert resumed.returncode == 0, out
    assert "resuming srresnet" in out and "epoch 1 done" in out
    ref_out, _ = reference.communicate(timeout=RUN_TIMEOUT_S)
    assert reference.returncode == 0, ref_out

    a = solver.load_checkpoint(straight / "srresnet.pth")
    b = solver.load_checkpoint(ckpt)
    assert a["epoch"] == b["epoch"] == 3 and a["step"] == b["step"] == 3 * 60
    assert a["finished"] and b["finished"]
    _assert_same_weights(a, b)
    assert [r["content_loss"] for r in a["history"]] == [r["content_loss"] for r in b["history"]]
    assert _temp_files(killed) == []


def test_sigkill_while_writing_a_checkpoint_keeps_the_previous_one(tiny_data, tmp_path):
    """A process killed in the middle of ``solver.save_checkpoint`` (half the bytes written)."""
    cfg = train.build_config("smoke", overrides=tiny_data, epochs=1)
    out = tmp_path / "run"
    train.run_stage(cfg, "srresnet", out, progress=False)
    ckpt = out / "srresnet.pth"
    before = ckpt.read_bytes()
    script = (
        "import sys, time, torch, solver\n"
        "real = torch.save\n"
        "def slow_save(obj, f):\n"
        "    import io; buf = io.BytesIO(); real(obj, buf); data = buf.getvalue()\n"
        "    f.write(data[:len(data) // 2]); f.flush()\n"
        "    print('writing', flush=True); time.sleep(60)\n"
        "torch.save = slow_save\n"
        "state = solver.load_checkpoint(sys.argv[1]); state['epoch'] = 99\n"
        "solver.save_checkpoint(sys.argv[1], state)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(ckpt)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=RUN_TIMEOUT_S)
    assert ckpt.read_bytes() == before                      # untouched, still loadable
    assert solver.load_checkpoint(ckpt)["epoch"] == 1
    stale = _temp_files(out)
    assert len(stale) == 1 and stale[0].startswith(".srresnet.pth.")   # the half-written file
    cfg.stage1.epochs = 2
    train.run_stage(cfg, "srresnet", out, resume=True, progress=False)
    assert _temp_files(out) == []                          # cleaned up on resume
    assert solver.load_checkpoint(ckpt)["epoch"] == 2


# ----------------------------------------------------------------------------------------------
# A full disk
# ----------------------------------------------------------------------------------------------

def _disk_full_on_save(monkeypatch, fail_at):
    """``torch.save`` writes half of its bytes, then raises ENOSPC, from call ``fail_at`` on."""
    real, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) < fail_at:
            return real(obj, f, *args, **kwargs)
        import io
        buf = io.BytesIO()
        real(obj, buf)
        f.write(buf.getvalue()[:buf.tell() // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", save)


def test_full_disk_while_saving_keeps_the_previous_checkpoint(tiny_data, tmp_path,
                                                              monkeypatch, capsys):
    straight, run = tmp_path / "straight", tmp_path / "run"
    args = _cli_args(tiny_data, run, "--stage", "srresnet", "--epochs", "2")
    assert train.main(_cli_args(tiny_data, straight, "--stage", "srresnet", "--epochs", "2")) == 0
    with monkeypatch.context() as m:
        # epoch 1 writes srresnet.pth and srresnet_best.pth; epoch 2's first save fails
        _disk_full_on_save(m, fail_at=3)
        capsys.readouterr()
        assert train.main(args) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert str(run / "srresnet.pth") in err and "No space left on device" in err, err
    assert "intact" in err, err
    assert _temp_files(run) == []                              # the half-written file is gone
    assert solver.load_checkpoint(run / "srresnet.pth")["epoch"] == 1
    # space freed: --resume finishes with the weights of the uninterrupted run
    assert train.main(args + ["--resume"]) == 0
    _assert_same_weights(solver.load_checkpoint(straight / "srresnet.pth"),
                         solver.load_checkpoint(run / "srresnet.pth"))


# ----------------------------------------------------------------------------------------------
# Non-finite losses and a collapsed discriminator
# ----------------------------------------------------------------------------------------------

def test_non_finite_loss_is_reported_with_the_step(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    args = _cli_args(tiny_data + ["stage1.lr=1e30"], out, "--stage", "srresnet", "--epochs", "2")
    capsys.readouterr()
    assert train.main(args) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert "non-finite" in err and "epoch 1" in err and "step 2" in err, err
    assert not (out / "srresnet.pth").exists()                # nothing poisoned was saved


def test_collapsed_discriminator_is_reported_with_the_step(tiny_data, tmp_path):
    out = tmp_path / "run"
    cfg = train.build_config("smoke", overrides=tiny_data + ["stage2.content_loss='mse'"],
                             epochs=1)
    train.run_stage(cfg, "srresnet", out, progress=False)
    # thresholds any discriminator meets: D(fake) < 1 and D(real) > 0 on every batch
    cfg.stage2.collapse_fake, cfg.stage2.collapse_real = 1.0, 0.0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = train.run_stage(cfg, "srgan", out, progress=False)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert any("discriminator collapse" in m and "epoch 1" in m and "step 3" in m
               for m in messages), messages
    assert history[-1]["d_collapsed"] is True
