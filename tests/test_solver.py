"""Tests of solver.py: losses, one epoch of each stage, schedules, RNG state, checkpoints."""
import math
import random
import time
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import checkpoint
import evaluate
import losses
import metrics
import models
import pretrained
import run_clock
import runtime
import solver
import utils
from config import get_config

SCALE = 4
LR_SIDE = 8          # LR patch side of the synthetic batches (HR: 32)
BATCH = 4


def smooth_batch(seed, n=BATCH, side=LR_SIDE):
    """A fixed ``(lr, hr)`` batch of smooth random images: ``(n,3,side,side)``, ``(n,3,4side,4side)``
    float in [0,1]; LR = area-downsampled HR (a learnable relation)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, side // 2, side // 2, generator=g)
    hr = nn.functional.interpolate(coarse, scale_factor=2 * SCALE, mode="bilinear", align_corners=False)
    lr = nn.functional.avg_pool2d(hr, SCALE)
    return lr.clamp(0, 1), hr.clamp(0, 1)


def smoke_generator(arch="srresnet"):
    cfg = get_config("smoke")
    torch.manual_seed(0)
    if arch == "srresnet":
        return models.build_generator(arch, SCALE, n_blocks=cfg.generator.n_blocks,
                                      n_channels=cfg.generator.n_channels)
    return models.build_generator(arch, SCALE)


def smoke_discriminator():
    d = get_config("smoke").discriminator
    torch.manual_seed(1)
    return models.Discriminator(d.n_channels, d.n_blocks, d.fc_size)


def random_vgg_loss():
    cfg = get_config("smoke")
    torch.manual_seed(2)
    vgg = pretrained.vgg19(cfg.vgg.i, cfg.vgg.j, weights=pretrained.RANDOM_WEIGHTS)
    return losses.VGGLoss(vgg, cfg.vgg.feature_scale)


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------

def test_adversarial_losses_are_binary_cross_entropies():
    real = torch.tensor([3.0, -1.0, 0.5])
    fake = torch.tensor([-2.0, 0.0, 4.0])
    # -log D(G(x)) with D = sigmoid(logit)
    assert losses.generator_adversarial_loss(fake).item() == pytest.approx(
        (-torch.log(torch.sigmoid(fake))).mean().item(), rel=1e-6)
    want = (-torch.log(torch.sigmoid(real))).mean() + (-torch.log(1 - torch.sigmoid(fake))).mean()
    assert losses.discriminator_loss(real, fake).item() == pytest.approx(want.item(), rel=1e-6)


def test_pixel_loss_kinds_and_y_only():
    lr, hr = smooth_batch(0)
    sr = hr + 0.1
    assert losses.pixel_loss(sr, hr, "mse").item() == pytest.approx(0.01, rel=1e-4)
    assert losses.pixel_loss(sr, hr, "l1").item() == pytest.approx(0.1, rel=1e-4)
    # Caffe's EuclideanLoss: half the squared error summed over each patch, mean over the batch
    n, c, h, w = hr.shape
    assert losses.pixel_loss(sr, hr, "euclidean").item() == pytest.approx(0.01 * c * h * w / 2,
                                                                           rel=1e-4)
    assert losses.pixel_loss(sr, hr, "euclidean", y_only=True).item() == pytest.approx(
        losses.pixel_loss(sr, hr, "mse", y_only=True).item() * h * w / 2, rel=1e-4)
    assert losses.pixel_loss(sr[:1], hr[:1], "euclidean").item() == pytest.approx(
        losses.pixel_loss(sr, hr, "euclidean").item(), rel=1e-4)      # a mean over the batch
    # same luminance, different chroma: zero loss on Y, non-zero on RGB
    ycc = utils.rgb2ycbcr_torch(hr)
    shifted = utils.ycbcr2rgb_torch(torch.cat([ycc[:, :1], ycc[:, 1:] * 0.9 + 0.05], 1))
    assert losses.pixel_loss(shifted, hr, "mse").item() > 1e-4
    assert losses.pixel_loss(shifted, hr, "mse", y_only=True).item() < 1e-10
    with pytest.raises(ValueError, match="unknown pixel loss"):
        losses.pixel_loss(sr, hr, "l3")


def test_vgg_loss_gradient_reaches_the_generator():
    generator = smoke_generator()
    loss_fn = random_vgg_loss()
    lr, hr = smooth_batch(1)
    loss = loss_fn(generator(lr), hr)
    loss.backward()
    grad = generator.head[0].weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert all(p.grad is None for p in loss_fn.vgg.parameters())   # the VGG stays frozen
    # features are rescaled by 1/12.75 before the MSE (the paper's choice)
    feats = loss_fn.vgg(generator(lr).detach()), loss_fn.vgg(hr)
    want = nn.functional.mse_loss(feats[0] / 12.75, feats[1] / 12.75)
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)


def test_non_finite_loss_is_found_at_the_next_read_and_names_its_step():
    # steps 1-2 fine, a NaN at step 3, reads every 5 steps: the epoch stops at the read after
    # step 5 (not at the end of the 9 batches) and names step 3 and the range 3-5
    generator = smoke_generator()
    optimizer = torch.optim.Adam(generator.parameters(), lr=1e-3)
    lr, hr = smooth_batch(2)
    bad = hr.clone()
    bad[0, 0, 0, 0] = float("nan")
    batches = [(lr, hr)] * 2 + [(lr, bad)] + [(lr, hr)] * 6
    served = []
    loader = (served.append(i) or b for i, b in enumerate(batches))
    clock = run_clock.RunClock(step=10).start()             # steps 11..: as in a resumed epoch 3
    with pytest.raises(FloatingPointError, match=r"non-finite content loss in stage 'srresnet', "
                       r"epoch 3, step 13 \(found at the check after step 15\b"):
        solver.train_epoch_mse(solver.Trainee(generator, optimizer), loader,
                               losses.PixelLoss("mse"),
                               solver.EpochPlan("cpu", clock=clock, epoch=3, progress=False,
                                                sync_every=5))
    assert len(served) == 5
    # an epoch shorter than sync_every: found at the end of the epoch, before it returns
    generator = smoke_generator()                   # (the first one holds non-finite weights now)
    optimizer = torch.optim.Adam(generator.parameters(), lr=1e-3)
    with pytest.raises(FloatingPointError, match=r"epoch 1, step 2 \(found at the check after step 3\b"):
        solver.train_epoch_mse(solver.Trainee(generator, optimizer),
                               [(lr, hr), (lr, bad), (lr, hr)], losses.PixelLoss("mse"),
                               solver.EpochPlan("cpu", progress=False, sync_every=25))


def test_non_finite_gan_losses_name_their_step():
    generator, discriminator = smoke_generator(), smoke_discriminator()
    opt_g = torch.optim.Adam(generator.parameters(), lr=1e-4)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=1e-4)
    lr, hr = smooth_batch(3)
    bad = hr * float("nan")
    batches = [(lr, hr)] * 4 + [(lr, bad)] + [(lr, hr)] * 3   # batch 5 = G step 3 with d_steps 2
    with pytest.raises(FloatingPointError, match=r"non-finite discriminator loss .*epoch 2, step 3 "):
        solver.train_epoch_gan(solver.Trainee(generator, opt_g),
                               solver.Trainee(discriminator, opt_d), batches, losses.PixelLoss(),
                               solver.EpochPlan("cpu", epoch=2, progress=False, sync_every=4),
                               solver.GANSettings(d_steps=2))


class _SyncCounter:
    """Counts the host reads of tensor values (``.item()``, ``.tolist()``, ``.cpu()``,
    ``.numpy()``, ``bool()``, ``float()``, ``int()``): on a GPU each waits for the queued work.
    The optimisers' own reads of their CPU step counters are not counted (they never wait for
    the GPU)."""

    METHODS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__")

    def __init__(self, monkeypatch, optimizers):
        self.count = 0
        for name in self.METHODS:
            real = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._counting(real, optimizers))

    def _counting(self, real, optimizers):
        def method(tensor, *args, **kwargs):
            steps = {id(st.get("step")) for opt in optimizers for st in opt.state.values()}
            if id(tensor) not in steps:
                self.count += 1
            return real(tensor, *args, **kwargs)
        return method


@pytest.mark.parametrize("stage", ["srresnet", "srgan"])
def test_host_syncs_once_per_read_not_per_step(monkeypatch, stage):
    generator, discriminator = smoke_generator(), smoke_discriminator()
    opt_g = torch.optim.Adam(generator.parameters(), lr=1e-4)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=1e-4)
    batches = [smooth_batch(4)] * 12
    loss = random_vgg_loss() if stage == "srgan" else losses.PixelLoss("mse")
    counter = _SyncCounter(monkeypatch, [opt_g, opt_d])
    clock = run_clock.RunClock(time_budget_s=3600).start()
    if stage == "srresnet":
        m = solver.train_epoch_mse(solver.Trainee(generator, opt_g), batches, loss,
                                   solver.EpochPlan("cpu", clock=clock, progress=False,
                                                    sync_every=5))
    else:
        m = solver.train_epoch_gan(solver.Trainee(generator, opt_g),
                                   solver.Trainee(discriminator, opt_d), batches, loss,
                                   solver.EpochPlan("cpu", clock=clock, progress=False,
                                                    sync_every=5),
                                   solver.GANSettings(collapse_fake=0.01, collapse_real=0.99))
    assert m["steps"] == 12 and math.isfinite(m["content_loss"])
    assert counter.count == 3          # reads after steps 5 and 10, and at the end of the epoch


def test_loss_watch_means_equal_the_host_means():
    watch = solver.LossWatch()
    values = [0.25, 1.5, 3e-7, 2.0]
    for v in values:
        watch.add("a", torch.tensor(v), check=True)
        watch.extreme("top", torch.tensor(v), largest=True)
    means, extreme = watch.read()
    assert means["a"] == sum(torch.tensor(v).item() for v in values) / len(values)
    assert extreme["top"] == 2.0


# ----------------------------------------------------------------------------------------------
# Epochs
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["srresnet", "srcnn"])
def test_mse_steps_on_a_fixed_batch_lower_the_loss(arch):
    generator = smoke_generator(arch)
    optimizer = torch.optim.Adam(generator.parameters(), lr=1e-3)
    loss_fn = losses.PixelLoss("mse", generator.y_only)
    batch = smooth_batch(3)
    run = lambda n: solver.train_epoch_mse(solver.Trainee(generator, optimizer), [batch] * n,
                                           loss_fn, solver.EpochPlan("cpu", progress=False))
    first = run(1)
    assert first["steps"] == 1 and math.isfinite(first["it_per_s"])
    run(15)
    last = run(1)
    assert last["content_loss"] < 0.7 * first["content_loss"]


def test_bf16_autocast_and_channels_last_train_on_the_cpu():
    generator = runtime.prepare_model(smoke_generator(), "cpu", channels_last=True)
    optimizer = torch.optim.Adam(generator.parameters(), lr=1e-3)
    m = solver.train_epoch_mse(solver.Trainee(generator, optimizer), [smooth_batch(9)] * 3,
                               losses.PixelLoss("l1"),
                               solver.EpochPlan("cpu", amp="bf16", channels_last=True,
                                                progress=False))
    assert m["steps"] == 3 and math.isfinite(m["content_loss"])
    assert all(p.dtype == torch.float32 for p in generator.parameters())   # master weights stay fp32
    with pytest.raises(ValueError, match="unknown amp mode"):
        runtime.autocast(torch.device("cpu"), "fp8")


def test_content_losses_keep_float32_numerics_under_autocast():
    # bf16 autocast must not reach the Y conversion or the VGG of the content losses
    sr, hr = smooth_batch(7)
    sr = (sr.repeat_interleave(SCALE, -1).repeat_interleave(SCALE, -2) + 1e-3).clamp(0, 1)
    for loss in (losses.PixelLoss("mse", y_only=True), random_vgg_loss(),
                 losses.LRConsistencyLoss(SCALE, "l1")):
        exact = loss(sr, hr)
        with runtime.autocast(torch.device("cpu"), "bf16"):
            mixed = loss(sr, hr)
        assert mixed.dtype == torch.float32
        assert torch.allclose(mixed, exact, rtol=1e-5, atol=0), (type(loss).__name__, mixed, exact)


def test_fp16_trains_with_one_grad_scaler_per_optimiser():
    generator, discriminator = smoke_generator(), smoke_discriminator()
    opt_g = torch.optim.Adam(generator.parameters(), lr=1e-4)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=1e-4)
    scaler_g, scaler_d = (runtime.make_grad_scaler("fp16", "cpu") for _ in range(2))
    assert runtime.make_grad_scaler("bf16", "cpu") is None and runtime.make_grad_scaler(None, "cpu") is None
    m = solver.train_epoch_gan(solver.Trainee(generator, opt_g, scaler_g),
                               solver.Trainee(discriminator, opt_d, scaler_d),
                               [smooth_batch(4)] * 3, losses.PixelLoss(),
                               solver.EpochPlan("cpu", amp="fp16", progress=False))
    assert m["steps"] == 3 and math.isfinite(m["content_loss"]) and math.isfinite(m["d_loss"])
    assert all(p.dtype == torch.float32 for p in generator.parameters())
    for scaler, opt in ((scaler_g, opt_g), (scaler_d, opt_d)):
        state = scaler.state_dict()
        assert state["_growth_tracker"] == 3                    # one update() per optimiser step
        assert opt.state[next(iter(opt.state))]["step"].item() == 3
    g = runtime.make_grad_scaler("fp16", "cpu")
    g.load_state_dict(scaler_g.state_dict())
    assert g.get_scale() == scaler_g.get_scale()


def test_amp_auto_picks_bf16_on_ampere_fp16_before_and_float32_on_the_cpu(monkeypatch):
    assert runtime.resolve_amp("auto", "cpu") is None
    assert runtime.resolve_amp("fp16", "cpu") == "fp16" and runtime.resolve_amp(None, "cuda") is None
    for capability, expected in (((7, 5), "fp16"), ((7, 0), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16")):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert runtime.resolve_amp("auto", torch.device("cuda", 0)) == expected
    with pytest.raises(ValueError, match="unknown amp mode"):
        runtime.resolve_amp("fp8", "cpu")


def test_cudnn_benchmark_only_inside_the_block():
    before = torch.backends.cudnn.benchmark
    with runtime.cudnn_benchmark(True):
        assert torch.backends.cudnn.benchmark
    assert torch.backends.cudnn.benchmark == before
    with runtime.cudnn_benchmark(False):
        assert torch.backends.cudnn.benchmark == before


def test_gan_steps_on_a_fixed_batch_lower_content_and_discriminator_losses():
    generator, discriminator = smoke_generator(), smoke_discriminator()
    opt_g = torch.optim.Adam(generator.parameters(), lr=1e-3)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=1e-3)
    loss_fn = losses.PixelLoss("mse")   # a content loss that dominates adv_weight * adversarial
    batch = smooth_batch(4)
    run = lambda n: solver.train_epoch_gan(solver.Trainee(generator, opt_g),
                                           solver.Trainee(discriminator, opt_d), [batch] * n,
                                           loss_fn, solver.EpochPlan("cpu", progress=False),
                                           solver.GANSettings(adv_weight=0.001))
    first = run(1)
    for key in ("content_loss", "adv_loss", "d_loss", "d_real", "d_fake", "it_per_s"):
        assert math.isfinite(first[key]), key
    assert 0 <= first["d_fake"] <= 1 and 0 <= first["d_real"] <= 1
    run(12)
    last = run(1)
    assert last["content_loss"] < first["content_loss"]
    assert last["d_loss"] < first["d_loss"]
    assert last["d_real"] > last["d_fake"]


def test_gan_d_steps_makes_k_discriminator_steps_per_generator_step():
    generator, discriminator = smoke_generator(), smoke_discriminator()
    opt_g = torch.optim.Adam(generator.parameters(), lr=1e-4)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=1e-4)
    clock = run_clock.RunClock().start()
    m = solver.train_epoch_gan(solver.Trainee(generator, opt_g),
                               solver.Trainee(discriminator, opt_d), [smooth_batch(5)] * 4,
                               losses.PixelLoss(),
                               solver.EpochPlan("cpu", clock=clock, progress=False),
                               solver.GANSettings(d_steps=2))
    assert m["steps"] == 2 and clock.step == 2
    assert opt_d.state[next(iter(discriminator.parameters()))]["step"].item() == 4
    assert opt_g.state[next(iter(generator.parameters()))]["step"].item() == 2


class _ConstantUpsampler(nn.Module):
    """Generator stub: ``w * nearest-upsampled input``, ``w`` starts at 0 -> black images."""
    y_only = False

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return self.w * nn.functional.interpolate(x, scale_factor=SCALE)


class _BrightnessCritic(nn.Module):
    """Discriminator stub: logit = 40 * (mean brightness - 0.5): sure that white is real."""

    def __init__(self):
        super().__init__()
        self.b = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return 40 * (x.mean(dim=(1, 2, 3)) - 0.5) + self.b


def test_collapsed_discriminator_is_reported():
    lr, hr = torch.ones(2, 3, 4, 4), torch.ones(2, 3, 16, 16)   # white HR; G outputs black
    generator, critic = _ConstantUpsampler(), _BrightnessCritic()
    opt_g = torch.optim.SGD(generator.parameters(), lr=0.0)
    opt_d = torch.optim.SGD(critic.parameters(), lr=0.0)
    with pytest.warns(RuntimeWarning, match=r"discriminator collapse in stage 'srgan', epoch 7"):
        m = solver.train_epoch_gan(solver.Trainee(generator, opt_g), solver.Trainee(critic, opt_d),
                                   [(lr, hr)] * 3, losses.PixelLoss(),
                                   solver.EpochPlan("cpu", epoch=7, progress=False),
                                   solver.GANSettings(collapse_fake=0.01, collapse_real=0.99))
    assert m["d_collapsed"] and m["d_fake"] < 0.01 < 0.99 < m["d_real"]
    with warnings.catch_warnings():                       # an undecided D is not reported
        warnings.simplefilter("error")
        critic.b.data.fill_(20.0)
        m = solver.train_epoch_gan(solver.Trainee(generator, opt_g), solver.Trainee(critic, opt_d),
                                   [(lr, hr)] * 3, losses.PixelLoss(),
                                   solver.EpochPlan("cpu", progress=False),
                                   solver.GANSettings(collapse_fake=0.01, collapse_real=0.99))
    assert not m["d_collapsed"]


def test_clock_stops_the_epoch_and_drives_the_lr():
    generator = smoke_generator()
    optimizer = torch.optim.Adam(generator.parameters(), lr=1.0)
    clock = run_clock.RunClock(total_steps=4).start()
    lr_fn = solver.make_lr_fn(1e-3, "cosine", min_lr=1e-5)
    m = solver.train_epoch_mse(solver.Trainee(generator, optimizer), [smooth_batch(6)] * 10,
                               losses.PixelLoss(),
                               solver.EpochPlan("cpu", clock=clock, lr_fn=lr_fn, progress=False))
    assert m["steps"] == 4 and m["stopped_early"] and clock.finished()
    assert m["lr"] == pytest.approx(lr_fn(3 / 4))          # the lr of the last step


def test_lr_schedules():
    const = solver.make_lr_fn(1e-4)
    cos = solver.make_lr_fn(1e-3, "cosine", min_lr=1e-5)
    step = solver.make_lr_fn(1e-4, "step", decay_at=0.5, decay_factor=0.1)
    assert const(0) == const(0.9) == 1e-4
    assert cos(0) == pytest.approx(1e-3) and cos(1) == pytest.approx(1e-5)
    assert cos(0.5) == pytest.approx((1e-3 + 1e-5) / 2)
    assert step(0.49) == pytest.approx(1e-4) and step(0.5) == pytest.approx(1e-5)
    with pytest.raises(ValueError, match="unknown lr schedule"):
        solver.make_lr_fn(1e-4, "linear")


def test_clock_time_budget_and_state():
    clock = run_clock.RunClock(total_steps=1000, time_budget_s=0.05).start()
    assert not clock.finished()
    time.sleep(0.06)
    assert clock.finished() and clock.progress() == 1.0
    state = clock.state_dict()
    resumed = run_clock.RunClock.from_state_dict(state, total_steps=1000)
    assert resumed.step == 0 and resumed.elapsed_s == pytest.approx(state["elapsed_s"])
    assert resumed.progress() == 0.0           # no budget: step-based only


# ----------------------------------------------------------------------------------------------
# RNG state and checkpoints
# ----------------------------------------------------------------------------------------------

def test_rng_state_round_trip():
    runtime.seed_everything(123)
    state = runtime.get_rng_state()
    draw = lambda: (random.random(), np.random.rand(), torch.rand(3).tolist())
    first = draw()
    runtime.set_rng_state(state)
    assert draw() == first


def test_rng_state_with_more_cuda_states_than_gpus_restores_what_fits(monkeypatch):
    # a checkpoint of a 4-GPU torchrun run, resumed on a machine with 1 GPU
    state = runtime.get_rng_state()
    state["cuda"] = [torch.full((16,), i, dtype=torch.uint8) for i in range(4)]
    restored = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device="cuda": restored.update({device: s}))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: pytest.fail("restores all"))
    runtime.set_rng_state(state, torch.device("cuda", 0))
    assert list(restored) == [0] and torch.equal(restored[0], state["cuda"][0])
    restored.clear()
    runtime.set_rng_state(state, torch.device("cpu"))       # a CPU run touches nothing of CUDA
    assert restored == {}


def test_cpu_run_saves_no_cuda_rng_state(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)   # a GPU machine, CUDA unused
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: pytest.fail("touched CUDA"))
    assert "cuda" not in runtime.get_rng_state()


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    generator = smoke_generator()
    optimizer = torch.optim.Adam(generator.parameters(), lr=1e-3, betas=(0.9, 0.999))
    solver.train_epoch_mse(solver.Trainee(generator, optimizer), [smooth_batch(7)],
                           losses.PixelLoss(), solver.EpochPlan("cpu", progress=False))
    cfg = get_config("smoke")                 # EasyDict with tuples inside
    state = checkpoint.make_checkpoint(stage="srresnet", arch="srresnet",
                                   arch_kwargs={"n_blocks": 2, "n_channels": 16}, scale=SCALE,
                                   generator=generator, optimizer_g=optimizer, epoch=1, step=1,
                                   config=cfg, history=[{"epoch": 1, "content_loss": 0.1}],
                                   clock=run_clock.RunClock(10, step=1))
    path = tmp_path / "sub" / "srresnet.pth"
    checkpoint.save_checkpoint(path, state)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == checkpoint.CHECKPOINT_FORMAT and raw["epoch"] == 1
    assert type(raw["config"]) is dict and raw["config"]["stage1"]["betas"] == [0.9, 0.999]
    for k, v in generator.state_dict().items():
        assert torch.equal(raw["generator"][k], v)
    model, ckpt = checkpoint.load_generator(path)
    assert ckpt["stage"] == "srresnet" and isinstance(model, models.SRResNet)
    assert [p.name for p in path.parent.iterdir()] == ["srresnet.pth"]   # no temp file left


def test_failed_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "srresnet.pth"
    checkpoint.save_checkpoint(path, {"format": checkpoint.CHECKPOINT_FORMAT, "epoch": 1})
    before = path.read_bytes()

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_checkpoint(path, {"format": checkpoint.CHECKPOINT_FORMAT, "epoch": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["srresnet.pth"]


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        checkpoint.load_checkpoint(tmp_path / "nothing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth: not a readable torch file"):
        checkpoint.load_checkpoint(junk)
    other = tmp_path / "other.pth"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(ValueError, match="other.pth: not a generator checkpoint of this project"):
        checkpoint.load_checkpoint(other)


def test_validate_reports_psnr_and_ssim_of_the_model():
    class Bicubic(nn.Module):     # a "generator" that is plain bicubic: compare with utils directly
        scale, y_only = SCALE, False

        def forward(self, x):
            return nn.functional.interpolate(x, scale_factor=SCALE, mode="bicubic", align_corners=False)

    _, hr = smooth_batch(8, n=2, side=12)
    hr_u8 = [utils.tensor_to_image(h) for h in hr]
    data = [(utils.tensor_to_image(nn.functional.avg_pool2d(h[None], SCALE)), h8, f"im{i}")
            for i, (h, h8) in enumerate(zip(hr, hr_u8))]
    model = Bicubic().train()
    result = evaluate.validate(model, data, SCALE)
    assert model.training                             # mode restored
    import tiling
    want = [metrics.psnr(tiling.upscale_image(model, lr), h, SCALE) for lr, h, _ in data]
    assert result["images"] == 2 and result["psnr"] == pytest.approx(np.mean(want))
    assert 0 < result["ssim"] <= 1


# ----------------------------------------------------------------------------------------------
# Stage 2 pieces: the two steps, the content-loss sum, the generator EMA
# ----------------------------------------------------------------------------------------------

def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed(before, model):
    """Names of the parameters (not BN statistics) of ``model`` that differ from ``before``."""
    names = {k for k, _ in model.named_parameters()}
    return {k for k, v in model.state_dict().items() if k in names and not torch.equal(before[k], v)}


def test_discriminator_step_trains_d_only_and_generator_step_trains_g_only():
    generator, discriminator = smoke_generator(), smoke_discriminator()
    opt_g = torch.optim.Adam(generator.parameters(), lr=1e-3)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=1e-3)
    lr, hr = smooth_batch(11)
    g0, d0 = _params(generator), _params(discriminator)
    sr = generator(lr)
    d_loss, d_real, d_fake = solver.discriminator_step(discriminator, opt_d, hr, sr)
    assert _changed(d0, discriminator) and not _changed(g0, generator)
    assert 0 < d_real.item() < 1 and 0 < d_fake.item() < 1 and d_loss.dim() == 0
    d1 = _params(discriminator)
    generator.train()
    g_loss, content, adv = solver.generator_step(discriminator, opt_g, sr, hr, losses.PixelLoss(), 0.5)
    assert g_loss.item() == pytest.approx(content.item() + 0.5 * adv.item(), rel=1e-5)
    weights = [k for k in g0 if k.endswith("weight")]
    assert set(weights) & _changed(g0, generator)
    assert not _changed(d1, discriminator)
    assert all(p.requires_grad for p in discriminator.parameters())   # D is trainable again


def test_steps_refuse_a_non_finite_loss_before_updating():
    generator, discriminator = smoke_generator(), smoke_discriminator()
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=1e-3)
    lr, hr = smooth_batch(12)
    d0 = _params(discriminator)
    with pytest.raises(FloatingPointError, match="discriminator.*epoch 3, step 7"):
        solver.discriminator_step(discriminator, opt_d, hr * float("nan"), generator(lr),
                                  where=("srgan", 3, 7))
    assert not _changed(d0, discriminator)


def test_content_loss_is_the_weighted_sum_of_its_terms():
    lr, hr = smooth_batch(13)
    sr = hr + 0.1
    both = losses.ContentLoss([(1.0, losses.PixelLoss("mse")), (0.5, losses.PixelLoss("l1"))])
    assert both(sr, hr).item() == pytest.approx(0.01 + 0.5 * 0.1, rel=1e-4)
    with pytest.raises(ValueError):
        losses.ContentLoss([])


def test_ema_update_is_decay_times_average_plus_rest_times_weights():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    ema = solver.GeneratorEMA(model, decay=0.9)
    start = _params(ema.model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model.train()(torch.rand(2, 3, 8, 8))            # moves the BN running statistics
    ema.update(model)
    now = model.state_dict()
    for k, avg in ema.model.state_dict().items():
        if avg.dtype.is_floating_point:              # ema = d * ema + (1 - d) * w, not inverted
            assert torch.allclose(avg, 0.9 * start[k] + 0.1 * now[k], atol=1e-6), k
        else:
            assert torch.equal(avg, now[k]), k
    assert not any(p.requires_grad for p in ema.model.parameters())
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="ema_decay"):
            solver.GeneratorEMA(model, bad)


def test_train_epoch_gan_updates_the_ema_every_generator_step():
    generator, discriminator = smoke_generator(), smoke_discriminator()
    opt_g = torch.optim.Adam(generator.parameters(), lr=1e-3)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=1e-3)
    ema = solver.GeneratorEMA(generator, decay=0.0)   # decay 0: the EMA is the last weights
    m = solver.train_epoch_gan(solver.Trainee(generator, opt_g),
                               solver.Trainee(discriminator, opt_d), [smooth_batch(14)] * 2,
                               losses.PixelLoss(),
                               solver.EpochPlan("cpu", lr_fn=lambda p: 0.001, progress=False),
                               solver.GANSettings(d_lr_scale=0.5), ema=ema)
    assert m["steps"] == 2
    assert opt_d.param_groups[0]["lr"] == pytest.approx(0.5e-3)
    for k, v in generator.state_dict().items():
        assert torch.equal(ema.model.state_dict()[k], v), k


def test_lr_consistency_loss_sees_colour_shifts_more_than_fine_texture():
    from imresize import imresize_torch
    lr, hr = smooth_batch(15)
    loss = losses.LRConsistencyLoss(SCALE)
    shifted = hr + 0.05                               # a colour cast: fully visible at LR size
    assert loss(shifted, hr).item() == pytest.approx(0.05, rel=1e-4)
    # a +-0.05 pattern of period 2 (texture) mostly vanishes in the bicubic shrink
    yy, xx = torch.meshgrid(torch.arange(hr.shape[2]), torch.arange(hr.shape[3]), indexing="ij")
    texture = hr + 0.05 * (-1.0) ** (yy + xx)
    assert loss(texture, hr).item() < 0.2 * losses.pixel_loss(texture, hr, "l1").item()
    want = losses.pixel_loss(imresize_torch(texture, 1 / SCALE), imresize_torch(hr, 1 / SCALE), "l1")
    assert loss(texture, hr).item() == pytest.approx(want.item(), rel=1e-6)
    sr = hr.clone().requires_grad_(True)
    loss(sr + 0.01, hr).backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0


def test_color_matrices_are_made_once_per_device_and_dtype(monkeypatch):
    # SRCNN/VDSR's Y loss converts colours several times per step: no host->device copy each time
    utils._COLOR_MATRICES.clear()
    made = []
    real = torch.as_tensor
    monkeypatch.setattr(torch, "as_tensor", lambda *a, **k: made.append(a[0].shape) or real(*a, **k))
    _, hr = smooth_batch(3)
    sr = (hr * 0.9).detach()
    with torch.inference_mode():            # first made in inference mode (validation) ...
        utils.rgb2ycbcr_torch(hr)
    sr.requires_grad_(True)
    for _ in range(3):                      # ... then used for training: still differentiable
        losses.pixel_loss(sr, hr, y_only=True).backward()
    assert sr.grad is not None and torch.isfinite(sr.grad).all()
    assert len(made) == 2                   # the matrix and the offset, once
    utils.rgb2ycbcr_torch(hr.double())
    assert len(made) == 4                   # another dtype: its own copies


def test_ranks_agree_on_a_non_finite_loss_and_the_budget_at_reads_only(monkeypatch):
    reduced = []
    monkeypatch.setattr(solver, "is_distributed", lambda: True)
    monkeypatch.setattr(solver, "rank", lambda: 0)
    monkeypatch.setattr(solver, "all_reduce_max", lambda v: reduced.append(v) or 1.0)
    monkeypatch.setattr(run_clock, "is_distributed", lambda: True)
    monkeypatch.setattr(run_clock, "all_reduce_max", lambda v: reduced.append(v) or 1.0)
    watch = solver.LossWatch()                      # finite here; another rank saw a NaN
    watch.add("content_loss", torch.tensor(0.5), check=True)
    with pytest.raises(FloatingPointError, match=r"on another rank \(this is rank 0\) in stage "
                                                 r"'srresnet', epoch 4"):
        watch.read(where=("srresnet", 4), checked_at=9)
    assert reduced == [0.0]
    reduced.clear()
    clock = run_clock.RunClock(100, time_budget_s=3600, share_every=5).start()
    for _ in range(12):
        clock.tick()
    assert len(reduced) == 3                        # at start, after ticks 5 and 10
