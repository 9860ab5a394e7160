"""Pretrained weights from elsewhere: torchvision's ImageNet VGG19 (the content loss) and the
LPIPS v0.1 files (the AlexNet / VGG16 backbone and the release's linear layers), each from a
given file, the ``torch.hub`` cache or a download, checked before use."""
import os
from pathlib import Path

import torch

import models
from checkpoint import check_finite_state, read_torch_dict
from config import SHARED_VGG


VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
"""torchvision's ImageNet VGG19 (IMAGENET1K_V1) weights; cached in ``torch.hub.get_dir()``."""


RANDOM_WEIGHTS = "random"
"""``vgg19(weights=RANDOM_WEIGHTS)`` keeps the random initialisation: for tests only."""


def vgg19_hub_cache_file():
    """Where ``torch.hub`` keeps the official VGG19 file once downloaded (it may not exist)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(VGG19_URL).name


def _download_vgg19():
    """The official VGG19 state dict through the torch.hub cache; RuntimeError if unavailable.
    Returns ``(state_dict, description of where it came from)``."""
    cache_dir = Path(torch.hub.get_dir()) / "checkpoints"
    try:
        state = torch.hub.load_state_dict_from_url(VGG19_URL, map_location="cpu",
                                                   check_hash=True, weights_only=True)
    except Exception as exc:  # URLError, HTTPError, hash mismatch, corrupt cache file ...
        raise RuntimeError(
            f"could not get the VGG19 weights from {VGG19_URL} (torch hub cache: {cache_dir}): "
            f"{type(exc).__name__}: {exc}. Download that file by hand and pass its path "
            f"(pretrained.vgg19(weights=PATH), config key vgg.weights), or put it in {cache_dir}."
        ) from exc
    return state, f"{VGG19_URL} (cached in {cache_dir})"


def vgg19(i=5, j=4, weights=None):
    """A frozen ``models.TruncatedVGG19`` at phi_{i,j} holding the ImageNet weights.

    Args:
        i, j: the depth (see ``models.vgg19_feature_end``; invalid -> ValueError).
        weights: ``None`` -> torchvision's official file (:data:`VGG19_URL`) through the
            torch.hub cache (RuntimeError with instructions if it cannot be downloaded); a path
            -> a state dict of ``vgg19`` or of its ``features`` (keys ``features.0.weight`` or
            ``0.weight``; layers beyond the truncation are ignored); a file that lacks a needed
            layer -> ValueError. :data:`RANDOM_WEIGHTS` keeps the random init: for tests only.
    """
    vgg = models.TruncatedVGG19(i, j)
    if isinstance(weights, str) and weights == RANDOM_WEIGHTS:
        return vgg
    if weights is None:
        state, source = _download_vgg19()
    elif isinstance(weights, (str, os.PathLike)):
        state, source = read_torch_dict(weights, "VGG19 weights"), str(weights)
    else:
        raise TypeError(f"TruncatedVGG19: weights must be None, a path or "
                        f"{RANDOM_WEIGHTS!r}, got {type(weights).__name__}")
    vgg.features.load_state_dict(_vgg19_features_state(state, source, vgg))
    return vgg


def features_by_layer(state):
    """A torchvision state dict keyed by the layers of its ``features``: ``features.0.weight``
    (the whole model) and ``0.weight`` (``features`` alone) both become ``0.weight``; the first
    of two keys that map to the same name wins, other keys are kept as they are."""
    feats = {}
    for key, value in state.items():
        feats.setdefault(key[len("features."):] if key.startswith("features.") else key, value)
    return feats


def _vgg19_features_state(state, source, vgg):
    """The tensors of ``state`` (``features.``-prefixed or not) that ``vgg.features`` needs;
    ValueError naming ``source`` if some are missing, mis-shaped or not finite."""
    feats = features_by_layer(state)
    needed = vgg.features.state_dict()
    missing = [k for k in needed if k not in feats]
    if missing:
        raise ValueError(
            f"{source}: the VGG19 weights lack {len(missing)} tensor(s) needed for "
            f"phi_(i={vgg.i}, j={vgg.j}) (features[:{len(vgg.features)}]): {missing}. "
            f"Use a shallower depth or the full vgg19 file ({VGG19_URL}).")
    for k, ref in needed.items():
        if not isinstance(feats[k], torch.Tensor) or feats[k].shape != ref.shape:
            found = tuple(feats[k].shape) if isinstance(feats[k], torch.Tensor) \
                else type(feats[k]).__name__
            raise ValueError(f"{source}: VGG19 tensor {k!r} has shape {found}, "
                             f"expected {tuple(ref.shape)}")
    subset = {k: feats[k] for k in needed}
    check_finite_state(subset, source)
    return subset


def vgg19_candidates(weights):
    """Where the VGG19 weights of the content loss are looked for, in order: ``weights`` alone
    when given (a file, or :data:`RANDOM_WEIGHTS` for tests); else the official file in the
    torch.hub cache, the shared VGG19 slice (``config.SHARED_VGG``, conv1_1..conv3_1: enough
    for VGG22), each when present, then None (the official URL: a download when online)."""
    if weights is not None:
        return [weights]
    return [p for p in (vgg19_hub_cache_file(), SHARED_VGG) if Path(p).is_file()] + [None]


LPIPS_NETS = ("alex", "vgg")
"""Backbones of :class:`LPIPS`: torchvision's ImageNet AlexNet ('alex', the release's default
"forward metric") or VGG16 ('vgg')."""


LPIPS_BACKBONE_URLS = {
    "alex": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "vgg": "https://download.pytorch.org/models/vgg16-397923af.pth",
}
"""torchvision's official ImageNet weights of the backbones (IMAGENET1K_V1); their file names
carry the sha256 prefix that ``torch.hub`` checks on download."""


LPIPS_RELEASE = "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1"


LPIPS_LINEAR_URLS = {net: f"{LPIPS_RELEASE}/{net}.pth" for net in LPIPS_NETS}
"""The learned linear layers of LPIPS v0.1 (keys ``lin0.model.1.weight`` ... ``lin4...``)."""


LPIPS_LINEAR_CACHE_NAMES = {net: f"lpips_v0.1_{net}.pth" for net in LPIPS_NETS}
"""File names of the linear weights in the torch.hub cache (the URLs end in the generic
``alex.pth`` / ``vgg.pth``, which other projects could cache under the same name)."""


def lpips_weight_files(net="alex"):
    """Where ``torch.hub`` caches the two files of :class:`LPIPS` ``net``:
    ``{"backbone": Path, "linear": Path}`` (they may not exist)."""
    check_lpips_net(net)
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    return {"backbone": cache / Path(LPIPS_BACKBONE_URLS[net]).name,
            "linear": cache / LPIPS_LINEAR_CACHE_NAMES[net]}


def check_lpips_net(net):
    if net not in LPIPS_NETS:
        raise ValueError(f"LPIPS: net must be one of {LPIPS_NETS}, got {net!r}")


def _lpips_from_hub(net, part):
    """``(state, source)`` of ``part`` ('backbone' | 'linear') of LPIPS ``net`` through the
    torch.hub cache (downloaded when missing); ``(None, reason)`` when it cannot be had."""
    url = (LPIPS_BACKBONE_URLS if part == "backbone" else LPIPS_LINEAR_URLS)[net]
    cached = lpips_weight_files(net)[part]
    try:
        state = torch.hub.load_state_dict_from_url(
            url, map_location="cpu", weights_only=True, file_name=cached.name,
            check_hash=part == "backbone")  # the torchvision names carry their hash prefix
    except Exception as exc:  # URLError, HTTPError, hash mismatch, corrupt cache file ...
        return None, f"{type(exc).__name__}: {exc}"
    if not isinstance(state, dict):
        return None, f"{cached} is not a state dict ({type(state).__name__})"
    return state, f"{url} (cached as {cached})"


def _load_lpips_part(net, part, path):
    """``(state, source)`` of one file of LPIPS ``net``: ``path`` if given (FileNotFoundError /
    ValueError for a missing / unreadable file), else the torch.hub cache or a download
    (``(None, reason)`` when that fails)."""
    if path is not None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"LPIPS: {part} weights must be None or a path, "
                            f"got {type(path).__name__}")
        return read_torch_dict(path, f"LPIPS {net} {part} weights"), str(path)
    return _lpips_from_hub(net, part)


def lpips_weights(net, backbone_weights=None, linear_weights=None):
    """The two weight files of LPIPS ``net``: ``{"backbone": (state, source), "linear": (state,
    source)}``. A part given by path is read from it (those first: a bad file fails before any
    download); a part given as None comes through the torch.hub cache or a download.

    Raises RuntimeError naming each file that could not be had (offline?), its URL, the cache
    file it would be saved as and how to provide it; FileNotFoundError / ValueError for a given
    path that is missing or unreadable.
    """
    given = {"backbone": backbone_weights, "linear": linear_weights}
    order = sorted(given, key=lambda part: given[part] is None)
    loaded = {part: _load_lpips_part(net, part, given[part]) for part in order}
    failures = [(part, loaded[part][1]) for part in given if loaded[part][0] is None]
    if failures:
        raise RuntimeError(_lpips_unavailable(net, failures))
    return {part: loaded[part] for part in given}


def _lpips_unavailable(net, failures):
    """One line: which files could not be had and why, and how to provide them."""
    files = lpips_weight_files(net)
    urls = {"backbone": LPIPS_BACKBONE_URLS[net], "linear": LPIPS_LINEAR_URLS[net]}
    args = {"backbone": ("backbone_weights", "--lpips-backbone"),
            "linear": ("linear_weights", "--lpips-weights")}
    got = "; ".join(f"{part} {urls[part]} ({why})" for part, why in failures)
    put = " and ".join(f"{urls[part]} as {files[part].name}" for part, _ in failures)
    kwargs = ", ".join(f"{args[part][0]}=PATH" for part, _ in failures)
    flags = " ".join(f"{args[part][1]} PATH" for part, _ in failures)
    return (f"LPIPS ({net}) weights unavailable (offline?): could not get {got}. "
            f"Download {put} into the torch.hub cache folder {files['linear'].parent} "
            f"(torch.hub.get_dir()/checkpoints; TORCH_HOME moves it), or pass the files: "
            f"LPIPS({net!r}, {kwargs}), evaluate.py {flags}")
