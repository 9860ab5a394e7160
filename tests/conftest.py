"""Shared test fixtures: the project root on sys.path, the optional ../shared/data, small threads,
fake LPIPS weights, a tiny training set for the 'smoke' preset (``tiny_data``) and the equality
of training states (``assert_same_state``)."""
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config import SHARED_DATA  # noqa: E402


@pytest.fixture(scope="session")
def shared_data():
    """Path of ../shared/data; the test is skipped when it is absent."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    """Two torch threads in the test process (subprocesses set their own)."""
    import torch
    torch.set_num_threads(2)


LPIPS_FAKE_SEED = 0
LPIPS_FAKE_STD = 0.05    # random backbone weights ~ N(0, 0.05^2): activations stay moderate


@pytest.fixture(scope="session")
def fake_lpips_weights(tmp_path_factory):
    """``get(net) -> (backbone_path, linear_path)``: LPIPS weight files in the official layouts
    (torchvision ``features.N.weight`` plus a classifier key; the release's
    ``linN.model.1.weight``) filled with random values, written once per session. For tests of
    the loading and the maths only: these are not the real weights."""
    import torch

    import metrics

    folder = tmp_path_factory.mktemp("fake_lpips")
    written = {}

    def get(net):
        if net not in written:
            gen = torch.Generator().manual_seed(LPIPS_FAKE_SEED)
            backbone = metrics._LPIPSBackbone(net)
            state = {f"features.{k}": torch.randn(v.shape, generator=gen) * LPIPS_FAKE_STD
                     for k, v in backbone.features.state_dict().items()}
            state["classifier.1.weight"] = torch.zeros(2, 2)
            linear = {f"lin{k}.model.1.weight": torch.rand((1, ch, 1, 1), generator=gen)
                      for k, ch in enumerate(backbone.channels)}
            paths = folder / f"{net}_backbone.pth", folder / f"{net}_linear.pth"
            torch.save(state, paths[0])
            torch.save(linear, paths[1])
            written[net] = paths
        return written[net]
    return get


@pytest.fixture(scope="session")
def lpips_torch_home(tmp_path_factory, fake_lpips_weights):
    """A ``TORCH_HOME`` folder whose torch.hub cache holds the fake AlexNet LPIPS files (see
    :func:`fake_lpips_weights`) under the names ``metrics.LPIPS('alex')`` looks for. Set the
    environment variable ``TORCH_HOME`` to it (e.g. with monkeypatch) to use it."""
    import pretrained

    home = tmp_path_factory.mktemp("torch_home")
    cache = home / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    backbone, linear = fake_lpips_weights("alex")
    (cache / Path(pretrained.LPIPS_BACKBONE_URLS["alex"]).name).write_bytes(backbone.read_bytes())
    (cache / pretrained.LPIPS_LINEAR_CACHE_NAMES["alex"]).write_bytes(linear.read_bytes())
    return home


# ----------------------------------------------------------------------------------------------
# A tiny training set for the 'smoke' preset, and the equality of training states
# ----------------------------------------------------------------------------------------------

TINY_SCALE = 4
TINY_SETS = (("tiny_train", 3, 64), ("tiny_val", 1, 48))   # (list name, images, HR side)


def smooth_image(rng, side):
    """uint8 ``(side, side, 3)``: bilinear upsampling of random 4x4 colours (``rng``: a numpy
    Generator)."""
    import numpy as np
    import torch

    import utils

    coarse = torch.from_numpy(rng.random((1, 3, 4, 4)).astype(np.float32))
    return utils.tensor_to_image(torch.nn.functional.interpolate(
        coarse, size=(side, side), mode="bilinear", align_corners=False))


@dataclass
class TinyData:
    """Where :func:`tiny_data` wrote its sets, and the config overrides that use them."""
    root: Path        # <root>/<set>/HR and <root>/<set>/LR_bicubic/X4
    lists: Path       # tiny_train.json, tiny_val.json
    overrides: list   # KEY=VALUE strings for config.build_config / --set

    def config(self, *more, epochs=None):
        """``config.build_config('smoke')`` with these overrides, then the overrides ``more``;
        ``epochs``: of every stage (None: the preset's, 1)."""
        import config
        return config.build_config("smoke", overrides=[*self.overrides, *more], epochs=epochs)

    def cli_args(self, out, *extra):
        """train.py arguments: the smoke preset into ``out`` without progress bars, these
        overrides as ``--set``, then ``extra`` (later ``--set`` options win)."""
        args = ["--config", "smoke", "--out", str(out), "--no-progress"]
        for item in self.overrides:
            args += ["--set", item]
        return args + [str(a) for a in extra]


@pytest.fixture
def tiny_data(tmp_path):
    """:class:`TinyData`: 3 training images (64 px) and 1 validation image (48 px) of smooth
    random colours, each with its bicubic x4 LR file, in the demo layout under ``tmp/data`` with
    the lists ``tiny_train``/``tiny_val`` in ``tmp/lists``; the overrides point the 'smoke'
    preset at them and run it on the CPU without workers, cache or evaluation sets (with 4
    patches per image and batch 4: 3 steps per epoch)."""
    import numpy as np

    import create_data_lists
    import datasets
    import utils

    rng = np.random.default_rng(0)
    root, lists = tmp_path / "data", tmp_path / "lists"
    for name, count, side in TINY_SETS:
        hr_dir, lr_dir = root / name / "HR", root / name / "LR_bicubic" / f"X{TINY_SCALE}"
        for i in range(count):
            hr = smooth_image(rng, side)
            utils.save_image(hr_dir / f"im{i}.png", hr)
            utils.save_image(lr_dir / f"im{i}x{TINY_SCALE}.png", datasets.make_lr(hr, TINY_SCALE))
        create_data_lists.list_from_folder(hr_dir, lr_dir, name, lists, TINY_SCALE)
    overrides = [f"data.lists_dir={str(lists)!r}", f"data.root={str(root)!r}",
                 "data.train_list='tiny_train'", "data.val_list='tiny_val'", "data.cache_dir=None",
                 "data.workers=0", "train.device='cpu'", "train.eval_root=None",
                 "train.eval_sets=[]"]
    return TinyData(root, lists, overrides)


def _assert_same_state(a, b, keys=None, where=()):
    import torch

    if keys is not None:
        for key in keys:
            _assert_same_state(a[key], b[key], where=(key,))
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (where, list(a), list(b))
        for key in a:
            _assert_same_state(a[key], b[key], where=where + (key,))
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), (where, a, b)
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_state(x, y, where=where + (i,))
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), where
    else:
        assert type(a) is type(b) and a == b, (where, a, b)


@pytest.fixture(scope="session")
def assert_same_state():
    """``assert_same_state(a, b, keys=None)``: ``a`` and ``b`` are equal bit for bit. Without
    ``keys``: two state dicts (of a module, an optimiser, a whole checkpoint), compared through
    nested dicts, lists and tuples down to tensors (same dtype, shape and values) and plain
    values (same type, equal). With ``keys``: only those entries of two checkpoints, e.g.
    ``("generator", "optimizer_g")`` (an optimiser's whole state dict: its per-parameter state
    and its param groups, lr included). A failure names the path to the first difference."""
    return _assert_same_state
