"""Faults during training: a killed run, a full disk, non-finite losses, a collapsed discriminator.

* SIGKILL of a real ``train.py`` process in its second epoch (after a step of it, at a point the
  process announces), then ``--resume``: the final weights, optimiser state and history equal
  those of an uninterrupted run with the same seed, bit for bit (CPU, workers=0; the resumed run
  restarts the interrupted epoch from the last epoch checkpoint).
* A checkpoint write that dies half-way (SIGKILL, or ``ENOSPC`` from ``torch.save``) leaves the
  previous checkpoint intact; the failing run removes its temporary file, a killed run's stale
  temporary file is removed when the run is resumed.
* A non-finite loss stops the run with one error line naming the stage, epoch and step, and
  writes nothing; a collapsed discriminator is reported with the stage, epoch and step.

The tiny data set and the state comparison come from ``conftest.py`` (``tiny_data``,
``assert_same_state``).
"""
import csv
import errno
import os
import queue
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import pytest
import torch


import checkpoint
import train
import train_log

ROOT = train.Path(train.__file__).resolve().parent
RUN_TIMEOUT_S = 120      # generous: each run of the tiny data takes a few seconds
PAUSE_LINE = "PAUSED FOR THE KILL"

# train.py run as from the command line (its __main__, through runpy), with one change: in
# epoch $PAUSE_EPOCH, after $PAUSE_AFTER steps, it prints PAUSE_LINE and waits to be killed.
# The kill then lands at that point whatever the speed of the machine.
PAUSING_TRAIN = textwrap.dedent("""
    import os, runpy, sys, time
    sys.path.insert(0, {root!r})
    import solver

    real = solver.train_epoch_mse
    pause_epoch, pause_after = int(os.environ["PAUSE_EPOCH"]), int(os.environ["PAUSE_AFTER"])

    def pausing(loader, epoch):
        for i, batch in enumerate(loader):
            if i == pause_after:              # steps 1 .. pause_after of the epoch are done
                print(f"{pause_line}: epoch {{epoch}}, {{i}} steps done", flush=True)
                time.sleep(3600)
            yield batch

    def train_epoch_mse(generator, loader, loss_fn, plan, **kwargs):
        if plan.epoch == pause_epoch:
            loader = pausing(loader, plan.epoch)
        return real(generator, loader, loss_fn, plan, **kwargs)

    solver.train_epoch_mse = train_epoch_mse
    sys.argv[0] = {train!r}
    runpy.run_path({train!r}, run_name="__main__")
""")


def _temp_files(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def _read_until(proc, marker, timeout):
    """The lines ``proc`` prints (stdout) up to and including the first one that starts with
    ``marker``; fails when ``proc`` ends first or ``timeout`` seconds pass. A thread reads the
    pipe, so the wait has a deadline even when the process prints nothing."""
    lines = queue.Queue()

    def read():
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen, deadline = [], time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail(f"no line {marker!r} within {timeout} s; printed:\n{''.join(seen)}")
        if line is None:
            pytest.fail(f"exited ({proc.wait()}) without printing {marker!r}:\n{''.join(seen)}")
        seen.append(line)
        if line.startswith(marker):
            return seen


def _kill_when_it_prints(proc, marker):
    """SIGKILL ``proc`` as soon as it prints a line starting with ``marker`` (see
    :func:`_read_until`); returns the lines it printed. ``proc`` is dead afterwards, whatever
    happened."""
    try:
        printed = _read_until(proc, marker, RUN_TIMEOUT_S)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=RUN_TIMEOUT_S) == -signal.SIGKILL
        return printed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _epochs_logged(path):
    with open(path) as f:
        return [int(r["epoch"]) for r in csv.DictReader(f)]


# ----------------------------------------------------------------------------------------------
# SIGKILL of a real training process
# ----------------------------------------------------------------------------------------------

def test_sigkill_in_epoch_two_then_resume_equals_an_uninterrupted_run(tiny_data, tmp_path,
                                                                      assert_same_state):
    stage_args = ("--stage", "srresnet", "--epochs", "3")         # 3 epochs of 3 steps
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    pausing = tmp_path / "pausing_train.py"
    pausing.write_text(PAUSING_TRAIN.format(root=str(ROOT), train=str(ROOT / "train.py"),
                                            pause_line=PAUSE_LINE))

    def start(program, out, *extra, **more_env):
        cmd = [sys.executable, str(program), *tiny_data.cli_args(out, *stage_args, *extra)]
        return subprocess.Popen(cmd, cwd=tmp_path, env={**env, **more_env},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    reference = start(ROOT / "train.py", straight)                 # runs alongside the victim
    victim = start(pausing, killed, PAUSE_EPOCH="2", PAUSE_AFTER="1")
    printed = _kill_when_it_prints(victim, PAUSE_LINE)      # epoch 1 saved, step 4 done
    assert printed[-1].strip() == f"{PAUSE_LINE}: epoch 2, 1 steps done", printed

    # killed in epoch 2: the checkpoint on disk is the complete one of epoch 1, and the log too
    ckpt = killed / "srresnet.pth"
    interrupted = checkpoint.load_checkpoint(ckpt)
    assert interrupted["epoch"] == 1 and interrupted["step"] == 3 and not interrupted["finished"]
    assert _epochs_logged(killed / "srresnet_log.csv") == [1]

    resumed = start(ROOT / "train.py", killed, "--resume")
    out, _ = resumed.communicate(timeout=RUN_TIMEOUT_S)
    assert resumed.returncode == 0, out
    assert "resuming srresnet" in out and "epoch 1 done, step 3" in out, out
    ref_out, _ = reference.communicate(timeout=RUN_TIMEOUT_S)
    assert reference.returncode == 0, ref_out

    a, b = checkpoint.load_checkpoint(straight / "srresnet.pth"), checkpoint.load_checkpoint(ckpt)
    assert a["epoch"] == b["epoch"] == 3 and a["step"] == b["step"] == 3 * 3
    assert a["finished"] and b["finished"]
    assert_same_state(a, b, keys=("generator", "optimizer_g", "rng"))
    losses = lambda ckpt: [r["content_loss"] for r in ckpt["history"]]
    assert len(losses(a)) == 3 and losses(a) == losses(b)
    assert _epochs_logged(killed / "srresnet_log.csv") == [1, 2, 3]   # the log goes on
    assert _temp_files(killed) == []


def test_sigkill_while_writing_a_checkpoint_keeps_the_previous_one(tiny_data, tmp_path):
    """A process killed in the middle of ``checkpoint.save_checkpoint`` (half the bytes written)."""
    cfg = tiny_data.config(epochs=1)
    out = tmp_path / "run"
    train.run_stage(cfg, "srresnet", out, progress=False)
    ckpt = out / "srresnet.pth"
    before = ckpt.read_bytes()
    script = (
        "import sys, time, torch, checkpoint\n"
        "real = torch.save\n"
        "def slow_save(obj, f):\n"
        "    import io; buf = io.BytesIO(); real(obj, buf); data = buf.getvalue()\n"
        "    f.write(data[:len(data) // 2]); f.flush()\n"
        "    print('writing', flush=True); time.sleep(60)\n"
        "torch.save = slow_save\n"
        "state = checkpoint.load_checkpoint(sys.argv[1]); state['epoch'] = 99\n"
        "checkpoint.save_checkpoint(sys.argv[1], state)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(ckpt)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert _kill_when_it_prints(proc, "writing")[-1].strip() == "writing"
    assert ckpt.read_bytes() == before                      # untouched, still loadable
    assert checkpoint.load_checkpoint(ckpt)["epoch"] == 1
    stale = _temp_files(out)
    assert len(stale) == 1 and stale[0].startswith(".srresnet.pth.")   # the half-written file
    cfg.stage1.epochs = 2
    train.run_stage(cfg, "srresnet", out, resume=True, progress=False)
    assert _temp_files(out) == []                          # cleaned up on resume
    assert checkpoint.load_checkpoint(ckpt)["epoch"] == 2


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


def test_full_disk_while_saving_keeps_the_previous_checkpoint(tiny_data, tmp_path, monkeypatch,
                                                              capsys, assert_same_state):
    straight, run = tmp_path / "straight", tmp_path / "run"
    args = tiny_data.cli_args(run, "--stage", "srresnet", "--epochs", "2")
    assert train.main(tiny_data.cli_args(straight, "--stage", "srresnet", "--epochs", "2")) == 0
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
    assert checkpoint.load_checkpoint(run / "srresnet.pth")["epoch"] == 1
    # space freed: --resume finishes with the weights of the uninterrupted run
    assert train.main(args + ["--resume"]) == 0
    assert_same_state(checkpoint.load_checkpoint(straight / "srresnet.pth"),
                      checkpoint.load_checkpoint(run / "srresnet.pth"),
                      keys=("generator", "optimizer_g"))


# ----------------------------------------------------------------------------------------------
# Non-finite losses and a collapsed discriminator
# ----------------------------------------------------------------------------------------------

def test_non_finite_loss_stops_with_its_step_and_keeps_the_previous_checkpoint(tiny_data, tmp_path,
                                                                               capsys):
    out = tmp_path / "run"
    assert train.main(tiny_data.cli_args(out, "--stage", "srresnet")) == 0       # epoch 1: fine
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(files) == [".run.lock", "srresnet.pth", "srresnet_best.pth", "srresnet_log.csv"]
    capsys.readouterr()
    # epoch 2 with lr 1e30: its first step (step 4) blows G up, step 5's loss is not finite
    code = train.main(tiny_data.cli_args(out, "--stage", "srresnet", "--resume", "--epochs", "2",
                                         "--set", "stage1.lr=1e30"))
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err and "Traceback" not in err, err
    assert re.search(r"non-finite content loss in stage 'srresnet', epoch 2, step 5\b", err), err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files     # nothing written
    assert checkpoint.load_checkpoint(out / "srresnet.pth")["epoch"] == 1


def test_collapsed_discriminator_is_reported_with_the_step(tiny_data, tmp_path):
    out = tmp_path / "run"
    cfg = tiny_data.config("stage2.content_loss='mse'", epochs=1)
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


# ----------------------------------------------------------------------------------------------
# One run per folder; the resume point written last; errors through cli
# ----------------------------------------------------------------------------------------------

def test_a_second_run_on_a_live_folder_is_refused_and_touches_nothing(tiny_data, tmp_path,
                                                                      capsys):
    run = tmp_path / "run"
    run.mkdir()
    live_tmp = run / ".srresnet.pth.abc123.tmp"          # the live run's checkpoint being written
    live_tmp.write_bytes(b"half")
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import sys, time; sys.path.insert(0, {str(ROOT)!r}); "
         f"import utils; lock = utils.folder_lock({str(run)!r}); lock.__enter__(); "
         f"print('LOCKED', flush=True); time.sleep({RUN_TIMEOUT_S})"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "LOCKED"
        before = sorted(p.name for p in run.iterdir())
        for extra in ([], ["--resume"]):                 # --resume typed beside the live run
            capsys.readouterr()
            assert train.main(tiny_data.cli_args(run, "--stage", "srresnet", *extra)) == 1
            err = capsys.readouterr().err.strip()
            assert "\n" not in err and "Traceback" not in err, err
            assert str(run) in err and f"PID {holder.pid}" in err and "in use" in err, err
        assert sorted(p.name for p in run.iterdir()) == before and live_tmp.exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone (killed: the OS released its lock): the folder can be used
    assert train.main(tiny_data.cli_args(run, "--stage", "srresnet")) == 0


def test_full_disk_on_the_last_log_leaves_the_epoch_to_redo(tiny_data, tmp_path, monkeypatch,
                                                             capsys):
    run = tmp_path / "run"
    args = tiny_data.cli_args(run, "--stage", "srresnet", "--epochs", "2")
    real = train_log.write_log

    def full_at_epoch_two(path, history):
        if len(history) == 2:
            raise OSError(errno.ENOSPC, f"cannot write log {path}: No space left on device")
        return real(path, history)

    with monkeypatch.context() as m:
        m.setattr(train_log, "write_log", full_at_epoch_two)
        assert train.main(args) == 1
    ckpt = checkpoint.load_checkpoint(run / "srresnet.pth")
    assert ckpt["epoch"] == 1 and not ckpt["finished"]      # the resume point did not move on
    assert train.main(args + ["--resume"]) == 0              # space freed: epoch 2 is redone
    assert _epochs_logged(run / "srresnet_log.csv") == [1, 2]
    assert checkpoint.load_checkpoint(run / "srresnet.pth")["finished"]


def test_train_errors_are_one_line_and_debug_shows_the_traceback(tiny_data, tmp_path):
    args = [sys.executable, str(ROOT / "train.py"),
            *tiny_data.cli_args(tmp_path / "run", "--set", "stage1.batch_size=0")]
    plain = subprocess.run(args, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    lines = plain.stderr.strip().splitlines()
    assert plain.returncode == 1 and len(lines) == 1, plain.stderr
    assert lines[0].startswith("train.py: error: ") and "batch_size" in lines[0]
    debug = subprocess.run(args + ["--debug"], capture_output=True, text=True,
                           timeout=RUN_TIMEOUT_S)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "batch_size" in debug.stderr


def test_sigterm_stops_like_ctrl_c_with_one_line(tiny_data, tmp_path):
    # what `kill PID`, `timeout` and job schedulers send: one line, exit 143, nothing half-written
    pausing = tmp_path / "pausing_train.py"
    pausing.write_text(PAUSING_TRAIN.format(root=str(ROOT), train=str(ROOT / "train.py"),
                                            pause_line=PAUSE_LINE))
    run = tmp_path / "run"
    cmd = [sys.executable, str(pausing),
           *tiny_data.cli_args(run, "--stage", "srresnet", "--epochs", "2")]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1",
                                            "PAUSE_EPOCH": "2", "PAUSE_AFTER": "1",
                                            "PYTHONUNBUFFERED": "1"})
    try:
        _read_until(proc, PAUSE_LINE, RUN_TIMEOUT_S)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=RUN_TIMEOUT_S) == 143
        err = [ln for ln in proc.stderr.read().splitlines() if ln.strip()]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert err == ["train.py: terminated (SIGTERM) (files already written are kept)"], err
    assert checkpoint.load_checkpoint(run / "srresnet.pth")["epoch"] == 1
    assert _temp_files(run) == []


def test_a_folder_that_cannot_be_locked_still_trains_with_a_warning(tiny_data, tmp_path,
                                                                     monkeypatch):
    # e.g. a cloud drive mounted with FUSE: lockf fails with ENOLCK; the run goes on
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "lockf", no_locks)
    with pytest.warns(UserWarning, match="cannot be locked"):
        assert train.main(tiny_data.cli_args(tmp_path / "run", "--stage", "srresnet")) == 0
    assert checkpoint.load_checkpoint(tmp_path / "run" / "srresnet.pth")["finished"]
