"""ONNX: export a trained generator to an ``.onnx`` file, and run such a file with onnxruntime.

    python export.py runs/demo/srgan.pth srgan.onnx          # export.py picks ONNX by the suffix
    python super_resolve.py --checkpoint srgan.onnx --input photo.png --output out/

The exported graph takes ``lr``: ``(N,3,h,w)`` float32 RGB in [0,1] of any height and width (at
least :data:`MIN_SIDE`) and gives ``sr``: ``(N,3,s*h,s*w)`` float32, not clamped (as the PyTorch
generator; ``super_resolve`` clamps and rounds). It is made by ``torch.onnx.export`` (the
``torch.export`` based exporter, which needs the ``onnxscript`` package) with dynamic height and
width, and checked before it is kept: onnxruntime runs it on two probe images of different
sizes and must give PyTorch's output within :data:`CHECK_TOLERANCE`. The file's metadata holds
the scale, the architecture and its settings, and the receptive-field margin and tile alignment
that tiled inference needs (``super_resolve`` cannot probe a graph it cannot hook).

Exportable: SRResNet (sub-pixel or nearest + conv upsampling, with or without the bicubic skip:
``F.interpolate`` maps to ONNX ``Resize``) and TransposedConvSR without its bicubic skip. SRCNN,
FSRCNN, VDSR and TransposedConvSR with ``bicubic_skip`` build their input with the MATLAB-exact
``imresize_torch``, whose weights are computed in Python from the image size: a traced graph
would hold one image size's weights, so they are refused with one line.

onnx, onnxscript and onnxruntime are optional dependencies (``pip install onnx onnxscript
onnxruntime``); without them these functions raise :class:`MissingDependency` naming the
install command.
"""
import contextlib
import importlib
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

import models

import checkpoint
from utils import atomic_write

SUFFIX = ".onnx"
"""File name ending of an ONNX generator (``export.py`` writes one, ``super_resolve`` runs one)."""

INPUT_NAME, OUTPUT_NAME = "lr", "sr"
"""Names of the graph's input (LR batch) and output (SR batch)."""

MIN_SIDE = 8
"""Smallest LR side the exported graph accepts (``tiling`` edge-pads smaller images to its
own ``MIN_INPUT_SIDE``, the same 8 px)."""

EXAMPLE_SIZE = (24, 20)
"""LR ``(h, w)`` of the example input the exporter traces (any size works: h and w are dynamic;
unequal so a swapped axis would show)."""

PROBE_SIZES = ((17, 29), (40, 33))
"""LR ``(h, w)`` of the two images the exported graph is checked on (neither the traced size)."""

CHECK_TOLERANCE = 1e-3
"""Largest |ONNX - PyTorch| accepted when checking an export, on outputs in [0,1] (a quarter of
a gray level; float32 graphs agree to ~1e-6)."""

METADATA = ("scale", "receptive_margin", "tile_alignment")
"""Metadata an exported graph must carry for ``super_resolve`` (besides ``arch``, ``arch_kwargs``)."""

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
"""onnxruntime execution provider of each device type."""

INSTALL_HINT = "pip install onnx onnxscript onnxruntime"


class MissingDependency(ImportError):
    """An optional package needed for ONNX is not installed (the message says how to install)."""


def _require(name):
    """``importlib.import_module(name)``, or :class:`MissingDependency` naming the install."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise MissingDependency(f"ONNX needs the package {name!r}, which is not installed: "
                                f"{INSTALL_HINT}") from e


def check_exportable(model):
    """ValueError (one line) for a generator whose graph depends on the image size in Python:
    the ones that call the MATLAB-exact ``imresize_torch`` (see the module docstring)."""
    uses_imresize = getattr(model, "y_only", False) or (
        isinstance(model, models.TransposedConvSR) and model.bicubic_skip)
    if uses_imresize:
        raise ValueError(f"{type(model).__name__} builds its input with the MATLAB-exact bicubic "
                         f"imresize, whose weights depend on the image size: it cannot be "
                         f"exported with a dynamic size; ONNX export supports SRResNet and "
                         f"TransposedConvSR without bicubic_skip")


def _graph_bytes(model):
    """Export ``model`` (eval mode, CPU, float32) -> the ONNX ``ModelProto`` with dynamic h, w."""
    _require("onnxscript")
    example = torch.rand(1, 3, *EXAMPLE_SIZE)                  # (1,3,h,w) float32 in [0,1]
    h, w = torch.export.Dim("h", min=MIN_SIDE), torch.export.Dim("w", min=MIN_SIDE)
    with _exporter_quiet():
        program = torch.onnx.export(model, (example,), dynamo=True, verbose=False,
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    dynamic_shapes=({2: h, 3: w},))
    return program.model_proto


@contextlib.contextmanager
def _exporter_quiet():
    """The exporter's own chatter (missing torchvision ops it would register, deprecations
    inside torch) is not the user's business: errors only while it runs."""
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def export_onnx(model, ckpt, dst, receptive_margin, tile_alignment):
    """Export ``model`` (a float32 generator on the CPU, as ``checkpoint.load_generator`` gives it
    with its checkpoint ``ckpt``) to the ONNX file ``dst``, checked against PyTorch
    (:data:`PROBE_SIZES`) before it is written. ``receptive_margin``, ``tile_alignment``: its
    receptive-field radius and tile step in LR px (``tiling.receptive_margin`` /
    ``tile_alignment``), stored for tiled inference.

    Returns ``{"arch", "scale", "receptive_margin", "max_abs_diff"}``. Raises ValueError for a
    generator that cannot be exported (:func:`check_exportable`) or an export that disagrees
    with PyTorch (nothing is written then); :class:`MissingDependency`; ``utils.WriteError``
    for an unwritable ``dst``.
    """
    onnx = _require("onnx")
    _require("onnxruntime")
    check_exportable(model)
    model = model.eval()
    proto = _graph_bytes(model)
    info = {"arch": ckpt["arch"], "scale": int(ckpt["scale"]),
            "arch_kwargs": json.dumps(checkpoint.to_plain(ckpt.get("arch_kwargs") or {})),
            "receptive_margin": int(receptive_margin), "tile_alignment": int(tile_alignment)}
    for key, value in info.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    data = proto.SerializeToString()
    diff = _max_diff_to_torch(model, data)
    if not diff <= CHECK_TOLERANCE:
        raise ValueError(f"{dst}: the ONNX graph differs from PyTorch by {diff:.3g} (> "
                         f"{CHECK_TOLERANCE}) on a probe image; nothing was written to {dst}")
    onnx.checker.check_model(onnx.load_model_from_string(data))
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(dst, "wb", what="ONNX model") as f:
        f.write(data)
    return {"arch": info["arch"], "scale": info["scale"],
            "receptive_margin": info["receptive_margin"],
            "tile_alignment": info["tile_alignment"], "max_abs_diff": diff}


def _max_diff_to_torch(model, data):
    """Largest |ONNX - PyTorch| over :data:`PROBE_SIZES` random LR images."""
    session = _session(data, "cpu")
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for h, w in PROBE_SIZES:
        x = torch.rand(1, 3, h, w, generator=generator)
        with torch.inference_mode():
            ref = model(x).numpy()
        out = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
        if out.shape != ref.shape:
            return float("inf")
        worst = max(worst, float(np.abs(out - ref).max()))
    return worst


def _session(model_bytes_or_path, device_type):
    """An onnxruntime ``InferenceSession`` on ``device_type`` ('cpu' or 'cuda')."""
    ort = _require("onnxruntime")
    provider = PROVIDERS[device_type]
    if provider not in ort.get_available_providers():
        raise ValueError(f"onnxruntime here has no {provider} (it has "
                         f"{', '.join(ort.get_available_providers())}): use --device cpu, or "
                         f"install onnxruntime-gpu")
    options = ort.SessionOptions()
    options.log_severity_level = 3                     # errors only
    return ort.InferenceSession(model_bytes_or_path, options, providers=[provider])


class OnnxGenerator:
    """An exported generator run by onnxruntime, usable where ``tiling.upscale_image``
    takes a PyTorch generator: calling it maps ``(N,3,h,w)`` float RGB in [0,1] (any device,
    any memory format) to ``(N,3,s*h,s*w)`` float32 on the CPU; ``scale``,
    ``receptive_margin`` and ``tile_alignment`` come from the file's metadata; ``to`` /
    ``eval`` / ``train`` accept what ``upscale_image`` asks (inference only).

    Raises ValueError naming ``path`` for a file that is not an ONNX model of this project
    (missing metadata, other input or output names), :class:`MissingDependency`.
    """

    training = False

    def __init__(self, path, device="cpu"):
        self.path = str(path)
        self.device = torch.device(device)
        if self.device.type not in PROVIDERS:
            raise ValueError(f"--device {device}: ONNX models run on cpu or cuda")
        try:
            self.session = _session(self.path, self.device.type)
        except MissingDependency:
            raise
        except Exception as e:  # noqa: BLE001 -- onnxruntime raises its own types for bad files
            raise ValueError(f"{path}: not a readable ONNX model ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''})") from e
        meta = self.session.get_modelmeta().custom_metadata_map
        names = ([i.name for i in self.session.get_inputs()],
                 [o.name for o in self.session.get_outputs()])
        if names != ([INPUT_NAME], [OUTPUT_NAME]) or not set(METADATA) <= set(meta):
            raise ValueError(f"{path}: not an ONNX generator exported by export.py (needs input "
                             f"{INPUT_NAME!r}, output {OUTPUT_NAME!r} and the metadata "
                             f"{', '.join(METADATA)})")
        self.scale = int(meta["scale"])
        self.receptive_margin = int(meta["receptive_margin"])
        self.tile_alignment = int(meta["tile_alignment"])
        self.arch = meta.get("arch", "?")

    def __call__(self, x):
        lr = x.detach().to("cpu", torch.float32).contiguous().numpy()   # (N,3,h,w) NCHW
        return torch.from_numpy(self.session.run([OUTPUT_NAME], {INPUT_NAME: lr})[0])

    def to(self, device):
        """Inputs are taken from any device; the session stays where it was made."""
        return self

    def eval(self):
        return self

    def train(self, mode=True):
        if mode:
            raise ValueError(f"{self.path}: an ONNX generator runs inference only")
        return self

    def __repr__(self):
        return f"OnnxGenerator({self.path!r}, {self.arch}, x{self.scale})"
