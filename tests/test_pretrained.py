"""Tests of pretrained.py: the ImageNet VGG19 of the content loss from the shared slice, a full
state dict, the torch.hub cache and a download (file:// URL), and its bad files; the frozen
network passes gradients to its input and stays in eval mode."""
import pytest
import torch
from torch import nn

import models
import pretrained

VGG_SLICE = "vgg/vgg19_features_conv1_1-conv3_1.pth"   # relative to the shared data folder


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


