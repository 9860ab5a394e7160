"""export.py: generator-only files from training checkpoints, and the shipped reference models."""
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import checkpoint
import export
import models
import super_resolve
import tiling
from config import REFERENCE_WEIGHTS, ROOT


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A stage-2-like checkpoint with an EMA that differs from the raw weights."""
    out = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    g = models.SRResNet(4, n_blocks=2, n_channels=16, batch_norm=False, upsample="nearest",
                        bicubic_skip=True)
    ema = models.SRResNet(4, n_blocks=2, n_channels=16, batch_norm=False, upsample="nearest",
                          bicubic_skip=True)
    ckpt = checkpoint.make_checkpoint(stage="srgan", arch="srresnet",
                                  arch_kwargs={"n_blocks": 2, "n_channels": 16, "batch_norm": False,
                                               "upsample": "nearest", "bicubic_skip": True},
                                  scale=4, generator=g, epoch=1, step=10, config={}, history=[],
                                  discriminator=models.Discriminator(n_channels=8, fc_size=16))
    ckpt["generator_ema"] = ema.state_dict()
    path = out / "srgan.pth"
    checkpoint.save_checkpoint(path, ckpt)
    return path, ema


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_export_matches_the_source_generator(trained, tmp_path, dtype):
    src, ema = trained
    dst = tmp_path / "g.pth"
    export.main([str(src), str(dst), "--dtype", dtype])
    raw = torch.load(dst, weights_only=True)               # no code execution needed
    assert not any(k in raw for k in ("optimizer_g", "optimizer_d", "rng", "discriminator"))
    assert all(v.dtype == getattr(torch, dtype) for v in raw["generator"].values()
               if v.is_floating_point())
    exported, _ = checkpoint.load_generator(dst)
    source, _ = checkpoint.load_generator(src)                 # the EMA weights (what is used)
    x = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b, e = exported(x), source(x), ema.eval()(x)
    assert torch.equal(b, e)                               # the source's used weights = EMA
    tol = 0 if dtype == "float32" else 2e-3                # fp16 rounding of the weights
    assert (a - b).abs().max().item() <= tol
    assert dst.stat().st_size < src.stat().st_size


def test_export_refuses_to_replace_its_source(trained, capsys):
    src, _ = trained
    before = src.read_bytes()
    import cli
    assert cli.run("export.py", export.main, [str(src), str(src)]) != 0
    assert "replace" in capsys.readouterr().err
    assert src.read_bytes() == before


def _readme_table():
    text = (ROOT / "weights" / "README.md").read_text()
    return dict(re.findall(r"`(srgan|srresnet)\.pth`[^\n]*sha256 `([0-9a-f]{64})`", text))


def test_reference_weights_are_small_and_match_their_readme():
    files = [Path(p) for p in REFERENCE_WEIGHTS.values()]
    assert all(f.is_file() for f in files)
    assert sum(f.stat().st_size for f in files) <= 10e6
    sums = _readme_table()
    assert set(sums) == {"srresnet", "srgan"}
    for f in files:
        assert f.stat().st_size <= 5e6
        assert hashlib.sha256(f.read_bytes()).hexdigest() == sums[f.stem]
        raw = torch.load(f, weights_only=True)
        assert not any(k in raw for k in ("optimizer_g", "optimizer_d", "rng", "discriminator"))


def test_super_resolve_without_checkpoint_uses_the_reference_srgan(tmp_path, capsys):
    from PIL import Image
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    assert super_resolve.main(["--input", str(tmp_path / "in.png"), "--output",
                               str(tmp_path / "out")]) == 0
    assert "weights/srgan.pth" in capsys.readouterr().err.replace("\\", "/")
    out = np.array(Image.open(tmp_path / "out" / "in.png"))
    assert out.shape == (80, 96, 3)
    model, _ = checkpoint.load_generator(REFERENCE_WEIGHTS["SRGAN"])
    direct = tiling.upscale_image(model, np.array(Image.open(tmp_path / "in.png")))
    assert np.abs(direct.astype(int) - out.astype(int)).max() <= 1
