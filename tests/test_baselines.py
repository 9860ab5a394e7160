"""The baselines of issue 10: TransposedConvSR and FSRCNN against their design / paper, and
each baseline's training recipe (per-layer lr, VDSR's adjustable clipping, presets, data)."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import checkpoint
import config
import create_data_lists
import losses
import models
import run_clock
import solver
import train
from imresize import imresize_torch
from utils import rgb2ycbcr_torch

BASELINES = ("tconv", "srcnn", "fsrcnn", "vdsr")


def weights_of(layers):
    """Number of conv / transposed-conv weights (no biases, no PReLU slopes): the papers' count."""
    return sum(m.weight.numel() for m in layers if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))


def photo_batch(n=4, lr_size=12, scale=4, seed=0):
    """``(lr, hr)``: ``n`` random crops of a scikit-image photo, LR by MATLAB bicubic."""
    from skimage import data
    rng = np.random.default_rng(seed)
    img = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float() / 255
    hr_size = lr_size * scale
    crops = []
    for _ in range(n):
        y, x = rng.integers(0, img.shape[1] - hr_size, size=2)
        crops.append(img[:, y:y + hr_size, x:x + hr_size])
    hr = torch.stack(crops)
    return imresize_torch(hr, scale=1 / scale).clamp(0, 1), hr


# ------------------------------------------------------------------------------- FSRCNN
def test_fsrcnn_layers_and_parameter_count_of_the_paper():
    d, s, m = 56, 12, 4
    model = models.FSRCNN(scale=4)
    convs = [l for l in model.net if isinstance(l, (nn.Conv2d, nn.ConvTranspose2d))]
    assert [tuple(c.weight.shape[-2:]) for c in convs] == [(5, 5), (1, 1)] + [(3, 3)] * m + \
        [(1, 1), (9, 9)]
    assert isinstance(convs[-1], nn.ConvTranspose2d) and convs[-1].stride == (4, 4)
    assert sum(isinstance(l, nn.PReLU) for l in model.net) == m + 3
    assert all(c.padding_mode == "zeros" for c in convs)
    assert all(c.padding_mode == "replicate" for c in models.FSRCNN(padding_mode="replicate").net
               if isinstance(c, nn.Conv2d))
    # the paper's count (Sec. 3.3): 25d + ds + 9ms^2 + sd + 81d = 12,464 at (56, 12, 4)
    paper = 25 * d + d * s + 9 * m * s * s + s * d + 81 * d
    assert paper == 12_464 and weights_of(model.net) == paper
    biases_and_slopes = (d + s + m * s + d + 1) + (d + s + m * s + d)
    assert sum(p.numel() for p in model.parameters()) == paper + biases_and_slopes


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_fsrcnn_sees_the_lr_y_and_outputs_scale_times_it(scale):
    model = models.FSRCNN(scale=scale)
    seen = []
    model.net[0].register_forward_hook(lambda mod, args, out: seen.append(args[0]))
    lr = torch.rand(2, 3, 7, 5)
    sr_y, ycbcr = model.forward_y(lr)
    torch.testing.assert_close(seen[0], rgb2ycbcr_torch(lr)[:, :1])     # the LR Y, no bicubic
    assert sr_y.shape == (2, 1, 7 * scale, 5 * scale)
    torch.testing.assert_close(ycbcr, rgb2ycbcr_torch(imresize_torch(lr, scale=scale)))
    assert model(lr).shape == (2, 3, 7 * scale, 5 * scale)


def test_fsrcnn_deconvolution_is_centred_on_the_lr_pixels():
    # one LR impulse through the deconvolution alone: the response is centred (to half a pixel)
    # where MATLAB's bicubic grid puts that LR pixel, scale*j + (scale-1)/2
    model = models.FSRCNN(scale=4, d=1)
    deconv = model.net[-1]
    with torch.no_grad():
        deconv.weight.fill_(1.0)
        deconv.bias.zero_()
        x = torch.zeros(1, 1, 9, 9)
        x[0, 0, 4, 4] = 1.0
        out = deconv(x)[0, 0]
    rows = torch.nonzero(out.sum(1)).flatten().float()
    assert abs(rows.mean().item() - (4 * 4 + 1.5)) <= 0.5


# ----------------------------------------------------------------------- TransposedConvSR
def test_transposed_conv_network_upsamples_twice_too_far_then_strides_down():
    model = models.TransposedConvSR(scale=4, n_channels=16)
    assert not any(isinstance(m, nn.PixelShuffle) for m in model.modules())
    sizes = {}
    for name in ("encoder", "decoder", "down"):
        getattr(model, name).register_forward_hook(
            lambda mod, args, out, name=name: sizes.__setitem__(name, tuple(out.shape[-2:])))
    out = model(torch.rand(1, 3, 10, 12))
    assert sizes == {"encoder": (5, 6), "decoder": (80, 96), "down": (40, 48)}   # 2x too far
    assert out.shape == (1, 3, 40, 48)
    tconvs = [m for m in model.decoder if isinstance(m, nn.ConvTranspose2d)]
    assert len(tconvs) == 4 and all(t.stride == (2, 2) and t.kernel_size == (4, 4) for t in tconvs)
    assert model.down.stride == (2, 2) and model.last_layer is model.down
    assert model(torch.rand(2, 3, 7, 9)).shape == (2, 3, 28, 36)           # odd sizes
    with pytest.raises(ValueError, match="power of 2"):
        models.TransposedConvSR(scale=3)


def test_transposed_conv_bicubic_skip_option():
    model = models.TransposedConvSR(scale=4, n_channels=8, bicubic_skip=True)
    nn.init.zeros_(model.down.weight)
    nn.init.zeros_(model.down.bias)
    lr = torch.rand(1, 3, 6, 5)
    with torch.no_grad():
        torch.testing.assert_close(model(lr), imresize_torch(lr, scale=4))


# -------------------------------------------------------------------------------- recipes
def test_presets_are_valid_and_cite_their_recipes():
    srcnn, fsrcnn, vdsr = (config.get_config(n) for n in ("srcnn", "fsrcnn", "vdsr"))
    assert (srcnn.stage1.optimizer, srcnn.stage1.lr, srcnn.stage1.last_layer_lr_scale) == \
        ("sgd", 1e-4, 0.1)
    assert srcnn.generator.srcnn.init_std == 1e-3 and srcnn.data.train_list == "T91"
    assert (fsrcnn.stage1.optimizer, fsrcnn.stage1.lr, fsrcnn.stage1.last_layer_lr_scale) == \
        ("sgd", 1e-3, 0.1)
    assert (vdsr.stage1.lr, vdsr.stage1.momentum, vdsr.stage1.weight_decay,
            vdsr.stage1.grad_clip_theta, vdsr.data.train_list) == (0.1, 0.9, 1e-4, 0.01, "T91_BSD200")
    # SRCNN's and VDSR's learning rates are for Caffe's Euclidean loss; FSRCNN's diverged with it
    assert (srcnn.stage1.loss, fsrcnn.stage1.loss, vdsr.stage1.loss) == ("euclidean", "mse",
                                                                         "euclidean")
    # the fast CPU recipe trains on the per-pixel mean
    fast = config.apply_overrides(config.get_config("srcnn"), config.VARIANTS["adam-cosine"])
    assert (fast.stage1.optimizer, fast.stage1.loss) == ("adam", "mse")
    for name in BASELINES:
        cfg = config.validate_config(config.get_config(name))
        assert cfg.generator.arch == name and cfg.train.stages == "srresnet"
        assert config.ARCH_PRESETS[name] == name
    with pytest.raises(ValueError, match=r"stage1.lr_decay_at=\[0.5, 2\].*<= 1"):
        config.validate_config(config.apply_overrides(config.get_config("vdsr"),
                                                      ["stage1.lr_decay_at=[0.5, 2]"]))
    with pytest.raises(ValueError, match="stage1.optimizer='rmsprop'"):
        config.validate_config(config.apply_overrides(config.get_config("vdsr"),
                                                      ["stage1.optimizer=rmsprop"]))


@pytest.mark.parametrize("arch", ["srcnn", "fsrcnn"])
def test_last_layer_learns_ten_times_slower(arch):
    cfg = config.get_config(arch)
    model = train.models.build_generator(arch, **train.generator_kwargs(cfg))
    optimizer = solver.optimizer_of(model, cfg.stage1)
    assert isinstance(optimizer, torch.optim.SGD)
    main, last = optimizer.param_groups
    assert {id(p) for p in last["params"]} == {id(p) for p in model.last_layer.parameters()}
    assert len(main["params"]) + len(last["params"]) == len(list(model.parameters()))
    assert main["lr"] == cfg.stage1.lr and last["lr"] == pytest.approx(cfg.stage1.lr / 10)
    assert main["momentum"] == 0.9
    solver.set_lr(optimizer, 3e-4)                       # a schedule keeps the ratio
    assert main["lr"] == 3e-4 and last["lr"] == pytest.approx(3e-5)


def test_adjustable_clipping_bound_is_theta_over_the_current_lr(monkeypatch):
    seen = []
    real = solver.optimizer_step
    monkeypatch.setattr(solver, "optimizer_step", lambda loss, opt, scaler=None, clip=None,
                        clip_mode="norm": (seen.append((opt.param_groups[0]["lr"], clip,
                                                        clip_mode)),
                                           real(loss, opt, scaler, clip, clip_mode)))
    model = models.VDSR(n_layers=3, n_channels=4)
    optimizer = solver.make_optimizer(model, "sgd", lr=0.1)
    lr_fn = solver.make_lr_fn(0.1, "step", decay_at=[0.5], decay_factor=0.1)
    clock = run_clock.RunClock(total_steps=4)
    solver.train_epoch_mse(solver.Trainee(model, optimizer), [photo_batch(2, 6)] * 4,
                           losses.PixelLoss("mse", True),
                           solver.EpochPlan("cpu", clock=clock, lr_fn=lr_fn, progress=False),
                           clip_theta=0.4, clip_mode="value")
    assert [(round(lr, 6), round(c, 6), m) for lr, c, m in seen] == \
        [(0.1, 4.0, "value")] * 2 + [(0.01, 40.0, "value")] * 2


@pytest.mark.parametrize("mode", ["norm", "value"])
def test_optimizer_step_clips_the_gradients(mode):
    model = nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    loss = 1e3 * model(torch.ones(2, 4)).pow(2).sum()
    before = [p.detach().clone() for p in model.parameters()]
    solver.optimizer_step(loss, optimizer, clip=0.05, clip_mode=mode)
    grads = [p.grad for p in model.parameters()]
    if mode == "norm":
        assert torch.cat([g.flatten() for g in grads]).norm().item() == pytest.approx(0.05, rel=1e-4)
    else:
        assert max(g.abs().max().item() for g in grads) == pytest.approx(0.05)
    steps = [(b - p.detach()) for b, p in zip(before, model.parameters())]   # lr 1: step = grad
    for step, grad in zip(steps, grads):
        torch.testing.assert_close(step, grad)


@pytest.mark.parametrize("arch", BASELINES)
def test_one_step_of_each_papers_recipe_lowers_the_loss(arch):
    cfg = config.get_config(arch)
    torch.manual_seed(cfg.seed)
    model = models.build_generator(arch, scale=cfg.scale, **train.generator_kwargs(cfg))
    optimizer = solver.optimizer_of(model, cfg.stage1)
    loss_fn = losses.PixelLoss(cfg.stage1.loss, model.y_only)
    lr, hr = photo_batch(8, cfg.data.patch_size // cfg.scale)
    before = loss_fn(model(lr), hr).item()
    solver.pixel_step(model, optimizer, lr, hr, loss_fn,
                      clip=solver.adjustable_clip(cfg.stage1.get("grad_clip_theta"), cfg.stage1.lr),
                      clip_mode=cfg.stage1.grad_clip_mode)
    after = loss_fn(model(lr), hr).item()
    assert after < before, (arch, before, after)


# -------------------------------------------------------------------------- data and CLI
def test_classic_training_lists_are_built_from_their_folders(tmp_path):
    rng = np.random.default_rng(0)
    for folder, names in (("T91", ("t1", "t2")), ("BSD200", ("b1",))):
        (tmp_path / "sets" / folder).mkdir(parents=True)
        for name in names:
            Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)).save(
                tmp_path / "sets" / folder / f"{name}.png")
    cfg = config.get_config("vdsr")
    cfg.data.update({"train_sets_root": str(tmp_path / "sets"), "lists_dir": str(tmp_path / "lists")})
    create_data_lists.ensure_data(cfg)
    info, pairs = train.datasets.read_data_list(tmp_path / "lists" / "T91_BSD200.json")
    assert info["name"] == "T91_BSD200" and sorted(hr.name for hr, _ in pairs) == \
        ["b1.png", "t1.png", "t2.png"]
    cfg.data.train_list = "T91"
    create_data_lists.ensure_data(cfg)
    assert (tmp_path / "lists" / "T91.json").is_file()
    cfg.data.update({"train_list": "T91_BSD200", "lists_dir": str(tmp_path / "none"),
                     "train_sets_root": str(tmp_path / "missing")})
    with pytest.raises(FileNotFoundError, match="create_data_lists.py"):
        create_data_lists.ensure_data(cfg)


def test_arch_alone_selects_its_recipe(tmp_path, shared_data, capsys):
    out = tmp_path / "run"
    code = train.main(["--arch", "fsrcnn", "--epochs", "1", "--out", str(out), "--no-progress",
                       "--set", "data.patches_per_image=2", "--set", "data.workers=0",
                       "--set", f"data.lists_dir={tmp_path / 'lists'}",
                       "--set", f"data.cache_dir={tmp_path / 'cache'}",
                       "--set", "train.device=cpu", "--set", "train.eval_sets=['Set5']"])
    text = capsys.readouterr().out
    assert code == 0 and "config 'fsrcnn'" in text and "arch 'fsrcnn'" in text
    model, ckpt = checkpoint.load_generator(out / "fsrcnn.pth")
    assert isinstance(model, models.FSRCNN) and ckpt["arch_kwargs"] == {
        "d": 56, "s": 12, "m": 4, "padding_mode": "replicate"}
    assert "| FSRCNN (fsrcnn) |" in text                         # the final table has its row


def test_srcnn_replicate_padding_keeps_the_border_of_a_flat_image():
    # averaging kernels on a flat image: 'replicate' keeps every pixel, zeros darken the border
    lr = torch.full((1, 3, 8, 8), 0.5)
    outputs = {}
    for mode in models.Y_PADDING_MODES:
        model = models.SRCNN(scale=4, n_channels=(4, 4), padding_mode=mode)
        with torch.no_grad():
            for conv in (m for m in model.net if isinstance(m, nn.Conv2d)):
                conv.weight.fill_(1.0 / conv.weight[0].numel())
                conv.bias.zero_()
            outputs[mode] = model.forward_y(lr)[0]
    flat = rgb2ycbcr_torch(lr)[0, 0, 0, 0].item()
    torch.testing.assert_close(outputs["replicate"], torch.full_like(outputs["replicate"], flat))
    assert outputs["zeros"][..., 0, 0].item() < 0.5 * flat                  # corner pulled down
    with pytest.raises(ValueError, match="padding_mode"):
        models.SRCNN(padding_mode="reflect")


def test_a_finished_baseline_run_extends_with_resume(tmp_path, shared_data):
    # tuple settings (SRCNN's n_channels / kernels) come back from the checkpoint as lists:
    # resuming with the same settings must not call them different
    common = ["--config", "srcnn", "--variant", "adam-cosine", "--no-progress",
              "--set", "data.patches_per_image=2", "--set", "data.workers=0",
              "--set", f"data.lists_dir={tmp_path / 'lists'}", "--set", "data.cache_dir=None",
              "--set", "train.device=cpu", "--set", "train.eval_sets=[]",
              "--out", str(tmp_path / "run")]
    assert train.main(common + ["--epochs", "1"]) == 0
    assert train.main(common + ["--epochs", "2", "--resume"]) == 0
    ckpt = checkpoint.load_checkpoint(tmp_path / "run" / "srcnn.pth")
    assert [row["epoch"] for row in ckpt["history"]] == [1, 2] and ckpt["finished"]
