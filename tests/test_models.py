"""Tests of models.py: architectures (parameter counts, shapes), the truncated VGG19 (weight
loading, errors, gradients, eval mode) and checkpoint loading."""
import pytest
import torch
from torch import nn

import checkpoint
import models
import pretrained
from imresize import imresize_torch
from utils import rgb2ycbcr_torch

VGG_SLICE = "vgg/vgg19_features_conv1_1-conv3_1.pth"   # relative to the shared data folder


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def conv_params(c_in, c_out, k):
    """Weights + biases of a k x k conv."""
    return c_in * c_out * k * k + c_out


# ------------------------------------------------------------------------------------ SRResNet
def test_srresnet_parameter_count():
    # Hand count at B=16, C=64, x4 (PReLU = 1 shared parameter, BN = gamma + beta):
    #   head   9x9 conv 3->64: 3*64*81 + 64 = 15,616; PReLU 1               ->    15,617
    #   block  2 x (3x3 conv 64->64: 36,864 + 64 = 36,928) + 2 BN (128) + 1 -> 74,113
    #          x 16 blocks                                                  -> 1,185,808
    #   conv3x3 64->64 + BN after the blocks: 36,928 + 128                  ->    37,056
    #   2 sub-pixel blocks: 3x3 conv 64->256 (147,456 + 256) + PReLU 1      ->   295,426
    #   tail   9x9 conv 64->3: 64*3*81 + 3                                  ->    15,555
    #   total                                                               -> 1,549,462
    assert n_params(models.SRResNet()) == 1_549_462
    # the same count from the formula, for other sizes (x2: one sub-pixel block)
    b, c = 3, 8
    expected = (conv_params(3, c, 9) + 1 + b * (2 * conv_params(c, c, 3) + 4 * c + 1)
                + conv_params(c, c, 3) + 2 * c + conv_params(c, 4 * c, 3) + 1
                + conv_params(c, 3, 9))
    assert n_params(models.SRResNet(scale=2, n_blocks=b, n_channels=c)) == expected


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_srresnet_output_shape(scale):
    model = models.SRResNet(scale=scale, n_blocks=1, n_channels=8)
    assert model.scale == scale and model.y_only is False
    out = model(torch.rand(2, 3, 7, 5))
    assert out.shape == (2, 3, 7 * scale, 5 * scale) and out.dtype == torch.float32


@pytest.mark.parametrize("scale", [1, 5, 6, 2.5, "4", True])
def test_srresnet_bad_scale(scale):
    with pytest.raises(ValueError, match="scale"):
        models.SRResNet(scale=scale)


def test_srresnet_long_skip_and_unclamped():
    torch.manual_seed(0)
    model = models.SRResNet(n_blocks=2, n_channels=8).eval()
    # output is not clamped: a large tail bias moves it out of [0,1]
    with torch.no_grad():
        model.tail.bias.fill_(2.0)
    assert model(torch.rand(1, 3, 6, 6)).min() > 1.0
    # long skip: with the body's final BN zeroed, the body adds nothing, so the output
    # depends on the input only through head -> upsample -> tail
    with torch.no_grad():
        model.body[-1].weight.zero_()
        model.body[-1].bias.zero_()
    x = torch.rand(1, 3, 6, 6)
    expected = model.tail(model.upsample(model.head(x)))
    torch.testing.assert_close(model(x), expected)


def test_channels_last_matches_contiguous():
    torch.manual_seed(0)
    gen = models.SRResNet(n_blocks=2, n_channels=8).eval()
    disc = models.Discriminator(n_channels=8, fc_size=16).eval()
    x = torch.rand(2, 3, 12, 12)
    hr = torch.rand(2, 3, 48, 48)
    with torch.no_grad():
        ref_g, ref_d = gen(x), disc(hr)
        gen_cl = gen.to(memory_format=torch.channels_last)
        disc_cl = disc.to(memory_format=torch.channels_last)
        out_g = gen_cl(x.contiguous(memory_format=torch.channels_last))
        out_d = disc_cl(hr.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out_g, ref_g, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out_d, ref_d, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------- Discriminator
def test_discriminator_layout_and_shapes():
    disc = models.Discriminator().eval()
    convs = [m for m in disc.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [c.stride[0] for c in convs] == [1, 2, 1, 2, 1, 2, 1, 2]
    assert all(c.kernel_size == (3, 3) for c in convs)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in disc.features)
    assert n_bn == 7                                        # no BN after the first conv
    with torch.no_grad():
        feats = disc.features(torch.rand(1, 3, 96, 96))
        assert feats.shape == (1, 512, 6, 6)                # the paper's 512 x 6 x 6
        torch.testing.assert_close(disc.pool(feats), feats)  # pooling is the identity at 96
        assert disc(torch.rand(2, 3, 96, 96)).shape == (2,)
        assert disc(torch.rand(3, 3, 128, 112)).shape == (3,)
    assert disc.classifier[0].in_features == 512 * 36 and disc.classifier[0].out_features == 1024
    assert disc.classifier[-1].out_features == 1


def test_discriminator_logits_unbounded_and_trainable():
    torch.manual_seed(0)
    disc = models.Discriminator(n_channels=8, fc_size=16)
    with torch.no_grad():
        disc.classifier[-1].bias.fill_(5.0)                 # logits, not probabilities
    hr = torch.rand(4, 3, 48, 48)
    logits = disc(hr)
    assert logits.shape == (4,) and logits.min() > 1.0
    nn.functional.binary_cross_entropy_with_logits(logits, torch.ones(4)).backward()
    assert all(p.grad is not None for p in disc.parameters())


# ------------------------------------------------------------------------------- SRCNN / VDSR
def test_baseline_parameter_counts():
    # SRCNN 9-1-5, 64/32 on Y: (1*64*81 + 64) + (64*32*1 + 32) + (32*1*25 + 1) = 5,248 + 2,080 + 801
    assert n_params(models.SRCNN()) == 8_129
    # VDSR: (1*64*9 + 64) + 18 * (64*64*9 + 64) + (64*1*9 + 1) = 640 + 664,704 + 577
    assert n_params(models.VDSR()) == 665_921
    assert len([m for m in models.VDSR().net if isinstance(m, nn.Conv2d)]) == 20


@pytest.mark.parametrize("arch", ["srcnn", "vdsr"])
def test_baseline_shapes_and_forward_y(arch):
    model = models.build_generator(arch, scale=3)
    assert model.y_only is True and model.scale == 3
    lr = torch.rand(2, 3, 6, 5)
    sr_y, ycbcr = model.forward_y(lr)
    assert sr_y.shape == (2, 1, 18, 15)
    torch.testing.assert_close(ycbcr, rgb2ycbcr_torch(imresize_torch(lr, scale=3)))
    assert model(lr).shape == (2, 3, 18, 15)


def test_vdsr_zero_residual_gives_bicubic():
    model = models.VDSR(scale=4, n_layers=4, n_channels=8)
    with torch.no_grad():
        model.net[-1].weight.zero_()
        model.net[-1].bias.zero_()
    lr = torch.rand(2, 3, 8, 6)
    torch.testing.assert_close(model(lr), imresize_torch(lr, scale=4), rtol=0, atol=1e-5)


def test_srcnn_identity_weights_give_bicubic():
    # weights that pass Y through unchanged (centre taps = 1 on channel 0) -> the bicubic image,
    # which checks the Y / bicubic-CbCr rebuild and the 'same' padding
    model = models.SRCNN(scale=4)
    with torch.no_grad():
        for conv in (m for m in model.net if isinstance(m, nn.Conv2d)):
            conv.weight.zero_()
            conv.bias.zero_()
            k = conv.kernel_size[0] // 2
            conv.weight[0, 0, k, k] = 1.0
    lr = 0.2 + 0.6 * torch.rand(1, 3, 9, 7)     # keeps the bicubic Y positive (ReLU passes it)
    torch.testing.assert_close(model(lr), imresize_torch(lr, scale=4), rtol=0, atol=1e-5)


def test_baseline_init_choices():
    torch.manual_seed(0)
    paper = models.SRCNN(init_std=1e-3)
    assert paper.net[0].weight.std().item() == pytest.approx(1e-3, rel=0.1)
    he = models.SRCNN()
    fan_in = 81                                               # 1 channel x 9 x 9
    assert he.net[0].weight.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.15)
    assert all(c.bias.abs().sum() == 0 for c in he.net if isinstance(c, nn.Conv2d))
    with pytest.raises(ValueError, match="odd kernel"):
        models.SRCNN(kernels=(9, 2, 5))


# ------------------------------------------------------------------------------------ VGG19
def test_vgg_feature_end_indices():
    assert models.vgg19_feature_end(2, 2) == 9
    assert models.vgg19_feature_end(5, 4) == 36
    assert models.vgg19_feature_end(1, 1) == 2
    assert models.vgg19_feature_end(3, 4) == 18
    feats = pretrained.vgg19(5, 4, weights="random").features
    pools = [k for k, m in enumerate(feats) if isinstance(m, nn.MaxPool2d)]
    assert pools == [4, 9, 18, 27] and len(feats) == 36      # pool 36 is cut off
    assert isinstance(feats[-1], nn.ReLU)
    assert not any(m.inplace for m in feats if isinstance(m, nn.ReLU))


@pytest.mark.parametrize("i,j", [(0, 1), (6, 1), (1, 3), (2, 3), (3, 5), (5, 0), (2.0, 2)])
def test_vgg_invalid_depth(i, j):
    with pytest.raises(ValueError, match="invalid VGG19 depth"):
        pretrained.vgg19(i, j, weights="random")


def test_vgg_loads_shared_slice_at_22(shared_data):
    path = shared_data / VGG_SLICE
    vgg = pretrained.vgg19(2, 2, weights=path)
    state = torch.load(path, weights_only=True, map_location="cpu")
    own = vgg.features.state_dict()
    assert sorted(own) == sorted(k for k in state if int(k.split(".")[0]) < 9)
    for key, value in own.items():
        assert torch.equal(value, state[key]), key
    out = vgg(torch.rand(1, 3, 20, 24))
    assert out.shape == (1, 128, 10, 12) and out.min() >= 0


def test_vgg_normalises_inside(shared_data):
    # an image equal to the ImageNet mean normalises to 0, so conv1_1 + ReLU gives relu(bias)
    vgg = pretrained.vgg19(1, 1, weights=shared_data / VGG_SLICE)
    img = torch.tensor(models.IMAGENET_MEAN).reshape(1, 3, 1, 1).expand(1, 3, 5, 5)
    expected = vgg.features[0].bias.clamp(min=0).reshape(1, 64, 1, 1).expand(1, 64, 5, 5)
    torch.testing.assert_close(vgg(img), expected)


def test_vgg_slice_too_shallow_for_54(shared_data):
    path = shared_data / VGG_SLICE
    with pytest.raises(ValueError) as err:
        pretrained.vgg19(5, 4, weights=path)
    msg = str(err.value)
    assert str(path) in msg and "i=5, j=4" in msg and "12.weight" in msg and "34.bias" in msg


def test_vgg_accepts_prefixed_full_state_dict(tmp_path):
    src = pretrained.vgg19(2, 1, weights="random").features.state_dict()
    state = {f"features.{k}": v.clone() for k, v in src.items()}
    state["classifier.0.weight"] = torch.zeros(3, 3)          # ignored
    path = tmp_path / "vgg_prefixed.pth"
    torch.save(state, path)
    vgg = pretrained.vgg19(2, 1, weights=path)
    for key, value in vgg.features.state_dict().items():
        assert torch.equal(value, src[key])


def test_vgg_bad_files(tmp_path):
    src = pretrained.vgg19(1, 2, weights="random").features.state_dict()
    src["2.weight"] = torch.zeros(64, 32, 3, 3)
    bad_shape = tmp_path / "bad_shape.pth"
    torch.save(src, bad_shape)
    with pytest.raises(ValueError, match=r"bad_shape\.pth.*'2\.weight'.*shape"):
        pretrained.vgg19(1, 2, weights=bad_shape)
    not_dict = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], not_dict)
    with pytest.raises(ValueError, match=r"list\.pth.*expected a dict"):
        pretrained.vgg19(1, 1, weights=not_dict)
    text = tmp_path / "text.pth"
    text.write_text("not a torch file")
    with pytest.raises(ValueError, match=r"text\.pth.*not a readable torch file"):
        pretrained.vgg19(1, 1, weights=text)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        pretrained.vgg19(1, 1, weights=tmp_path / "missing.pth")


def test_vgg_default_uses_torch_hub_cache(shared_data, tmp_path, monkeypatch):
    # the official file name in <TORCH_HOME>/hub/checkpoints is used without any download
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    state = torch.load(shared_data / VGG_SLICE, weights_only=True)
    torch.save({f"features.{k}": v for k, v in state.items()}, cache / "vgg19-dcbb9e9d.pth")
    vgg = pretrained.vgg19(2, 2)
    assert torch.equal(vgg.features[7].weight, state["7.weight"])
    with pytest.raises(ValueError, match="vgg19-dcbb9e9d.pth.*i=5, j=4"):
        pretrained.vgg19(5, 4)


def test_vgg_download_through_url(tmp_path, monkeypatch):
    # a file:// URL goes through the real download code of torch.hub into the cache
    src = pretrained.vgg19(1, 2, weights="random").features.state_dict()
    served = tmp_path / "served" / "vgg19-test.pth"
    served.parent.mkdir()
    torch.save(src, served)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(pretrained, "VGG19_URL", served.as_uri())
    vgg = pretrained.vgg19(1, 2)
    assert torch.equal(vgg.features[2].weight, src["2.weight"])
    assert (tmp_path / "home" / "hub" / "checkpoints" / "vgg19-test.pth").is_file()
    # a failed download says what to do
    monkeypatch.setattr(pretrained, "VGG19_URL", (tmp_path / "nowhere" / "vgg19-x.pth").as_uri())
    with pytest.raises(RuntimeError, match="pass its path"):
        pretrained.vgg19(1, 2)


def test_vgg_frozen_but_passes_gradient_to_input():
    torch.manual_seed(0)
    vgg = pretrained.vgg19(2, 2, weights="random")
    assert not any(p.requires_grad for p in vgg.parameters())
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    vgg(x).square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in vgg.parameters())


def test_vgg_stays_in_eval_mode():
    vgg = pretrained.vgg19(1, 1, weights="random")
    parent = nn.ModuleDict({"vgg": vgg, "gen": nn.Conv2d(3, 3, 1)})
    parent.train()
    assert parent["gen"].training
    assert not any(m.training for m in vgg.modules())
    vgg.train(True)
    assert not vgg.training


def test_srresnet_options_without_bn_with_nearest_upsampling_and_bicubic_skip():
    plain = models.SRResNet(4, n_blocks=2, n_channels=8)
    lean = models.SRResNet(4, n_blocks=2, n_channels=8, batch_norm=False, upsample="nearest")
    assert any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in lean.modules())
    assert [type(b).__name__ for b in lean.upsample] == ["ResizeConvBlock"] * 2
    x = torch.rand(2, 3, 5, 7)
    assert lean(x).shape == (2, 3, 20, 28)
    # nearest + conv: a constant input stays constant over every 4x4 output cell (no
    # per-sub-pixel kernels, so no fixed checkerboard); the sub-pixel layer need not
    flat = torch.full((1, 3, 40, 40), 0.5)     # far from the zero-padded borders in the middle
    with torch.no_grad():
        out = lean.eval()(flat)[..., 72:88, 72:88]
    assert torch.allclose(out, out[..., :1, :1].expand_as(out), atol=1e-6)
    with pytest.raises(ValueError, match="upsample"):
        models.SRResNet(4, upsample="bilinear")


def test_bicubic_skip_adds_a_bicubic_upscale():
    torch.manual_seed(0)
    model = models.SRResNet(4, n_blocks=1, n_channels=8, batch_norm=False, bicubic_skip=True)
    nn.init.zeros_(model.tail.weight)
    nn.init.zeros_(model.tail.bias)
    x = torch.rand(1, 3, 6, 5)
    want = nn.functional.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)
    with torch.no_grad():
        torch.testing.assert_close(model(x), want)


# --------------------------------------------------------------------- build / load generator
def test_build_generator():
    assert isinstance(models.build_generator("srresnet", n_blocks=1, n_channels=8),
                      models.SRResNet)
    assert set(models.GENERATORS) == {"srresnet", "tconv", "srcnn", "fsrcnn", "vdsr"}
    with pytest.raises(ValueError, match=r"unknown generator arch 'edsr'.*srcnn.*srresnet.*vdsr"):
        models.build_generator("edsr")
    with pytest.raises(TypeError, match=r"VDSR.*n_blocks.*n_layers"):
        models.build_generator("vdsr", n_blocks=3)


def make_checkpoint(path, arch="srresnet", scale=4, arch_kwargs=None, state=None, **extra):
    """Save a checkpoint in the solver's format; returns the generator that it holds."""
    arch_kwargs = {"n_blocks": 1, "n_channels": 8} if arch_kwargs is None else arch_kwargs
    torch.manual_seed(1)
    model = models.build_generator(arch, scale=scale, **arch_kwargs)
    ckpt = {"format": checkpoint.CHECKPOINT_FORMAT, "arch": arch, "arch_kwargs": arch_kwargs,
            "scale": scale, "stage": "srresnet",
            "generator": model.state_dict() if state is None else state, "epoch": 3, **extra}
    torch.save(ckpt, path)
    return model


@pytest.mark.parametrize("arch_kwargs", [None, {"n_blocks": 1, "n_channels": 8, "batch_norm": False,
                                                 "upsample": "nearest", "bicubic_skip": True}])
def test_load_generator_round_trip(tmp_path, arch_kwargs):
    path = tmp_path / "g.pth"
    model = make_checkpoint(path, arch_kwargs=arch_kwargs).eval()
    loaded, ckpt = checkpoint.load_generator(path, expect_scale=4)
    assert isinstance(loaded, models.SRResNet) and not loaded.training
    assert loaded.bicubic_skip == bool(arch_kwargs)
    assert ckpt["epoch"] == 3 and ckpt["stage"] == "srresnet"
    x = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    path_v = tmp_path / "v.pth"
    make_checkpoint(path_v, arch="vdsr", scale=3, arch_kwargs={"n_layers": 3, "n_channels": 4})
    loaded_v, _ = checkpoint.load_generator(path_v)
    assert isinstance(loaded_v, models.VDSR) and loaded_v.scale == 3


@pytest.mark.parametrize("wrap", ["ddp", "compile", "both"])
def test_load_generator_wrapper_prefixes(tmp_path, wrap):
    torch.manual_seed(2)
    model = models.SRResNet(n_blocks=1, n_channels=8)
    wrapped = {"ddp": lambda m: nn.DataParallel(m),          # 'module.' keys, like DDP
               "compile": torch.compile,                     # '_orig_mod.' keys (lazy: no compile)
               "both": lambda m: torch.compile(nn.DataParallel(m))}[wrap](model)
    state = wrapped.state_dict()
    assert all(k.startswith(("module.", "_orig_mod.")) for k in state)
    path = tmp_path / "wrapped.pth"
    make_checkpoint(path, state=state)
    loaded, _ = checkpoint.load_generator(path)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_load_generator_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        checkpoint.load_generator(tmp_path / "nope.pth")

    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.txt.*not a readable torch file"):
        checkpoint.load_generator(text)

    listed = tmp_path / "list.pth"
    torch.save([1, 2], listed)
    with pytest.raises(ValueError, match=r"list\.pth.*expected a dict.*list"):
        checkpoint.load_generator(listed)

    raw = tmp_path / "raw.pth"
    torch.save(models.SRResNet(n_blocks=1, n_channels=8).state_dict(), raw)
    with pytest.raises(ValueError, match=r"raw\.pth.*missing \['arch', 'scale', 'generator'\]"
                                         r".*raw state_dict"):
        checkpoint.load_generator(raw)

    no_arch = tmp_path / "no_arch.pth"
    torch.save({"generator": {}, "scale": 4}, no_arch)
    with pytest.raises(ValueError, match=r"no_arch\.pth.*missing \['arch'\]"):
        checkpoint.load_generator(no_arch)

    unknown = tmp_path / "unknown.pth"
    make_checkpoint(unknown)
    ckpt = torch.load(unknown, weights_only=True)
    torch.save({**ckpt, "arch": "esrgan"}, unknown)
    with pytest.raises(ValueError, match=r"unknown\.pth.*unknown generator arch 'esrgan'"):
        checkpoint.load_generator(unknown)

    fmt = tmp_path / "fmt.pth"
    torch.save({**ckpt, "format": "other/2"}, fmt)
    with pytest.raises(ValueError, match=r"fmt\.pth.*format 'other/2'"):
        checkpoint.load_generator(fmt)

    good = tmp_path / "good.pth"
    make_checkpoint(good)
    with pytest.raises(ValueError, match=r"good\.pth.*x4.*x2"):
        checkpoint.load_generator(good, expect_scale=2)

    mismatch = tmp_path / "mismatch.pth"
    torch.save({**ckpt, "arch_kwargs": {"n_blocks": 1, "n_channels": 16}}, mismatch)
    with pytest.raises(ValueError, match=r"mismatch\.pth.*do not fit 'srresnet'"):
        checkpoint.load_generator(mismatch)

    wrong_scale = tmp_path / "wrong_scale.pth"
    torch.save({**ckpt, "scale": 2}, wrong_scale)          # x4 weights labelled x2
    with pytest.raises(ValueError, match=r"wrong_scale\.pth.*do not fit"):
        checkpoint.load_generator(wrong_scale)

    bad_kwargs = tmp_path / "bad_kwargs.pth"
    torch.save({**ckpt, "arch_kwargs": {"depth": 3}}, bad_kwargs)
    with pytest.raises(ValueError, match=r"bad_kwargs\.pth.*cannot build"):
        checkpoint.load_generator(bad_kwargs)


def test_load_generator_prefers_the_ema_weights(tmp_path):
    torch.manual_seed(5)
    averaged = models.build_generator("srresnet", n_blocks=1, n_channels=8).eval()
    path = tmp_path / "g.pth"
    raw = make_checkpoint(path, generator_ema=averaged.state_dict()).eval()
    loaded, _ = checkpoint.load_generator(path)
    x = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), averaged(x), rtol=0, atol=0)
        assert not torch.equal(loaded(x), raw(x))


def test_every_weight_file_with_nan_or_inf_is_refused_naming_the_tensor(tmp_path):
    vgg = pretrained.vgg19(2, 2, weights=pretrained.RANDOM_WEIGHTS)
    state = {f"features.{k}": v.clone() for k, v in vgg.features.state_dict().items()}
    state["features.2.weight"][0, 0, 0, 0] = float("inf")
    torch.save(state, tmp_path / "vgg.pth")
    with pytest.raises(ValueError, match=r"vgg.pth: weight tensor '2.weight' holds 1 "
                                         r"non-finite"):
        pretrained.vgg19(2, 2, weights=tmp_path / "vgg.pth")
    with pytest.raises(ValueError, match=r"src: weight tensor 'b' holds 2 non-finite"):
        checkpoint.check_finite_state({"a": torch.ones(2), "n": 3, "i": torch.arange(3),
                                   "b": torch.tensor([1.0, float("nan"), -float("inf")])}, "src")
    checkpoint.check_finite_state({"a": torch.ones(2), "i": torch.arange(3)}, "src")   # finite: fine
