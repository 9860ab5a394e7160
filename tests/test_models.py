"""Tests of models.py: architectures (parameter counts, shapes, options), the truncated VGG19's
layout and building a generator by name."""
import pytest
import torch
from torch import nn

import models
from imresize import imresize_torch
from utils import rgb2ycbcr_torch


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
