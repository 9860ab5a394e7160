"""Shared test fixtures: the project root on sys.path, the optional ../shared/data, small threads."""
import sys
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

    import models

    folder = tmp_path_factory.mktemp("fake_lpips")
    written = {}

    def get(net):
        if net not in written:
            gen = torch.Generator().manual_seed(LPIPS_FAKE_SEED)
            backbone = models._LPIPSBackbone(net)
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
    :func:`fake_lpips_weights`) under the names ``models.LPIPS('alex')`` looks for. Set the
    environment variable ``TORCH_HOME`` to it (e.g. with monkeypatch) to use it."""
    import models

    home = tmp_path_factory.mktemp("torch_home")
    cache = home / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    backbone, linear = fake_lpips_weights("alex")
    (cache / Path(models.LPIPS_BACKBONE_URLS["alex"]).name).write_bytes(backbone.read_bytes())
    (cache / models.LPIPS_LINEAR_CACHE_NAMES["alex"]).write_bytes(linear.read_bytes())
    return home
