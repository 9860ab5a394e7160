"""Turn a training checkpoint into a small generator-only weight file to ship or share.

    python export.py runs/reference/srgan.pth weights/srgan.pth          # fp16 (default)
    python export.py runs/reference/srresnet.pth weights/srresnet.pth --dtype float32
    python export.py runs/reference/srgan.pth srgan.onnx                 # ONNX (onnx_model.py)

A training checkpoint (``checkpoint.CHECKPOINT_FORMAT``) holds the discriminator, the optimisers,
the RNG states and more; a user needs the generator alone. The exported file is the same
format with only what :func:`checkpoint.load_generator` reads: ``arch``, ``arch_kwargs``,
``scale``, ``stage`` and ``generator`` -- the weights that are used (the EMA average where the
run kept one), in float16 or float32 -- plus its provenance (``exported_from``: the source's
step, epoch and preset settings). It loads with ``torch.load(path, weights_only=True)`` (no code
runs) everywhere a checkpoint is accepted: ``evaluate.py --model``, ``super_resolve.py
--checkpoint``, the notebooks. The generator's weights are cast back to float32 on loading.

An output ending in ``.onnx`` is an ONNX graph instead (float32, dynamic height and width,
checked against PyTorch before it is written; ``onnx_model.py``), for onnxruntime or another
runtime; ``super_resolve.py --checkpoint x.onnx`` runs it.
"""
import sys
from pathlib import Path

import torch

import checkpoint
import cli
import onnx_model
import tiling
from utils import atomic_write

DTYPES = {"float16": torch.float16, "float32": torch.float32}
"""Weight precisions of an exported file (``--dtype``)."""

DEFAULT_DTYPE = "float16"


def export_generator(src, dst, dtype=DEFAULT_DTYPE):
    """Write the generator of the training checkpoint ``src`` to ``dst`` (generator only).

    ``dtype``: a key of :data:`DTYPES`. Floating-point weights are cast to it; integer buffers
    are kept. ``dst`` may not be ``src`` (nothing is overwritten in place). Returns the dict
    written. Raises what :func:`checkpoint.load_checkpoint` raises for a bad ``src``, ValueError
    for an unknown ``dtype`` or ``dst == src``, ``utils.WriteError`` for an unwritable ``dst``.
    """
    if dtype not in DTYPES:
        raise ValueError(f"--dtype {dtype!r}: choose one of {sorted(DTYPES)}")
    src, dst = Path(src), Path(dst)
    if dst.exists() and dst.resolve() == src.resolve():
        raise ValueError(f"{dst}: the output would replace the checkpoint it is made from; "
                         f"give another path")
    ckpt = checkpoint.load_checkpoint(src)
    state = checkpoint.generator_state(ckpt, src)
    cast = {k: (v.to(DTYPES[dtype]) if v.is_floating_point() else v).clone()
            for k, v in state.items()}
    config = ckpt.get("config") or {}
    out = {
        "format": checkpoint.CHECKPOINT_FORMAT, "arch": ckpt["arch"],
        "arch_kwargs": ckpt.get("arch_kwargs") or {}, "scale": int(ckpt["scale"]),
        "stage": ckpt.get("stage"), "generator": cast, "generator_ema": None,
        "exported_from": {"file": src.name, "step": ckpt.get("step"), "epoch": ckpt.get("epoch"),
                          "ema": bool(ckpt.get("generator_ema")), "dtype": dtype,
                          "generator": config.get("generator"), "stage1": config.get("stage1"),
                          "stage2": config.get("stage2"), "data": config.get("data")},
        "step": ckpt.get("step"), "epoch": ckpt.get("epoch"), "finished": ckpt.get("finished"),
        "clock": ckpt.get("clock"),
    }
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(dst, "wb", what="exported generator") as f:
        torch.save(out, f)
    return out


def export_file(src, dst, dtype=None):
    """Write the generator of the checkpoint ``src`` to ``dst``: an ONNX graph when ``dst``
    ends in ``onnx_model.SUFFIX`` (float32: ``dtype`` None or 'float32'), else
    :func:`export_generator` (``dtype`` None = :data:`DEFAULT_DTYPE`). Returns a one-line
    summary of what was written."""
    dst = Path(dst)
    onnx = dst.suffix.lower() == onnx_model.SUFFIX
    cli.check_output_file(dst, "output", inputs=[src],
                          kind="ONNX model" if onnx else "torch checkpoint",
                          replaceable=None if onnx else cli.is_torch_file)
    if not onnx:
        dtype = dtype or DEFAULT_DTYPE
        out = export_generator(src, dst, dtype)
        return (f"{out['arch']} {out['arch_kwargs']} x{out['scale']}, {out['stage']} step "
                f"{out['step']}, {dtype}" + (" (EMA weights)" if out["exported_from"]["ema"]
                                            else ""))
    if dtype not in (None, "float32"):
        raise ValueError(f"--dtype {dtype}: an ONNX graph ({dst}) is written in float32")
    model, ckpt = checkpoint.load_generator(src, device="cpu")
    info = onnx_model.export_onnx(model, ckpt, dst, *tiling.receptive_field(model))
    return (f"ONNX {info['arch']} x{info['scale']}, float32, dynamic height/width, "
            f"receptive margin {info['receptive_margin']} LR px; onnxruntime equals PyTorch "
            f"within {info['max_abs_diff']:.1e}")


def parse_args(argv=None):
    p = cli.tool_parser(__doc__)
    p.add_argument("checkpoint", type=Path, help="a training checkpoint (train.py's OUT/<name>.pth)")
    p.add_argument("output", type=Path, help="the generator-only file to write, e.g. "
                   "weights/srgan.pth, or an ONNX graph: srgan.onnx")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                   help=f"weight precision (default {DEFAULT_DTYPE}: half the size, output "
                        f"within one gray level; an .onnx output is float32)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        summary = export_file(args.checkpoint, args.output, args.dtype)
    except (OSError, ValueError, ImportError) as e:   # ImportError: onnx_model.MissingDependency
        return cli.fail("export.py", e)
    print(f"wrote {args.output} ({args.output.stat().st_size / 1e6:.2f} MB): {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run("export.py", main))
