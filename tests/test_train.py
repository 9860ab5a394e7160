"""Tests of train.py: config overrides, resuming bit for bit, the CLI end to end.

The tiny data set and the state comparison come from ``conftest.py`` (``tiny_data``,
``assert_same_state``); stage-1 resuming after a real SIGKILL and non-finite losses are tested
in ``test_faults.py``.
"""
import csv
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import checkpoint
import config
import create_data_lists
import datasets
import distributed
import evaluate
import losses
import models
import pretrained
import tables
import train
import train_log

ROOT = train.Path(train.__file__).resolve().parent
SCALE = 4


# ----------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------

def test_overrides_parse_values_and_reject_unknown_keys():
    cfg = config.build_config("smoke", overrides=["stage1.lr=2e-4", "stage2.content_loss=mse",
                                                 "train.time_budget_s=None", "data.augment=False",
                                                 "stage1.betas=(0.5, 0.9)"])
    assert cfg.stage1.lr == 2e-4 and cfg.stage2.content_loss == "mse"
    assert cfg.train.time_budget_s is None and cfg.data.augment is False
    assert tuple(cfg.stage1.betas) == (0.5, 0.9)
    with pytest.raises(ValueError, match="stage1 has no key 'lrr'"):
        config.build_config("smoke", overrides=["stage1.lrr=1"])
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        config.build_config("smoke", overrides=["stage1.lr"])


def test_missing_demo_data_is_built_and_other_lists_are_explained(tmp_path, monkeypatch):
    calls = []
    def build(**kw):                          # a stand-in that writes the two demo lists
        calls.append(kw)
        for name in create_data_lists.DEMO_LISTS:
            (tmp_path / f"{name}.json").write_text("{}")

    monkeypatch.setattr(create_data_lists, "build_demo_dataset", build)
    cfg = config.build_config("demo", overrides=[f"data.lists_dir={str(tmp_path)!r}"])
    create_data_lists.ensure_data(cfg)
    assert calls == [{"root": cfg.data.root, "lists_dir": str(tmp_path), "scale": 4}]
    cfg.data.train_list = "DIV2K_train"
    with pytest.raises(FileNotFoundError, match="DIV2K_train.json not found.*create_data_lists"):
        create_data_lists.ensure_data(cfg)


# ----------------------------------------------------------------------------------------------
# Resuming
# ----------------------------------------------------------------------------------------------

def _interrupt_after_first_checkpoint(monkeypatch):
    """Make the run die (KeyboardInterrupt) right after its first checkpoint is written."""
    real_save = checkpoint.save_checkpoint

    def save_then_die(path, state):
        real_save(path, state)
        raise KeyboardInterrupt("simulated kill after epoch 1")

    monkeypatch.setattr(checkpoint, "save_checkpoint", save_then_die)


def test_srgan_resume_gives_the_weights_of_an_uninterrupted_run(tiny_data, tmp_path, monkeypatch,
                                                                 assert_same_state):
    # (stage 1: test_faults.py kills a real train.py process mid-epoch and resumes it)
    cfg = tiny_data.config(epochs=2)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    # both start from the same stage-1 generator
    train.run_stage(tiny_data.config(epochs=1), "srresnet", straight, progress=False)
    resumed.mkdir()
    (resumed / "srresnet.pth").write_bytes((straight / "srresnet.pth").read_bytes())
    history = train.run_stage(cfg, "srgan", straight, progress=False)

    with monkeypatch.context() as m:
        _interrupt_after_first_checkpoint(m)
        with pytest.raises(KeyboardInterrupt):
            train.run_stage(cfg, "srgan", resumed, progress=False)
    interrupted = checkpoint.load_checkpoint(resumed / "srgan.pth")
    assert interrupted["epoch"] == 1 and not interrupted["finished"]
    resumed_history = train.run_stage(cfg, "srgan", resumed, resume=True, progress=False)

    a, b = checkpoint.load_checkpoint(straight / "srgan.pth"), checkpoint.load_checkpoint(resumed / "srgan.pth")
    assert_same_state(a, b, keys=("generator", "generator_ema", "optimizer_g", "discriminator",
                                  "optimizer_d", "rng"))
    assert a["step"] == b["step"] == 2 * 3        # 3 batches of 4 patches per epoch
    trained = lambda h: [r["content_loss"] for r in h if r["epoch"] > 0]
    assert trained(history) == trained(resumed_history) and len(trained(history)) == 2
    # stage 2 logs its starting generator as epoch 0 (the reference of srgan_best.pth); the
    # interrupted run died before writing epoch 1 to the log: the resumed run writes it
    with open(resumed / "srgan_log.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1, 2]


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------

def _report_table(stdout, set_name):
    """``{method: {column header: cell text}}`` of the table train.py prints for ``set_name``
    after training (``report.report_training``), in the printed order."""
    lines = stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(f"{set_name} ("))
    header = [c.strip() for c in lines[first + 1].strip().strip("|").split("|")]
    table = {}
    for line in lines[first + 3:]:
        if not line.startswith("| "):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        table[cells[0]] = dict(zip(header[1:], cells[1:]))
    return table


def test_cli_smoke_end_to_end(tiny_data, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "train.py"),
           *tiny_data.cli_args(out, "--set", "train.eval_sets=['tiny_val']")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    logs = {}
    for stage in ("srresnet", "srgan"):          # the smoke preset runs both stages
        ckpt = torch.load(out / f"{stage}.pth", weights_only=True)
        assert ckpt["format"] == checkpoint.CHECKPOINT_FORMAT and ckpt["finished"] and ckpt["epoch"] == 1
        with open(out / f"{stage}_log.csv") as f:
            logs[stage] = list(csv.DictReader(f))
        assert [int(r["epoch"]) for r in logs[stage]] == ([0, 1] if stage == "srgan" else [1])
    # stage 2 starts from stage 1's generator: its epoch-0 validation is stage 1's last, exactly
    for key in ("val_psnr", "val_ssim"):
        assert logs["srgan"][0][key] == logs["srresnet"][-1][key], key
    # ... and 3 steps at lr 1e-4 seen through an EMA of decay 0.995 hardly move it
    for key in ("val_psnr", "val_lr_psnr"):
        start, end = float(logs["srgan"][0][key]), float(logs["srgan"][-1][key])
        assert abs(end - start) < 0.5, (key, start, end)
    # the report after training (evaluate.evaluate of the checkpoints) measures the generators
    # that were validated: the same PSNR to the printed 0.01 dB
    psnr = tables.metric_header("psnr")
    table = _report_table(proc.stdout, "tiny_val")
    # each row names the preset (a smoke result is never read as the paper's) and its file
    assert list(table) == ["bicubic", "SRResNet (smoke)", "SRGAN (smoke)"], proc.stdout
    for stage, label in (("srresnet", "SRResNet (smoke)"), ("srgan", "SRGAN (smoke)")):
        assert table[label][psnr] == f"{float(logs[stage][-1]['val_psnr']):.2f}", (stage, table)
        assert f"{label}: {out / (stage + '.pth')}, 3 steps" in proc.stdout
    # the smoke generator is a bicubic upscale plus a learned residual (generator.bicubic_skip):
    # 3 Adam steps neither beat bicubic by more than 1 dB on these smooth images nor lose more
    # than 12 dB to it (8.5 dB below bicubic's 45.9 dB here; an error of the validation or of
    # the data, e.g. a misaligned or rescaled image, costs tens of dB)
    bicubic = float(table["bicubic"][psnr])
    assert bicubic - 12 < float(logs["srresnet"][-1]["val_psnr"]) < bicubic + 1, table
    # D(real), D(fake) are means of probabilities; after 3 steps at lr 1e-4 D is still at
    # chance: both near 1/2, its loss (BCE on real + BCE on fake) near 2 ln 2
    last = ckpt["history"][-1]
    assert ckpt["discriminator"] is not None
    assert 0.4 < last["d_real"] < 0.6 and 0.4 < last["d_fake"] < 0.6, last
    assert abs(last["d_loss"] - 2 * math.log(2)) < 0.05, last


def test_cli_refuses_to_overwrite_without_resume(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    args = tiny_data.cli_args(out, "--stage", "srresnet")
    assert train.main(args) == 0
    before = (out / "srresnet.pth").read_bytes()
    assert train.main(args) == 1
    assert "srresnet.pth exists: pass --resume" in capsys.readouterr().err
    assert (out / "srresnet.pth").read_bytes() == before
    assert train.main(args + ["--resume", "--epochs", "2"]) == 0      # continues to epoch 2
    assert torch.load(out / "srresnet.pth", weights_only=True)["epoch"] == 2


# ----------------------------------------------------------------------------------------------
# Content losses of the paper's variants, the VGG fallback, srgan_best.pth
# ----------------------------------------------------------------------------------------------

def _terms(loss):
    return [(w, type(term).__name__, getattr(term, "kind", None))
            for w, term in zip(loss.weights, loss.losses)]


def test_content_losses_of_the_papers_variants():
    cfg = config.build_config("smoke", overrides=["stage1.loss=vgg", "stage2.pixel_weight=0.01",
                                                 "stage2.lr_consistency_weight=0"])
    assert _terms(losses.content_loss_of(cfg, "srresnet")) == [(1.0, "VGGLoss", None)]  # SRResNet-VGG
    assert _terms(losses.content_loss_of(cfg, "srgan")) == [(1.0, "VGGLoss", None),
                                                           (0.01, "PixelLoss", "l1")]
    cfg.stage2.lr_consistency_weight = 2.0
    assert _terms(losses.content_loss_of(cfg, "srgan"))[-1] == (2.0, "LRConsistencyLoss", None)
    cfg = config.build_config("paper", variant="srgan-mse")                         # SRGAN-MSE
    # the paper's MSE is on [-1, 1] images: 4x the MSE on [0, 1]
    assert _terms(losses.content_loss_of(cfg, "srgan")) == [(4.0, "PixelLoss", "mse")]
    assert _terms(losses.content_loss_of(cfg, "srresnet")) == [(1.0, "PixelLoss", "mse")]


def test_vgg_loss_falls_back_to_mse_with_a_note_when_no_weights_can_be_had(monkeypatch, tmp_path,
                                                                            capsys):
    monkeypatch.setattr(pretrained, "SHARED_VGG", tmp_path / "absent.pth")
    monkeypatch.setattr(pretrained, "vgg19_hub_cache_file", lambda: tmp_path / "absent2.pth")
    monkeypatch.setattr(models.torch.hub, "load_state_dict_from_url",
                        lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    cfg = config.build_config("demo")                       # vgg.weights None: look everywhere
    loss = losses.content_loss_of(cfg, "srgan")        # SRGAN-MSE, on the paper's [-1, 1] scale,
    assert _terms(loss) == [(cfg.stage2.mse_range_factor, "PixelLoss", "mse"),   # + the demo's
                            (cfg.stage2.pixel_weight, "PixelLoss", "l1"),          #   extra terms
                            (cfg.stage2.lr_consistency_weight, "LRConsistencyLoss", None)]
    assert "uses the MSE content loss instead" in capsys.readouterr().out
    cfg.vgg.weights = str(tmp_path / "named-but-missing.pth")   # a named file must exist
    with pytest.raises(ValueError, match="vgg.weights="):
        losses.content_loss_of(cfg, "srgan")


def test_vgg_loss_uses_the_shared_slice_offline(shared_data, monkeypatch, tmp_path):
    monkeypatch.setattr(pretrained, "vgg19_hub_cache_file", lambda: tmp_path / "absent.pth")
    cfg = config.build_config("demo")
    vgg = losses.content_loss_of(cfg, "srgan").losses[0]
    assert type(vgg).__name__ == "VGGLoss" and (vgg.vgg.i, vgg.vgg.j) == (2, 2)


def test_paper_variants_are_presets_of_the_paper_config():
    for name in ("srresnet-mse", "srresnet-vgg22", "srgan-mse", "srgan-vgg22", "srgan-vgg54"):
        cfg = config.build_config("paper", variant=name)
        assert cfg.train.stages == ("srresnet" if name.startswith("srresnet") else "srgan")
        if name.endswith("vgg22"):
            assert (cfg.vgg.i, cfg.vgg.j) == (2, 2)
    assert config.build_config("paper", variant="srresnet-vgg22").stage1.loss == "vgg"
    assert config.build_config("paper", variant="srgan-vgg54").stage2 == config.build_config("paper").stage2
    with pytest.raises(ValueError, match="unknown variant"):
        config.build_config("paper", variant="srgan-vgg99")


def test_srgan_best_is_the_lowest_niqe_above_the_lr_psnr_floor():
    run = train.StageRun(stage="srgan", scfg={"best_lr_psnr_margin": 3.0})
    run.history.append({"epoch": 0, "val_niqe": 7.0, "val_lr_psnr": 40.0})
    rows = [{"epoch": 1, "val_niqe": 6.5, "val_lr_psnr": 39.0},   # better NIQE, faithful: best
            {"epoch": 2, "val_niqe": 5.0, "val_lr_psnr": 36.5},   # lower NIQE but 3.5 dB drift
            {"epoch": 3, "val_niqe": 6.6, "val_lr_psnr": 39.5},   # faithful, NIQE not lower
            {"epoch": 4, "val_niqe": 6.0, "val_lr_psnr": 37.2}]   # within 3 dB, lowest: best
    verdicts = []
    for row in rows:
        run.history.append(row)
        verdicts.append(train._is_best(run, row))
    assert verdicts == [True, False, False, True]


# ----------------------------------------------------------------------------------------------
# GPU readiness (issue 8), shown on the CPU
# ----------------------------------------------------------------------------------------------

def test_fp16_grad_scalers_are_saved_and_resumed(tiny_data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    cfg = tiny_data.config(epochs=1)
    cfg.train.amp = "fp16"
    train.run_stage(cfg, "srresnet", out, progress=False)
    saved = torch.load(out / "srresnet.pth", weights_only=True)["scaler_g"]
    # 3 steps, none with an overflow: the scale is still the initial 2**16 (it grows after 2000
    # good steps, halves at an overflow and resets the tracker), the tracker counts the 3 steps
    assert saved is not None and saved["scale"] == 2.0 ** 16 and saved["_growth_tracker"] == 3
    loaded = []
    real = torch.amp.GradScaler.load_state_dict
    monkeypatch.setattr(torch.amp.GradScaler, "load_state_dict",
                        lambda self, state: loaded.append(dict(state)) or real(self, state))
    cfg.stage1.epochs = 2
    train.run_stage(cfg, "srresnet", out, resume=True, progress=False)
    assert loaded == [saved]
    cfg.train.amp = "auto"                       # on the CPU: float32, no scaler
    run = train._set_up(cfg, "srresnet", tmp_path / "auto", False, False)
    assert run.amp is None and run.scaler_g is None and run.scaler_d is None


def test_cpu_run_on_a_gpu_machine_touches_nothing_of_cuda(tiny_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)      # a GPU machine ...
    def no_cuda(*args, **kwargs):
        raise AssertionError("CUDA initialised by a device=cpu run")
    monkeypatch.setattr(torch.cuda, "_lazy_init", no_cuda)
    monkeypatch.setattr(torch.cuda, "set_device", no_cuda)
    loaders = []
    real = datasets.make_train_loader
    monkeypatch.setattr(datasets, "make_train_loader",
                        lambda *a, **k: loaders.append(k) or real(*a, **k))
    cfg = tiny_data.config(epochs=1)                            # ... told to use the CPU
    history = train.run_stage(cfg, "srresnet", tmp_path / "run", progress=False)
    assert loaders and all(k["pin_memory"] is False for k in loaders)
    assert "cuda" not in torch.load(tmp_path / "run" / "srresnet.pth", weights_only=True)["rng"]
    row = history[-1]
    # the throughput line: 3 steps of 4 patches, so 4 patches per iteration
    assert row["steps"] == 3 and row["it_per_s"] > 0 and 0 <= row["data_wait"] <= 1
    assert row["patches_per_s"] == pytest.approx(4 * row["it_per_s"])
    assert "patches/s" in capsys.readouterr().out


def test_compile_with_sync_bn_is_refused_and_sync_bn_needs_cuda(tiny_data):
    cfg = tiny_data.config(epochs=2)
    cfg.train.sync_bn, cfg.train.compile = True, True
    with pytest.raises(ValueError, match="graph at every SyncBatchNorm"):
        train.check_train_options(cfg, 2, torch.device("cuda", 0))
    with pytest.raises(ValueError, match="needs CUDA"):
        train.check_train_options(cfg, 2, torch.device("cpu"))
    assert train.check_train_options(cfg, 1, torch.device("cpu")) is False   # one process: no SyncBN
    cfg.train.compile = False
    assert train.check_train_options(cfg, 2, torch.device("cuda", 0)) is True


def _as_rank(monkeypatch, rank, local_rank, events):
    """Pretend to be ``rank`` (``LOCAL_RANK`` ``local_rank``) of a 2-node run; ``agree`` (the
    barrier) is recorded in ``events``."""
    monkeypatch.setattr(distributed, "rank", lambda: rank)
    monkeypatch.setattr(distributed, "is_main_process", lambda: rank == 0)
    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))
    monkeypatch.setattr(distributed, "agree", lambda ok, what="": events.append("barrier"))


@pytest.mark.parametrize("rank, local_rank, order", [
    (0, 0, ["load", "barrier"]),         # rank 0 loads (downloads) the VGG first ...
    (3, 1, ["barrier", "load"]),         # ... the others from its cache after the barrier
])
def test_vgg_weights_are_loaded_by_rank_0_first(monkeypatch, rank, local_rank, order):
    events = []
    _as_rank(monkeypatch, rank, local_rank, events)
    cfg = config.build_config("smoke")
    real = losses.content_loss_of
    monkeypatch.setattr(losses, "content_loss_of", lambda *a: events.append("load") or real(*a))
    _, _, loss = train.build_networks(cfg, "srresnet", torch.device("cpu"))
    assert events == order and _terms(loss) == [(1.0, "PixelLoss", "l1")]   # the smoke stage 1


@pytest.mark.parametrize("rank, local_rank, order", [
    (0, 0, ["build", "barrier"]),
    (2, 0, ["build", "barrier"]),        # first rank of the second node: builds its node's cache
    (3, 1, ["barrier", "build"]),
])
def test_data_cache_is_built_by_the_first_rank_of_each_node(monkeypatch, rank, local_rank, order):
    events = []
    _as_rank(monkeypatch, rank, local_rank, events)
    assert distributed.local_main_first(lambda: events.append("build") or 7, "decoding") == 7
    assert events == order


class _FakeWriter:
    """Stands in for tensorboard's SummaryWriter (records what it is given)."""
    made = []

    def __init__(self, log_dir):
        self.log_dir, self.scalars, self.images = log_dir, [], []
        _FakeWriter.made.append(self)

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def add_image(self, tag, image, step):
        self.images.append((tag, tuple(image.shape), float(image.min()), float(image.max()), step))

    def flush(self):
        pass

    def close(self):
        self.closed = True


def test_tensorboard_logs_losses_validation_and_images(tiny_data, tmp_path, monkeypatch):
    fake = type(sys)("torch.utils.tensorboard")
    fake.SummaryWriter = _FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    _FakeWriter.made.clear()
    cfg = tiny_data.config(epochs=2)
    cfg.train.tensorboard = True
    history = train.run_stage(cfg, "srresnet", tmp_path / "run", progress=False)
    (writer,) = _FakeWriter.made
    assert writer.closed                            # at the end of the stage
    assert writer.log_dir == str(tmp_path / "run" / "tensorboard" / "srresnet")
    tags = {tag for tag, _, _ in writer.scalars}
    assert {"loss/content", "lr", "val/psnr", "val/ssim", "speed/patches_per_s"} <= tags
    assert ("val/psnr", history[-1]["val_psnr"], history[-1]["step"]) in writer.scalars
    side = 48                                       # the validation image: LR | SR | HR side by side
    assert [img[1] for img in writer.images] == [(3, side, 3 * side)] * 2
    assert all(0 <= lo <= hi <= 1 for _, _, lo, hi, _ in writer.images)
    with open(tmp_path / "run" / "srresnet_log.csv") as f:   # the CSV log is written as before
        assert len(list(csv.DictReader(f))) == 2


def test_tensorboard_missing_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)   # import fails
    with pytest.raises(RuntimeError, match="pip install tensorboard"):
        train_log.tensorboard_writer(tmp_path)


def test_validation_is_tiled_on_cuda_only(monkeypatch):
    tiles = []
    monkeypatch.setattr(evaluate, "upscale_image",          # (evaluate's own name for it)
                        lambda model, lr, device="cpu", tile=None, **k: tiles.append(tile)
                        or np.zeros((lr.shape[0] * SCALE, lr.shape[1] * SCALE, 3), np.uint8))
    data = [(np.zeros((8, 8, 3), np.uint8), np.zeros((32, 32, 3), np.uint8), "a")]
    model = torch.nn.Conv2d(3, 3, 1)
    for device in ("cuda", "cpu"):
        evaluate.validate(model, data, SCALE, device, metrics=("psnr",))
    assert tiles == [evaluate.VALIDATION_TILE, None]


def test_workers_live_for_the_stage_and_resume_stays_bit_identical(tiny_data, tmp_path, monkeypatch,
                                                                    assert_same_state):
    # data.workers > 0: one DataLoader (persistent workers) per stage, its crops seeded per epoch
    made = []
    real = datasets.make_stage_loader
    monkeypatch.setattr(datasets, "make_stage_loader", lambda *a, **k: made.append(1) or real(*a, **k))
    cfg = tiny_data.config(epochs=2)
    cfg.data.workers = 2
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    history = train.run_stage(cfg, "srresnet", straight, progress=False)
    assert len(made) == 1                                   # not one per epoch
    with monkeypatch.context() as m:
        _interrupt_after_first_checkpoint(m)
        with pytest.raises(KeyboardInterrupt):
            train.run_stage(cfg, "srresnet", resumed, progress=False)
    resumed_history = train.run_stage(cfg, "srresnet", resumed, resume=True, progress=False)
    a, b = (checkpoint.load_checkpoint(d / "srresnet.pth") for d in (straight, resumed))
    assert_same_state(a, b, keys=("generator", "optimizer_g", "rng"))
    assert [r["content_loss"] for r in history] == [r["content_loss"] for r in resumed_history]


def test_stage_loader_crops_anew_each_epoch_and_repeats_an_epoch_exactly(tiny_data):
    cfg = tiny_data.config(epochs=2)
    ds = datasets.build_train_set(cfg, progress=False)
    loader = datasets.make_stage_loader(ds, 4, workers=2)
    epoch = lambda e: torch.cat([lr for lr, _ in datasets.start_epoch(loader, 10 + e, 10 + e, e)])
    one, two, again = epoch(1), epoch(2), epoch(1)
    assert not torch.equal(one, two) and torch.equal(one, again)


# ----------------------------------------------------------------------------------------------
# Bad configuration at the command line: one line, non-zero exit, nothing written changed
# ----------------------------------------------------------------------------------------------

def _cli_args(tiny_data, out, *extra):
    return tiny_data.cli_args(out, "--stage", "srresnet", *extra)


def _one_error_line(capsys):
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_resume_with_other_generator_settings_names_them(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(_cli_args(tiny_data, out)) == 0
    before = (out / "srresnet.pth").read_bytes()
    capsys.readouterr()
    code = train.main(_cli_args(tiny_data, out, "--resume", "--set", "generator.n_channels=24",
                                "--epochs", "2"))
    line = _one_error_line(capsys)
    assert code == 1 and "generator.n_channels: checkpoint 16, this run 24" in line
    assert (out / "srresnet.pth").read_bytes() == before


def test_missing_validation_set_is_an_error_unless_validation_is_off(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    code = train.main(_cli_args(tiny_data, out, "--set", "data.val_list='no_such_set'"))
    line = _one_error_line(capsys)
    assert code == 1 and "data.val_list" in line and "no_such_set" in line
    assert not (out / "srresnet.pth").exists()
    assert train.main(_cli_args(tiny_data, out, "--set", "data.val_list=None")) == 0
    assert (out / "srresnet.pth").is_file()


def test_out_that_is_a_file_is_refused(tiny_data, tmp_path, capsys):
    out = tmp_path / "a_file"
    out.write_text("keep me")
    code = train.main(_cli_args(tiny_data, out))
    line = _one_error_line(capsys)
    assert code == 1 and "--out" in line and str(out) in line
    assert out.read_text() == "keep me"


# ----------------------------------------------------------------------------------------------
# Settings checked in structure and in relation (one line each, nothing written)
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("override,needles", [
    ("data=None", ["data is a section", "data."]),
    ("generator=5", ["generator is a section"]),
    ("train.eval_sets=Set5", ["train.eval_sets is a list", "['Set5']"]),
    ("seed=100000000000000000000000", ["seed", "out of range"]),
    ("stage2.name=../x", ["stage2.name", "plain name"]),
    ("stage1.name=", ["stage1.name", "plain name"]),
    ("data.cache_dir=''", ["data.cache_dir", "folder path"]),
    ("stage1.time_budget_s=1e-9", ["stage1.time_budget_s", "out of range"]),
    ("train.device=gpu", ["train.device", "cuda:N"]),
    ("stage1.lrr=1e-3", ["no key 'lrr'", "did you mean 'stage1.lr'"]),
])
def test_bad_settings_are_one_line_before_any_work(tiny_data, tmp_path, capsys, override,
                                                  needles):
    out = tmp_path / "run"
    assert train.main(_cli_args(tiny_data, out, "--set", override)) == 1
    line = _one_error_line(capsys)
    assert line.startswith("train.py: error:") and all(n in line for n in needles), line
    assert not out.exists()


def test_a_misspelled_list_is_named_not_built(tiny_data, tmp_path, capsys):
    cfg_root = tmp_path / "demo_root"
    out = tmp_path / "run"
    assert train.main(_cli_args(tiny_data, out, "--set", "data.train_list=tiny_trian",
                                "--set", f"data.root={cfg_root}")) == 1
    line = _one_error_line(capsys)
    assert "tiny_trian" in line and "did you mean --set data.train_list=tiny_train" in line, line
    assert not cfg_root.exists()                       # no demo dataset was built on the way


def test_more_discriminator_steps_than_batches_is_refused(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(_cli_args(tiny_data, out)) == 0
    assert train.main(tiny_data.cli_args(out, "--stage", "srgan", "--set",
                                         "stage2.d_steps=1000")) == 1
    line = _one_error_line(capsys)
    assert "stage2.d_steps=1000" in line and "no generator step" in line, line
    assert not (out / "srgan.pth").exists()


def test_stage_two_budget_is_training_time_and_always_leaves_a_checkpoint(tiny_data, tmp_path,
                                                                          monkeypatch):
    # validating the starting generator does not eat stage 2's budget: a 1 s budget still ends
    # in a finished checkpoint even when that validation takes longer
    out = tmp_path / "run"
    assert train.main(_cli_args(tiny_data, out)) == 0
    real = train._validate

    def slow(run):
        time.sleep(1.5)
        return real(run)

    monkeypatch.setattr(train, "_validate", slow)
    assert train.main(tiny_data.cli_args(out, "--stage", "srgan", "--set",
                                         "stage2.time_budget_s=1")) == 0
    ckpt = checkpoint.load_checkpoint(out / "srgan.pth")
    assert ckpt["finished"] and ckpt["step"] >= 1
