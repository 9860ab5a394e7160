"""Tests of evaluate.py (the benchmark protocol) and tiling.upscale_image."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import checkpoint
import evaluate
import metrics
import models
import pretrained
import tables
import utils
from imresize import imresize
from tiling import upscale_image

ROOT = Path(evaluate.__file__).resolve().parent
SCALE = 4

# Published x4 bicubic scores (PSNR dB, SSIM) of ../shared/data/README.md (EDSR/RCAN tables)
# and the tolerances of the task: 0.02 dB and 0.0015 SSIM.
PUBLISHED_BICUBIC = {"Set5": (28.42, 0.8104), "Set14": (26.00, 0.7027)}
PSNR_TOL, SSIM_TOL = 0.02, 0.0015


def _smooth_image(rng, h, w, channels=3):
    """A smooth random uint8 image (so that bicubic upscaling is meaningfully better than noise)."""
    small = rng.integers(0, 256, (h // 8 + 2, w // 8 + 2, channels), dtype=np.uint8)
    big = imresize(small.astype(np.float64), output_shape=(h, w))
    img = np.clip(np.round(big), 0, 255).astype(np.uint8)
    return img[:, :, 0] if channels == 1 else img


def _make_set(root, name, sizes, rng, with_lr=True, gray=()):
    """Write a tiny EDSR-layout test set ``root/name/{HR, LR_bicubic/X4}``."""
    hr_dir = root / name / "HR"
    lr_dir = root / name / "LR_bicubic" / f"X{SCALE}"
    for i, (h, w) in enumerate(sizes):
        hr = _smooth_image(rng, h, w, 1 if i in gray else 3)
        utils.save_image(hr_dir / f"img{i}.png", hr)
        if with_lr:
            utils.save_image(lr_dir / f"img{i}x{SCALE}.png",
                             imresize(utils.modcrop(hr, SCALE), 1 / SCALE))
    return hr_dir, lr_dir


@pytest.fixture
def fake_root(tmp_path):
    rng = np.random.default_rng(7)
    _make_set(tmp_path, "Fake", [(64, 72), (50, 61), (48, 48)], rng, gray=(2,))
    return tmp_path


# ------------------------------------------------------------------------------------------
# The published bicubic numbers (needs ../shared/data)
# ------------------------------------------------------------------------------------------

def test_bicubic_reproduces_published_numbers(shared_data):
    results = evaluate.evaluate("bicubic", shared_data / "benchmark", ["Set5", "Set14"],
                                scale=SCALE, progress=False)
    assert list(results) == ["Set5", "Set14"]
    assert results["Set5"]["images"] == 5 and results["Set14"]["images"] == 14
    for name, (p, s) in PUBLISHED_BICUBIC.items():
        assert abs(results[name]["psnr"] - p) <= PSNR_TOL, (name, results[name])
        assert abs(results[name]["ssim"] - s) <= SSIM_TOL, (name, results[name])


def test_lr_made_from_hr_gives_the_same_numbers(shared_data, tmp_path):
    # Set5 without its LR folder: LR = imresize(modcrop(HR, 4), 1/4), bit-identical to the files
    shutil.copytree(shared_data / "benchmark" / "Set5" / "HR", tmp_path / "Set5" / "HR")
    with_files = evaluate.evaluate("bicubic", shared_data / "benchmark", "Set5", progress=False,
                                   per_image=True)
    made = evaluate.evaluate("bicubic", tmp_path, "Set5", progress=False, per_image=True)
    assert made == with_files
    assert len(made["Set5"]["per_image"]) == 5


# ------------------------------------------------------------------------------------------
# evaluate() on tiny fake sets
# ------------------------------------------------------------------------------------------

def test_per_image_scores_are_the_protocol(fake_root):
    res = evaluate.evaluate("bicubic", fake_root, ["Fake"], progress=False, per_image=True)["Fake"]
    assert res["images"] == 3
    names = [r["name"] for r in res["per_image"]]
    assert names == ["img0", "img1", "img2"]
    for r in res["per_image"]:
        hr = utils.modcrop(utils.load_image(fake_root / "Fake" / "HR" / f"{r['name']}.png"), SCALE)
        lr = utils.load_image(fake_root / "Fake" / "LR_bicubic" / "X4" / f"{r['name']}x4.png")
        sr = imresize(lr, SCALE)
        assert r["psnr"] == metrics.psnr(sr, hr, SCALE) and r["ssim"] == metrics.ssim(sr, hr, SCALE)
    assert res["psnr"] == pytest.approx(np.mean([r["psnr"] for r in res["per_image"]]))
    assert res["ssim"] == pytest.approx(np.mean([r["ssim"] for r in res["per_image"]]))
    assert 15 < res["psnr"] < 60 and 0 < res["ssim"] < 1


def test_missing_set_and_empty_folder(fake_root):
    with pytest.raises(FileNotFoundError) as info:
        evaluate.evaluate("bicubic", fake_root, ["Nope"], progress=False)
    assert str(fake_root / "Nope" / "HR") in str(info.value)

    (fake_root / "Empty" / "HR").mkdir(parents=True)
    with pytest.raises(ValueError) as info:
        evaluate.evaluate("bicubic", fake_root, ["Empty"], progress=False)
    assert str(fake_root / "Empty" / "HR") in str(info.value)


def test_lr_hr_size_mismatch(fake_root):
    lr_path = fake_root / "Fake" / "LR_bicubic" / "X4" / "img1x4.png"
    utils.save_image(lr_path, np.zeros((10, 10, 3), np.uint8))  # should be 12x15
    with pytest.raises(ValueError) as info:
        evaluate.evaluate("bicubic", fake_root, ["Fake"], progress=False)
    assert "img1x4.png" in str(info.value)


class _NearestX4(nn.Module):
    """A parameter-light stand-in generator: nearest-neighbour x4 plus a learnable offset."""

    scale = SCALE

    def __init__(self):
        super().__init__()
        self.offset = nn.Parameter(torch.zeros(()))
        self.seen_training = []
        self.seen_grad = []

    def forward(self, x):
        self.seen_training.append(self.training)
        self.seen_grad.append(torch.is_grad_enabled())
        return nn.functional.interpolate(x, scale_factor=SCALE, mode="nearest") + self.offset


def test_module_and_checkpoint_methods(fake_root, tmp_path):
    net = _NearestX4()
    res = evaluate.evaluate(net, fake_root, ["Fake"], progress=False, per_image=True)["Fake"]
    hr = utils.modcrop(utils.load_image(fake_root / "Fake" / "HR" / "img0.png"), SCALE)
    lr = utils.load_image(fake_root / "Fake" / "LR_bicubic" / "X4" / "img0x4.png")
    sr = np.repeat(np.repeat(lr, SCALE, 0), SCALE, 1)
    assert res["per_image"][0]["psnr"] == pytest.approx(metrics.psnr(sr, hr, SCALE), abs=1e-12)
    bic = evaluate.evaluate("bicubic", fake_root, ["Fake"], progress=False)["Fake"]
    assert res["psnr"] < bic["psnr"]

    with pytest.raises(ValueError, match="x2"):
        evaluate.load_method(net, scale=2)

    # a checkpoint file in the project's format, loaded through checkpoint.load_generator
    gen = models.build_generator("srresnet", scale=SCALE, n_blocks=1, n_channels=8)
    ckpt = {"format": checkpoint.CHECKPOINT_FORMAT, "arch": "srresnet",
            "arch_kwargs": {"n_blocks": 1, "n_channels": 8}, "scale": SCALE,
            "generator": gen.state_dict()}
    torch.save(ckpt, tmp_path / "tiny.pth")
    method = evaluate.load_method(str(tmp_path / "tiny.pth"))
    assert method.name == "tiny" and method.model is not None
    out = method(lr)
    assert out.shape == (lr.shape[0] * SCALE, lr.shape[1] * SCALE, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, upscale_image(gen.eval(), lr))

    with pytest.raises(FileNotFoundError, match="nope.pth"):
        evaluate.load_method(str(tmp_path / "nope.pth"))
    with pytest.raises(TypeError):
        evaluate.load_method(3.5)


def test_format_table(fake_root):
    res = evaluate.evaluate("bicubic", fake_root, ["Fake"], progress=False)
    table = evaluate.format_table(res, title="bicubic")
    lines = table.splitlines()
    assert lines[0].startswith("| Set |") and len(lines) == 3
    assert f"{res['Fake']['psnr']:.2f}" in lines[2] and f"{res['Fake']['ssim']:.4f}" in lines[2]


# ------------------------------------------------------------------------------------------
# The command line
# ------------------------------------------------------------------------------------------

def _cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "evaluate.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_cli_writes_json_and_fails_cleanly(fake_root, tmp_path):
    out = tmp_path / "out" / "results.json"
    proc = _cli("--model", "bicubic", "--data-root", fake_root, "--sets", "Fake", "--quiet",
                "--json", out)
    assert proc.returncode == 0, proc.stderr
    assert "| Fake | 3 |" in proc.stdout
    payload = json.loads(out.read_text())
    expected = evaluate.evaluate("bicubic", fake_root, ["Fake"], progress=False)
    assert payload["results"] == expected
    assert payload["model"] == "bicubic" and payload["scale"] == SCALE
    assert sorted(p.name for p in out.parent.iterdir()) == ["results.json"]  # no temp file

    proc = _cli("--model", "bicubic", "--data-root", fake_root, "--sets", "Fake", "Missing",
                "--quiet")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert str(fake_root / "Missing" / "HR") in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------
# tiling.upscale_image
# ------------------------------------------------------------------------------------------

class _ChannelMix(nn.Module):
    """x4 nearest upsampling that makes the three channels differ (R, G, B scaled apart)."""

    scale = SCALE

    def forward(self, x):
        w = torch.tensor([1.0, 0.8, 0.6]).view(1, 3, 1, 1)
        return nn.functional.interpolate(x * w, scale_factor=SCALE, mode="nearest")


def test_upscale_image_colour_and_gray():
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    net = _NearestX4().train()
    out = upscale_image(net, rgb)
    assert out.dtype == np.uint8 and out.shape == (24, 20, 3)
    np.testing.assert_array_equal(out, np.repeat(np.repeat(rgb, SCALE, 0), SCALE, 1))
    # eval + inference mode, also for the probe of the receptive field (a 6x5 image is padded)
    assert net.seen_training and set(net.seen_training) == {False}
    assert set(net.seen_grad) == {False}
    assert net.training  # mode restored

    gray = rgb[:, :, 0]
    out = upscale_image(_ChannelMix(), gray)
    assert out.shape == (24, 20)
    # the model saw RGB = (g, g, g); its RGB output is turned into one channel like PIL's 'L'
    rgb_out = upscale_image(_ChannelMix(), np.repeat(gray[:, :, None], 3, 2))
    np.testing.assert_array_equal(out, np.asarray(Image.fromarray(rgb_out).convert("L")))
    assert not np.array_equal(out, rgb_out[:, :, 0])


def test_upscale_image_errors():
    img = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(TypeError, match="uint8"):
        upscale_image(_NearestX4(), img.astype(np.float32))
    with pytest.raises(ValueError, match="tile"):
        upscale_image(_NearestX4(), img, tile=0)

    class Wrong(_NearestX4):
        scale = 2
    with pytest.raises(ValueError, match="output"):
        upscale_image(Wrong(), img)


# ------------------------------------------------------------------------------------------
# All the metrics: LR-PSNR, PSNR-RGB, NIQE, LPIPS; availability; bad input
# ------------------------------------------------------------------------------------------

NIQE_OK = (104, 200)  # an HR size NIQE can score after the 4 px crop (two 96x96 blocks)


@pytest.fixture
def mixed_root(tmp_path):
    """A set of two colour images large enough for NIQE, one gray one, one too small."""
    rng = np.random.default_rng(11)
    h, w = NIQE_OK
    _make_set(tmp_path, "Mixed", [(h, w), (w + 4, h), (h, w), (48, 64)], rng, gray=(2,))
    return tmp_path


@pytest.fixture
def lpips_alex(fake_lpips_weights):
    return metrics.LPIPS("alex", *fake_lpips_weights("alex"))


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty torch.hub cache and unreachable LPIPS URLs: LPIPS weights cannot be had."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    for urls in (pretrained.LPIPS_BACKBONE_URLS, pretrained.LPIPS_LINEAR_URLS):
        for net in pretrained.LPIPS_NETS:
            monkeypatch.setitem(urls, net, f"http://127.0.0.1:9/{net}.pth")   # nothing listens
    monkeypatch.setattr(evaluate, "_LPIPS_LOADED", {})


def test_every_metric_per_image(mixed_root, lpips_alex):
    res = evaluate.evaluate("bicubic", mixed_root, ["Mixed"], progress=False, per_image=True,
                            lpips_model=lpips_alex)["Mixed"]
    assert list(res)[:7] == list(metrics.METRICS) + ["images"]
    assert res["images"] == 4 and "unavailable" not in res
    for r in res["per_image"]:
        hr = utils.modcrop(utils.load_image(mixed_root / "Mixed" / "HR" / f"{r['name']}.png"),
                           SCALE)
        lr = utils.load_image(mixed_root / "Mixed" / "LR_bicubic" / "X4" / f"{r['name']}x4.png")
        sr = imresize(lr, SCALE)
        assert r["psnr"] == metrics.psnr(sr, hr, SCALE)
        assert r["psnr_rgb"] == metrics.psnr_rgb(sr, hr, SCALE)
        assert r["lr_psnr"] == metrics.lr_psnr(sr, lr, SCALE)           # whole image
        assert r["lpips"] == metrics.lpips_score(lpips_alex, sr, hr, shave=SCALE)
        if r["name"] != "img3":
            assert r["niqe"] == metrics.niqe(sr, crop_border=evaluate.niqe_crop_border(SCALE))
        else:
            assert r["niqe"] is None
            with pytest.raises(ValueError):
                metrics.niqe(sr, crop_border=evaluate.niqe_crop_border(SCALE))
    # the small image is skipped by NIQE (named, with the reason) and left out of its mean
    assert list(res["skipped"]) == ["niqe"] and list(res["skipped"]["niqe"]) == ["img3"]
    assert res["niqe"] == pytest.approx(np.mean([r["niqe"] for r in res["per_image"][:3]]))
    for m in ("psnr", "psnr_rgb", "lr_psnr", "lpips"):
        assert res[m] == pytest.approx(np.mean([r[m] for r in res["per_image"]]))
    assert 20 < res["lr_psnr"] < 60 and res["lpips"] > 0
    notes = evaluate.result_notes({"Mixed": res})
    assert notes == [f"NIQE on Mixed: 1 image(s) left out of the mean: "
                     f"img3 ({res['skipped']['niqe']['img3']})"]


def test_metric_selection_and_availability(mixed_root, fake_root, offline_hub):
    res = evaluate.evaluate("bicubic", mixed_root, ["Mixed"], progress=False,
                            metrics=["lr_psnr", "psnr"])["Mixed"]
    assert list(res) == ["psnr", "lr_psnr", "images"]               # METRICS order
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate.evaluate("bicubic", mixed_root, ["Mixed"], progress=False, metrics=["fid"])
    # LPIPS named but its weights cannot be had: the clear error
    with pytest.raises(RuntimeError, match="lpips-weights"):
        evaluate.evaluate("bicubic", mixed_root, ["Mixed"], progress=False, metrics=["lpips"])
    # default (None): everything that can run; LPIPS listed as unavailable with the reason
    res = evaluate.evaluate("bicubic", mixed_root, ["Mixed"], progress=False)["Mixed"]
    assert "lpips" not in res and "niqe" in res
    assert "127.0.0.1:9" in res["unavailable"]["lpips"]
    # a set where no image is large enough for NIQE: NIQE unavailable there, with the reason
    res = evaluate.evaluate("bicubic", fake_root, ["Fake"], progress=False)["Fake"]
    assert "niqe" not in res and "no image of Fake" in res["unavailable"]["niqe"]
    assert sorted(res["skipped"]["niqe"]) == ["img0", "img1", "img2"]
    table = evaluate.format_table({"Fake": res}, title="")
    assert "NIQE" not in table and "LR-PSNR (dB) ↑" in table


def test_lpips_through_the_hub_cache(mixed_root, lpips_torch_home, lpips_alex, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(lpips_torch_home))
    monkeypatch.setattr(evaluate, "_LPIPS_LOADED", {})
    res = evaluate.evaluate("bicubic", mixed_root, ["Mixed"], progress=False,
                            metrics=["lpips"])["Mixed"]
    want = evaluate.evaluate("bicubic", mixed_root, ["Mixed"], progress=False,
                             metrics=["lpips"], lpips_model=lpips_alex)["Mixed"]
    assert res == want and res["lpips"] > 0


def test_table_shows_the_better_direction():
    results = {"S": {"psnr": 30.0, "ssim": 0.9, "niqe": 5.1234, "lpips": 0.25, "images": 2},
               "T": {"psnr": float("inf"), "ssim": 1.0, "images": 1}}
    lines = evaluate.format_table(results, title="m").splitlines()
    assert lines[0] == "| Set | Images | m PSNR (dB) ↑ | m SSIM ↑ | m NIQE ↓ | m LPIPS ↓ |"
    assert lines[2] == "| S | 2 | 30.00 | 0.9000 | 5.123 | 0.2500 |"
    assert lines[3] == f"| T | 1 | inf | 1.0000 | {tables.NO_VALUE} | {tables.NO_VALUE} |"


class _Recorder(_NearestX4):
    calls = 0

    def forward(self, x):
        type(self).calls += 1
        return super().forward(x)


def test_every_set_is_checked_before_any_work(fake_root):
    net = _Recorder()
    with pytest.raises(FileNotFoundError) as info:
        evaluate.evaluate(net, fake_root, ["Fake", "Nope", "Gone"], progress=False)
    msg = str(info.value)
    assert "2 of 3 test sets not found" in msg and len(msg.splitlines()) == 1
    assert str(fake_root / "Nope" / "HR") in msg and str(fake_root / "Gone" / "HR") in msg
    assert _Recorder.calls == 0


def _break_set(root, name):
    """A second set whose first HR file is corrupt."""
    shutil.copytree(root / "Fake", root / name)
    (root / name / "HR" / "img0.png").write_bytes(b"not a png")


def test_a_failing_set_keeps_the_finished_ones(fake_root):
    _break_set(fake_root, "Broken")
    with pytest.raises(ValueError, match="img0.png") as info:
        evaluate.evaluate("bicubic", fake_root, ["Fake", "Broken", "Fake"], progress=False,
                          metrics=["psnr"])
    assert info.value.failed_set == "Broken"
    assert list(info.value.partial_results) == ["Fake"]
    assert info.value.partial_results["Fake"]["images"] == 3


def test_cli_metrics_lpips_files_and_partial_failure(fake_root, mixed_root, tmp_path,
                                                      fake_lpips_weights):
    # mixed_root and fake_root are the same tmp_path: both sets are there
    _break_set(fake_root, "Broken")
    backbone, linear = fake_lpips_weights("alex")
    out = tmp_path / "r.json"
    proc = _cli("--data-root", fake_root, "--sets", "Mixed", "Broken", "Fake", "--quiet",
                "--metrics", "psnr", "lr_psnr", "niqe", "lpips", "--lpips-backbone", backbone,
                "--lpips-weights", linear, "--per-image", "--json", out)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "test set Broken not scored" in proc.stderr and "img0.png" in proc.stderr
    # the sets before and after the failing one are scored, shown and written
    assert "PSNR (dB) ↑" in proc.stdout and "LR-PSNR (dB) ↑" in proc.stdout
    assert "NIQE ↓" in proc.stdout and "LPIPS ↓" in proc.stdout
    assert "| Mixed | 4 |" in proc.stdout and "| Fake | 3 |" in proc.stdout
    payload = json.loads(out.read_text())
    assert list(payload["results"]) == ["Mixed", "Fake"] and list(payload["failed"]) == ["Broken"]
    assert payload["metrics"] == ["psnr", "lr_psnr", "niqe", "lpips"]
    mixed = payload["results"]["Mixed"]
    assert list(mixed["per_image"][0]) == ["name", "psnr", "lr_psnr", "niqe", "lpips"]
    model = metrics.LPIPS("alex", backbone, linear)
    want = evaluate.evaluate("bicubic", fake_root, ["Mixed"], progress=False, per_image=True,
                             metrics=payload["metrics"], lpips_model=model)["Mixed"]
    assert mixed == want

    # a bad LPIPS file given by path is an error even with the default metrics
    proc = _cli("--data-root", fake_root, "--sets", "Fake", "--quiet",
                "--lpips-weights", tmp_path / "nope.pth")
    assert proc.returncode == 1 and "nope.pth" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_models_are_tiled_on_cuda_and_whole_on_the_cpu(monkeypatch):
    """evaluate (like validation) runs CUDA models in tiles: a 2K image whole needs GB."""
    seen = []
    monkeypatch.setattr(evaluate, "upscale_image", lambda model, lr, device, tile: seen.append(tile))
    lr = np.zeros((8, 8, 3), np.uint8)
    evaluate.SRMethod("m", 4, model=torch.nn.Identity(), device="cpu")(lr)
    evaluate.SRMethod("m", 4, model=torch.nn.Identity(), device="cuda")(lr)
    assert seen == [None, evaluate.VALIDATION_TILE]
