"""Tests of checkpoint.py: loading a generator from a checkpoint (round trip, wrapper prefixes,
the EMA weights, every kind of bad file named in one line) and refusing non-finite weights."""
import pytest
import torch
from torch import nn

import checkpoint
import models
import pretrained


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
