"""Multi-process training: ``torchrun --nproc_per_node=2 train.py ...`` on the CPU (gloo).

The launcher runs a small wrapper of ``train.main`` that records, on every rank, the weights of
the generator (and, in stage 2, the discriminator) before the first and after the last epoch of
each stage. The test checks that both ranks end each stage with identical weights that differ
from the (identical) initial ones, that rank 0 alone wrote the checkpoints (plain module keys,
no ``module.`` prefix) and logs, and that the global batch ``batch_size`` gives the same number
of steps per epoch as a single-process run. A second run checks that a failure on rank 0 stops
rank 1 too (no hang). The tiny data set and the state comparison come from ``conftest.py``
(``tiny_data``, ``assert_same_state``).
"""
import csv
import os
import socket
import subprocess
import sys
import textwrap

import torch


import checkpoint
import train

ROOT = train.Path(train.__file__).resolve().parent
WORLD_SIZE = 2
EPOCHS = 2
RUN_TIMEOUT_S = 150

# Runs on every rank: spy on the epoch functions, run the real CLI, save what the rank holds.
WRAPPER = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {root!r})
    import torch
    import losses, runtime, solver, train, utils

    seen = {{}}

    def snapshot(model):
        return {{k: v.clone() for k, v in runtime.unwrap(model).state_dict().items()}}

    def spying(real, stage):
        def spy(generator, *args, **kwargs):
            rec = seen.setdefault(stage, {{"wrapper": type(generator.model).__name__}})
            rec.setdefault("initial", snapshot(generator.model))
            rec["model"] = generator.model
            if stage == "srgan":
                rec.setdefault("critic_initial", snapshot(args[0].model))
                rec["critic"] = args[0].model
            rec["batch"] = args[stage == "srgan"].batch_size
            return real(generator, *args, **kwargs)
        return spy

    if os.environ.get("SPY_NAN_RANK") == os.environ["RANK"]:   # this rank's loss turns NaN at a step
        real_forward, calls = losses.PixelLoss.forward, [0]
        def nan_forward(self, sr, hr):
            calls[0] += 1
            loss = real_forward(self, sr, hr)
            return loss * float("nan") if calls[0] == int(os.environ["SPY_NAN_STEP"]) else loss
        losses.PixelLoss.forward = nan_forward
    solver.train_epoch_mse = spying(solver.train_epoch_mse, "srresnet")
    solver.train_epoch_gan = spying(solver.train_epoch_gan, "srgan")
    rc = train.main(sys.argv[1:])
    for rec in seen.values():
        rec["final"] = snapshot(rec.pop("model"))
        if "critic" in rec:
            rec["critic_final"] = snapshot(rec.pop("critic"))
    torch.save({{"rc": rc, "world": os.environ["WORLD_SIZE"], "stages": seen}},
               os.path.join({out!r}, "rank" + os.environ["RANK"] + ".pt"))
    sys.exit(rc)
""")


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(tmp_path, tiny_data, out, *extra, env=None):
    """``torchrun --nproc_per_node=2`` of the spying wrapper; returns (process, per-rank dicts)."""
    spy_dir = tmp_path / "ranks"
    spy_dir.mkdir(exist_ok=True)
    wrapper = tmp_path / "train_spy.py"
    wrapper.write_text(WRAPPER.format(root=str(ROOT), out=str(spy_dir)))
    args = tiny_data.cli_args(out, *extra)
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={WORLD_SIZE}",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", str(wrapper), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)
    ranks = [torch.load(spy_dir / f"rank{r}.pt", weights_only=True)
             for r in range(WORLD_SIZE) if (spy_dir / f"rank{r}.pt").exists()]
    return proc, ranks


def _changed(initial, final):
    """Names of the float tensors that training changed."""
    return [k for k, v in final.items() if v.is_floating_point() and not torch.equal(v, initial[k])]


def test_two_cpu_ranks_train_identical_replicas(tiny_data, tmp_path, assert_same_state):
    out = tmp_path / "run"
    proc, ranks = _torchrun(tmp_path, tiny_data, out, "--stage", "both", "--epochs", str(EPOCHS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(ranks) == WORLD_SIZE
    cfg = tiny_data.config()
    patches = 3 * cfg.data.patches_per_image                     # 3 training images
    for stage, scfg, nets in (("srresnet", cfg.stage1, [("generator", "")]),
                              ("srgan", cfg.stage2, [("generator", ""),
                                                     ("discriminator", "critic_")])):
        recs = [r["stages"][stage] for r in ranks]
        ckpt = checkpoint.load_checkpoint(out / f"{stage}.pth")
        for r, rec in zip(ranks, recs):
            assert r["rc"] == 0 and r["world"] == str(WORLD_SIZE)
            assert rec["wrapper"] == "DistributedDataParallel"
            assert rec["batch"] == scfg.batch_size // WORLD_SIZE   # the global batch, split
        for key, prefix in nets:
            # same start (rank 0's weights, broadcast by DDP), same end, and training moved them
            assert_same_state(recs[0][prefix + "initial"], recs[1][prefix + "initial"])
            assert_same_state(recs[0][prefix + "final"], recs[1][prefix + "final"])
            changed = _changed(recs[0][prefix + "initial"], recs[0][prefix + "final"])
            assert len(changed) > len(recs[0][prefix + "final"]) // 2, (stage, key, changed)
            # rank 0 saved the plain module: no "module." prefix, the weights every rank holds
            assert not any(k.startswith("module.") for k in ckpt[key])
            assert_same_state(ckpt[key], recs[0][prefix + "final"])
        # global batch: 12 patches / batch 4 = 3 steps per epoch, as on one process
        assert ckpt["step"] == EPOCHS * (patches // scfg.batch_size)
        assert ckpt["world_size"] == WORLD_SIZE and ckpt["epoch"] == EPOCHS
        with open(out / f"{stage}_log.csv") as f:
            first = 0 if stage == "srgan" else 1    # stage 2 logs its start as epoch 0
            assert [int(r["epoch"]) for r in csv.DictReader(f)] == list(range(first, EPOCHS + 1))
        assert proc.stdout.count(f"{stage} epoch 1/") == 1       # printed by rank 0 only
    assert sorted(p.name for p in out.iterdir()) == [      # .run.lock: rank 0's folder lock
        ".run.lock", "srgan.pth", "srgan_log.csv", "srresnet.pth", "srresnet_best.pth",
        "srresnet_log.csv"]


def test_a_failure_on_rank_zero_stops_every_rank(tiny_data, tmp_path):
    out = tmp_path / "run"
    (out / "srresnet_log.csv").mkdir(parents=True)     # rank 0 cannot write its log
    proc, ranks = _torchrun(tmp_path, tiny_data, out, "--stage", "srresnet", "--epochs", "1")
    assert proc.returncode != 0
    for module in ("train.py", "solver.py", "distributed.py"):   # (torchrun prints its own traceback)
        assert f'{module}", line' not in proc.stderr, proc.stderr
    assert f"rank 0: error: cannot write log {out / 'srresnet_log.csv'}" in proc.stderr
    assert "rank 1: error: rank 1 stops: rank 0 failed while validating or saving epoch 1" \
        in proc.stderr
    assert [r["rc"] for r in ranks] == [1, 1]


def test_a_non_finite_loss_on_one_rank_stops_every_rank_before_a_checkpoint(tiny_data, tmp_path):
    # rank 1's loss is NaN at step 2; the ranks read their losses at the end of epoch 1 (step 3,
    # before sync_every) and agree (one all-reduce): both stop, naming the step, nothing is saved
    out = tmp_path / "run"
    proc, ranks = _torchrun(tmp_path, tiny_data, out, "--stage", "srresnet", "--epochs", "2",
                            env={"SPY_NAN_RANK": "1", "SPY_NAN_STEP": "2"})
    assert proc.returncode != 0
    assert ("rank 1: error: non-finite content loss in stage 'srresnet', epoch 1, step 2 "
            "(found at the check after step 3") in proc.stderr, proc.stderr
    # rank 0 stops too: its own loss of step 3 is NaN already (DDP averaged rank 1's NaN
    # gradients of step 2 into its weights); it would say "on another rank" otherwise
    assert "rank 0: error: non-finite" in proc.stderr and "epoch 1, step" in proc.stderr
    assert [r["rc"] for r in ranks] == [1, 1]
    assert not (out / "srresnet.pth").exists() and not (out / "srresnet_best.pth").exists()
