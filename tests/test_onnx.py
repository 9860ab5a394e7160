"""ONNX export (export.py x.onnx, onnx_model.py) and inference with onnxruntime
(super_resolve.py --checkpoint x.onnx, tiling.upscale_image): the same uint8 images as PyTorch
within one gray level, whole and tiled, on any image size."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import checkpoint
import cli
import export
import models
import onnx_model
import super_resolve
import tiling
import utils

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

SET5_LR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmark" / "Set5" \
    / "LR_bicubic" / "X4"

# (label, arch, arch_kwargs): the paper's SRResNet, the demo's, and the exportable baseline
EXPORTABLE = [
    ("paper", "srresnet", {}),
    ("demo", "srresnet", {"n_blocks": 4, "n_channels": 32, "batch_norm": False,
                          "upsample": "nearest", "bicubic_skip": True}),
    ("tconv", "tconv", {"n_channels": 16}),
]


def _checkpoint(tmp_path, arch, kwargs, seed=0):
    """A checkpoint of a randomly initialised generator (BatchNorm running stats moved off
    their init so eval-mode BN is not the identity)."""
    torch.manual_seed(seed)
    g = models.build_generator(arch, scale=4, **kwargs)
    for m in g.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / f"{arch}.pth"
    checkpoint.save_checkpoint(path, checkpoint.make_checkpoint(
        stage="srresnet", arch=arch, arch_kwargs=kwargs, scale=4, generator=g, epoch=1, step=1,
        config={}, history=[]))
    return path


def _test_images():
    """uint8 RGB LR images: Set5's MATLAB-made LR files when ../shared/data is there, else two
    of scikit-image's photos shrunk by the MATLAB-exact imresize (odd sizes included)."""
    if SET5_LR.is_dir():
        return {p.stem: utils.load_image(p) for p in sorted(SET5_LR.glob("*.png"))}
    skimage_data = pytest.importorskip("skimage.data")
    from imresize import imresize
    return {"astronaut": imresize(skimage_data.astronaut()[:401, :399], scale=0.25),
            "coffee": imresize(skimage_data.coffee()[:333, :470], scale=0.25)}


@pytest.fixture(scope="module")
def images():
    return _test_images()


@pytest.mark.parametrize("label,arch,kwargs", EXPORTABLE, ids=[e[0] for e in EXPORTABLE])
def test_onnx_equals_pytorch_within_one_gray_level(tmp_path, images, label, arch, kwargs):
    src = _checkpoint(tmp_path, arch, kwargs)
    dst = tmp_path / "g.onnx"
    assert cli.run("export.py", export.main, [str(src), str(dst)]) == 0
    torch_model, _ = checkpoint.load_generator(src)
    onnx_gen = super_resolve.load_model(dst)
    assert isinstance(onnx_gen, onnx_model.OnnxGenerator)
    assert onnx_gen.scale == 4
    assert onnx_gen.receptive_margin == tiling.receptive_margin(torch_model)
    assert onnx_gen.tile_alignment == tiling.tile_alignment(torch_model)
    for name, img in images.items():
        ref = tiling.upscale_image(torch_model, img)
        whole = tiling.upscale_image(onnx_gen, img)
        tiled = tiling.upscale_image(onnx_gen, img, tile=48)
        assert whole.shape == ref.shape == (4 * img.shape[0], 4 * img.shape[1], 3), name
        for out in (whole, tiled):
            assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1, name


def test_super_resolve_runs_an_onnx_file(tmp_path, images):
    src = _checkpoint(tmp_path, *EXPORTABLE[1][1:])
    onnx_path = tmp_path / "demo.onnx"
    export.export_file(src, onnx_path)
    name, img = next(iter(images.items()))
    lr = tmp_path / "in" / f"{name}.png"
    super_resolve.write_png(lr, img)
    for ckpt, out in ((src, "out_pth"), (onnx_path, "out_onnx")):
        assert super_resolve.main(["--checkpoint", str(ckpt), "--input", str(lr), "--output",
                                   str(tmp_path / out), "--tile", "40", "--quiet"]) == 0
    a = utils.load_image(tmp_path / "out_pth" / f"{name}.png").astype(int)
    b = utils.load_image(tmp_path / "out_onnx" / f"{name}.png").astype(int)
    assert a.shape == b.shape == (4 * img.shape[0], 4 * img.shape[1], 3)
    assert np.abs(a - b).max() <= 1


@pytest.mark.parametrize("arch,kwargs", [("srcnn", {}), ("fsrcnn", {}), ("vdsr", {"n_layers": 3}),
                                         ("tconv", {"bicubic_skip": True})])
def test_size_dependent_models_are_refused_with_one_line(tmp_path, capsys, arch, kwargs):
    src = _checkpoint(tmp_path, arch, kwargs)
    dst = tmp_path / "g.onnx"
    assert cli.run("export.py", export.main, [str(src), str(dst)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "imresize" in err and "Traceback" not in err
    assert not dst.exists() and not list(tmp_path.glob("*.tmp*"))


def test_onnx_wants_float32(tmp_path, capsys):
    src = _checkpoint(tmp_path, *EXPORTABLE[2][1:])
    assert cli.run("export.py", export.main, [str(src), str(tmp_path / "g.onnx"),
                                              "--dtype", "float16"]) == 1
    assert "float32" in capsys.readouterr().err
    assert not (tmp_path / "g.onnx").exists()


def test_a_foreign_or_broken_onnx_file_is_named(tmp_path, capsys):
    bad = tmp_path / "notes.onnx"
    bad.write_bytes(b"not a graph")
    lr = tmp_path / "x.png"
    super_resolve.write_png(lr, np.zeros((12, 12, 3), np.uint8))
    rc = cli.run("super_resolve.py", super_resolve.main,
                 ["--checkpoint", str(bad), "--input", str(lr), "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1 and str(bad) in err


def test_missing_onnxruntime_says_how_to_install(tmp_path, monkeypatch, capsys):
    src = _checkpoint(tmp_path, *EXPORTABLE[2][1:])
    monkeypatch.setitem(sys.modules, "onnxruntime", None)    # import onnxruntime -> ImportError
    assert cli.run("export.py", export.main, [str(src), str(tmp_path / "g.onnx")]) == 1
    err = capsys.readouterr().err
    assert onnx_model.INSTALL_HINT in err and "onnxruntime" in err
    assert not (tmp_path / "g.onnx").exists()
