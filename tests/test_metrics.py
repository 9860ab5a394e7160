"""Tests of the metrics: ``metrics.psnr`` and ``metrics.ssim`` on Y (known values, the shave, a
direct SSIM reference, bad input), ``metrics.psnr_rgb``, ``metrics.lr_psnr`` and
``metrics.LPIPS`` (weights from files written here, through a path, a pre-filled torch.hub cache
and a download from an HTTP server on 127.0.0.1; never the real weights, which are not needed)."""
import functools
import hashlib
import math
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import metrics
import pretrained
import utils
from imresize import imresize
from metrics import psnr, ssim

SCALE = 4
RNG_SEED = 0
IMAGE_SIDE = 64          # LPIPS test images (>= both backbones' minimum)
BLUR_SCALE = 4           # the blurred image: down and up x4 with bicubic



@pytest.fixture
def rng():
    return np.random.default_rng(1234)

def _image(rng, h, w, channels=3):
    """A smooth random uint8 image (low-frequency content, like a photo)."""
    small = rng.integers(0, 256, (h // 8 + 2, w // 8 + 2, channels)).astype(np.float64)
    img = np.clip(np.round(imresize(small, output_shape=(h, w))), 0, 255).astype(np.uint8)
    return img[:, :, 0] if channels == 1 else img


# ------------------------------------------------------------------------------------------
# psnr_rgb, lr_psnr
# ------------------------------------------------------------------------------------------

def test_psnr_rgb_is_the_mse_over_every_value():
    rng = np.random.default_rng(RNG_SEED)
    hr = _image(rng, 40, 48)
    sr = np.clip(hr.astype(int) + rng.integers(-9, 10, hr.shape), 0, 255).astype(np.uint8)
    crop = sr[SCALE:-SCALE, SCALE:-SCALE].astype(float) - hr[SCALE:-SCALE, SCALE:-SCALE]
    want = 10 * np.log10(255 ** 2 / np.mean(crop ** 2))
    assert metrics.psnr_rgb(sr, hr, shave=SCALE) == pytest.approx(want, abs=1e-12)
    assert metrics.psnr_rgb(hr, hr, shave=SCALE) == float("inf")
    # a gray image: its one channel, the same as its RGB replication
    g_sr, g_hr = sr[:, :, 1], hr[:, :, 1]
    rep = [np.repeat(x[:, :, None], 3, 2) for x in (g_sr, g_hr)]
    assert metrics.psnr_rgb(g_sr, g_hr, 2) == pytest.approx(metrics.psnr_rgb(*rep, 2), abs=1e-12)
    # differs from the Y-channel PSNR in general
    assert metrics.psnr_rgb(sr, hr, SCALE) != metrics.psnr(sr, hr, SCALE)
    with pytest.raises(ValueError, match="shape"):
        metrics.psnr_rgb(sr, hr[:-1])
    with pytest.raises(TypeError):
        metrics.psnr_rgb(sr.astype(np.float32), hr)


def test_lr_psnr_downscales_the_sr_with_matlab_bicubic():
    rng = np.random.default_rng(RNG_SEED)
    hr = _image(rng, 48, 56)
    lr = imresize(hr, 1 / SCALE)
    sr = imresize(lr, SCALE)
    down = imresize(sr, 1 / SCALE).astype(float)
    want = 10 * np.log10(255 ** 2 / np.mean((down - lr) ** 2))
    assert metrics.lr_psnr(sr, lr, SCALE) == pytest.approx(want, abs=1e-12)
    # the HR image explains its own LR exactly: LR-PSNR is infinite
    assert metrics.lr_psnr(hr, lr, SCALE) == float("inf")
    # gray images
    assert metrics.lr_psnr(hr[:, :, 0].copy(), imresize(hr[:, :, 0].copy(), 1 / SCALE),
                         SCALE) == float("inf")
    # another scale (ceil() rounding of 1/3 must not change the LR size)
    lr3 = imresize(hr[:45], 1 / 3)
    assert np.isfinite(metrics.lr_psnr(imresize(lr3, 3), lr3, 3))
    with pytest.raises(ValueError, match="upscaled x4"):
        metrics.lr_psnr(sr[:-4], lr, SCALE)
    with pytest.raises(ValueError, match="upscaled x4"):
        metrics.lr_psnr(sr, lr[:, :, 0], SCALE)          # colour SR, gray LR
    with pytest.raises(ValueError, match="scale"):
        metrics.lr_psnr(sr, lr, 0)
    with pytest.raises(TypeError):
        metrics.lr_psnr(sr.astype(float), lr, SCALE)


# ------------------------------------------------------------------------------------------
# LPIPS: weight files of the official layout with random values
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def weight_files(fake_lpips_weights):
    """{net: (backbone path, linear path)}: official layouts, random values (conftest.py)."""
    return {net: fake_lpips_weights(net) for net in pretrained.LPIPS_NETS}


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """An empty torch.hub cache: ``TORCH_HOME`` points into tmp_path."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert Path(torch.hub.get_dir()) == tmp_path / "torch" / "hub"
    return Path(torch.hub.get_dir())


def _pair(rng, side=IMAGE_SIDE):
    img = _image(rng, side, side)
    blurred = imresize(imresize(img, 1 / BLUR_SCALE), BLUR_SCALE)
    return img, blurred


@pytest.mark.parametrize("net", pretrained.LPIPS_NETS)
def test_lpips_from_files_is_a_distance(net, weight_files):
    backbone, linear = weight_files[net]
    model = metrics.LPIPS(net, backbone_weights=backbone, linear_weights=linear)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    model.train()
    assert not model.training                               # dropout stays off
    # the keys of the official files, and their values
    keys = set(model.state_dict())
    assert {f"lin{k}.model.1.weight" for k in range(5)} <= keys
    assert "backbone.features.0.weight" in keys
    torch.testing.assert_close(model.lin0.model[1].weight,
                               torch.load(linear)["lin0.model.1.weight"])
    torch.testing.assert_close(model.backbone.features[0].weight,
                               torch.load(backbone)["features.0.weight"])

    rng = np.random.default_rng(RNG_SEED)
    img, blurred = _pair(rng)
    x = utils.image_to_tensor(img)
    y = utils.image_to_tensor(blurred)
    other = utils.image_to_tensor(_image(rng, IMAGE_SIDE, IMAGE_SIDE))
    batch_x, batch_y = torch.cat([x, x]), torch.cat([x, other])
    d = model(batch_x, batch_y)
    assert d.shape == (2,) and d[0] == 0 and d[1] > 0          # d(x, x) = 0
    torch.testing.assert_close(model(batch_y, batch_x), d)      # symmetric
    assert model(x, y)[0] > 0                                   # the blurred image is farther
    # gradients flow to the input (usable as a loss)
    xg = y.clone().requires_grad_(True)
    model(x, xg).sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0

    # the uint8 helper of evaluate.py: same value, gray replicated, shave
    assert metrics.lpips_score(model, img, img) == 0
    assert metrics.lpips_score(model, blurred, img) == pytest.approx(float(model(y, x)), rel=1e-5)
    assert metrics.lpips_score(model, blurred[:, :, 0], img[:, :, 0], shave=SCALE) > 0
    with pytest.raises(ValueError, match="smaller"):
        metrics.lpips_score(model, img[:12, :12], img[:12, :12])
    with pytest.raises(ValueError, match="shape"):
        model(x, y[:, :, :-1])


def test_lpips_min_size_is_what_the_backbones_accept(weight_files):
    for net in pretrained.LPIPS_NETS:
        backbone = metrics._LPIPSBackbone(net)
        side = metrics.LPIPS_MIN_SIZE[net]
        feats = backbone(torch.zeros(1, 3, side, side))
        assert len(feats) == 5 and all(min(f.shape[2:]) >= 1 for f in feats)
        with pytest.raises(RuntimeError):
            backbone(torch.zeros(1, 3, side - 1, side - 1))


def test_lpips_backbone_layout_matches_torchvision():
    alex, vgg = metrics._LPIPSBackbone("alex"), metrics._LPIPSBackbone("vgg")
    assert alex.channels == (64, 192, 384, 256, 256)
    assert vgg.channels == (64, 128, 256, 512, 512)
    # conv indices of torchvision's alexnet().features and vgg16().features
    conv = torch.nn.Conv2d
    assert [i for i, m in enumerate(alex.features) if isinstance(m, conv)] == [0, 3, 6, 8, 10]
    assert [i for i, m in enumerate(vgg.features) if isinstance(m, conv)] == \
        [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    assert alex.taps == (1, 4, 7, 9, 11) and vgg.taps == (3, 8, 15, 22, 29)


def test_lpips_through_a_prefilled_hub_cache(weight_files, hub_dir):
    files = pretrained.lpips_weight_files("alex")
    assert files["backbone"] == hub_dir / "checkpoints" / "alexnet-owt-7be5be79.pth"
    files["backbone"].parent.mkdir(parents=True)
    for path, part in zip(weight_files["alex"], ("backbone", "linear")):
        files[part].write_bytes(path.read_bytes())
    model = metrics.LPIPS("alex")       # no paths: the URL code path finds the cached files
    ref = metrics.LPIPS("alex", *weight_files["alex"])
    x = torch.rand(1, 3, IMAGE_SIDE, IMAGE_SIDE, generator=torch.Generator().manual_seed(1))
    y = x.flip(-1)
    assert float(model(x, y)) == float(ref(x, y)) > 0
    assert "cached as" in model.sources["linear"]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_lpips_downloads_from_the_url(weight_files, hub_dir, tmp_path, monkeypatch):
    """The real download code (torch.hub) against an HTTP server on 127.0.0.1, with the
    sha256-prefix check of the torchvision file names."""
    served = tmp_path / "served"
    served.mkdir()
    backbone, linear = weight_files["vgg"]
    digest = hashlib.sha256(backbone.read_bytes()).hexdigest()
    good_name = f"vgg16-{digest[:8]}.pth"
    (served / good_name).write_bytes(backbone.read_bytes())
    (served / "vgg16-00000000.pth").write_bytes(backbone.read_bytes())   # wrong hash prefix
    (served / "vgg.pth").write_bytes(linear.read_bytes())
    handler = functools.partial(_QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        monkeypatch.setitem(pretrained.LPIPS_BACKBONE_URLS, "vgg", f"{base}/{good_name}")
        monkeypatch.setitem(pretrained.LPIPS_LINEAR_URLS, "vgg", f"{base}/vgg.pth")
        model = metrics.LPIPS("vgg")
        cache = hub_dir / "checkpoints"
        assert sorted(p.name for p in cache.iterdir()) == sorted([good_name,
                                                                   "lpips_v0.1_vgg.pth"])
        x = torch.rand(1, 3, IMAGE_SIDE, IMAGE_SIDE, generator=torch.Generator().manual_seed(2))
        ref = metrics.LPIPS("vgg", backbone, linear)
        assert float(model(x, x.flip(-2))) == float(ref(x, x.flip(-2)))

        # a corrupted download (hash prefix mismatch) is refused with the clear error
        (cache / good_name).unlink()
        monkeypatch.setitem(pretrained.LPIPS_BACKBONE_URLS, "vgg", f"{base}/vgg16-00000000.pth")
        with pytest.raises(RuntimeError, match="vgg16-00000000.pth"):
            metrics.LPIPS("vgg")
        assert not (cache / "vgg16-00000000.pth").exists()
    finally:
        server.shutdown()
        server.server_close()


def test_lpips_missing_weights_give_the_clear_error(hub_dir, weight_files, tmp_path,
                                                     monkeypatch):
    # an unreachable URL (a closed port on 127.0.0.1): the message names the URLs, the cache
    # folder, the file names to use and the arguments / flags that take the files
    closed = "http://127.0.0.1:9"     # the discard port: nothing listens there
    monkeypatch.setitem(pretrained.LPIPS_BACKBONE_URLS, "alex", f"{closed}/alexnet-owt-7be5be79.pth")
    monkeypatch.setitem(pretrained.LPIPS_LINEAR_URLS, "alex", f"{closed}/alex.pth")
    with pytest.raises(RuntimeError) as info:
        metrics.LPIPS("alex")
    msg = str(info.value)
    for part in ("http://127.0.0.1:9/alexnet-owt-7be5be79.pth", "http://127.0.0.1:9/alex.pth",
                 str(hub_dir / "checkpoints"), "lpips_v0.1_alex.pth", "backbone_weights=",
                 "linear_weights=", "--lpips-backbone", "--lpips-weights"):
        assert part in msg, part
    assert len(msg.splitlines()) == 1
    # only the linear file missing: only it is named
    with pytest.raises(RuntimeError) as info:
        metrics.LPIPS("alex", backbone_weights=weight_files["alex"][0])
    assert "alex.pth" in str(info.value) and "--lpips-backbone" not in str(info.value)

    # files given by path: missing / wrong layout -> errors naming the file
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        metrics.LPIPS("alex", tmp_path / "nope.pth", weight_files["alex"][1])
    with pytest.raises(ValueError, match="torchvision alex weights"):
        metrics.LPIPS("alex", *reversed(weight_files["alex"]))      # swapped files
    with pytest.raises(ValueError, match="linear weights"):
        metrics.LPIPS("vgg", weight_files["vgg"][0], weight_files["alex"][1])   # other net
    with pytest.raises(ValueError, match="net must be"):
        metrics.LPIPS("squeeze")
    # a bad file given by path fails before anything is downloaded
    monkeypatch.setattr(pretrained, "_lpips_from_hub", lambda *a: pytest.fail("download tried"))
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        metrics.LPIPS("alex", linear_weights=tmp_path / "nope.pth")


# ------------------------------------------------------------------------------------------
# metrics
# ------------------------------------------------------------------------------------------

def test_identical_images():
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert psnr(img, img.copy(), 4) == math.inf
    assert ssim(img, img.copy(), 4) == pytest.approx(1.0, abs=1e-12)


def test_psnr_known_mse_gray_and_colour(rng):
    hr = rng.integers(10, 240, (20, 24), dtype=np.uint8)
    sr = hr + np.uint8(5)  # every pixel off by 5: MSE 25 on raw gray values
    assert psnr(sr, hr) == pytest.approx(10 * math.log10(255 ** 2 / 25), abs=1e-12)
    assert psnr(sr[:, :, None], hr[:, :, None]) == pytest.approx(psnr(sr, hr), abs=1e-12)
    # the same gray values as an R=G=B colour image: compared on Y, where a step of 5 in
    # R=G=B is a step of 5 * 219/255 in Y
    c_hr, c_sr = np.repeat(hr[:, :, None], 3, 2), np.repeat(sr[:, :, None], 3, 2)
    dy = 5 * (65.481 + 128.553 + 24.966) / 255
    assert psnr(c_sr, c_hr) == pytest.approx(10 * math.log10(255 ** 2 / dy ** 2), abs=1e-9)


def test_psnr_uses_unrounded_y(rng):
    hr = np.zeros((16, 16, 3), np.uint8)
    sr = hr.copy()
    sr[..., 2] = 1  # one blue level: Y changes by 24.966/255 ~ 0.098, which rounding would hide
    assert psnr(sr, hr) == pytest.approx(10 * math.log10(255 ** 2 / (24.966 / 255) ** 2))


def test_shave_removes_exactly_the_border(rng):
    hr = rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)
    for s in (1, 4):
        sr = hr.copy()
        sr[:s] = 255 - sr[:s]          # differences only in an s-pixel frame
        sr[-s:] = 255 - sr[-s:]
        sr[:, :s] = 255 - hr[:, :s]
        sr[:, -s:] = 255 - hr[:, -s:]
        assert psnr(sr, hr, shave=s) == math.inf
        assert ssim(sr, hr, shave=s) == pytest.approx(1.0, abs=1e-12)
        assert psnr(sr, hr, shave=s - 1) < 40
        assert ssim(sr, hr, shave=s - 1) < 1


def _slow_ssim(a, b):
    """Direct SSIM of two float 2-D arrays, one 11x11 window at a time (reference only)."""
    x = np.arange(11) - 5.0
    w = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * 1.5 ** 2))
    w /= w.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vals = []
    for i in range(a.shape[0] - 10):
        for j in range(a.shape[1] - 10):
            pa, pb = a[i:i + 11, j:j + 11], b[i:i + 11, j:j + 11]
            ma, mb = (w * pa).sum(), (w * pb).sum()
            va = (w * (pa - ma) ** 2).sum()
            vb = (w * (pb - mb) ** 2).sum()
            cov = (w * (pa - ma) * (pb - mb)).sum()
            vals.append((2 * ma * mb + c1) * (2 * cov + c2)
                        / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_ssim_matches_direct_reference(rng, monkeypatch):
    hr = rng.integers(0, 256, (22, 25), dtype=np.uint8)
    noise = rng.integers(-30, 31, hr.shape)
    sr = np.clip(hr.astype(int) + noise, 0, 255).astype(np.uint8)
    assert ssim(sr, hr) == pytest.approx(_slow_ssim(sr.astype(float), hr.astype(float)), abs=1e-12)
    slow = _slow_ssim(sr.astype(float), hr.astype(float))
    with monkeypatch.context() as m:
        m.setattr(metrics, "SSIM_STRIP_ROWS", 5)  # 12 map rows: strips of 5, 5 and 2 rows
        assert ssim(sr, hr) == pytest.approx(slow, abs=1e-12)
    assert ssim(sr, hr, shave=2) == pytest.approx(
        _slow_ssim(sr[2:-2, 2:-2].astype(float), hr[2:-2, 2:-2].astype(float)), abs=1e-12)
    # colour: the reference on the float Y channel
    c_hr = rng.integers(0, 256, (23, 21, 3), dtype=np.uint8)
    c_sr = np.clip(c_hr.astype(int) + rng.integers(-20, 21, c_hr.shape), 0, 255).astype(np.uint8)
    y = [16 + im.astype(float) @ np.array([65.481, 128.553, 24.966]) / 255 for im in (c_sr, c_hr)]
    assert ssim(c_sr, c_hr) == pytest.approx(_slow_ssim(*y), abs=1e-12)


def test_ssim_symmetric_and_below_one(rng):
    a = rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    s_ab, s_ba = ssim(a, b, 2), ssim(b, a, 2)
    assert s_ab == pytest.approx(s_ba, abs=1e-12)
    assert -1 <= s_ab < 0.99
    assert psnr(a, b, 2) == pytest.approx(psnr(b, a, 2))


def test_metric_input_errors(rng):
    a = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    for f in (psnr, ssim):
        with pytest.raises(TypeError, match="uint8"):
            f(a.astype(np.float64), a, 0)
        with pytest.raises(TypeError, match="uint8"):
            f(a, a.astype(np.float32) / 255, 0)
        with pytest.raises(ValueError) as info:
            f(a, a[:19], 0)
        assert "(20, 20, 3)" in str(info.value) and "(19, 20, 3)" in str(info.value)
        with pytest.raises(ValueError):
            f(a, a, 10)  # nothing left after shaving
    with pytest.raises(ValueError, match="window"):
        ssim(a, a, 5)  # 10x10 left: smaller than the 11x11 window



# ----------------------------------------------------------------------------------------------
# Colour profiles: every image is read into sRGB
# ----------------------------------------------------------------------------------------------
