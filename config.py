"""The project's one configuration object.

``get_config(name)`` returns an :class:`easydict.EasyDict` holding every setting of a run,
with the defaults of the SRGAN paper (Ledig et al., CVPR 2017) at x4. Scripts and notebooks
read it, override a few keys, and pass it on; no module hides a setting of its own.
:func:`build_config` makes a run's configuration: a preset, a paper variant (:data:`VARIANTS`),
``--set KEY=VALUE`` overrides (:func:`apply_overrides`) and the command-line shortcuts, then
:func:`validate_config`, which checks every numeric, boolean and multiple-choice setting against
the ranges documented here: a nonsensical value is refused before any work with one line naming
the setting. :func:`stage_config` is a stage's section (:data:`STAGES`).

Presets:
    ``'paper'`` (default) -- the paper's setup on DIV2K: full SRResNet (16 blocks x 64 channels),
        96x96 HR patches, batch 16, Adam, 10^6 MSE iterations, then 10^5 + 10^5 adversarial
        iterations at lr 1e-4 and 1e-5 with the VGG54 content loss.
    ``'demo'`` -- a reduced SRResNet trained on the CPU in minutes on the scikit-image photos
        (the embedded demo dataset, built by ``create_data_lists.py --demo``).
    ``'reference'`` -- the demo recipe scaled up: the shipped reference models (weights/).
    ``'smoke'`` -- tiny and fast, for the tests and ``SR_SMOKE=1`` notebook runs.
    ``'srcnn'``, ``'fsrcnn'``, ``'vdsr'``, ``'tconv'`` -- the baselines, each with its own
        paper's recipe (optimiser, per-layer lr, clipping, patches, T91 or the 291 images;
        cited in each preset's comment); ``--variant adam-cosine`` swaps in a fast CPU recipe.

Units: an *epoch* is one pass over ``patches_per_image`` random patches of every training
image; ``iterations = epochs * floor(n_images * patches_per_image / batch_size)`` (the last
incomplete batch of an epoch is dropped; stage 2 counts generator steps, one per ``d_steps``
batches).

The notebooks' parameters (the smoke run's under ``SR_SMOKE=1``) are made by
``notebook_setup.py``; which preset made a checkpoint is ``checkpoint.recipe_of``.
"""
import ast
import copy
import difflib
import math
import numbers
import os
import re
from pathlib import Path

from easydict import EasyDict

ROOT = Path(__file__).resolve().parent
"""The project root (the folder holding this file)."""

REFERENCE_WEIGHTS = {"SRResNet": ROOT / "weights" / "srresnet.pth",
                     "SRGAN": ROOT / "weights" / "srgan.pth"}
"""The shipped reference generators (``--config reference``, exported by export.py; how each
was made and what it scores: weights/README.md): used where no checkpoint is given."""

SHARED_DATA = Path(os.environ.get("SR_SHARED_DATA", ROOT.parent / "shared" / "data"))
"""Offline copy of public data beside the project (``../shared/data``); may be absent."""

SHARED_VGG = SHARED_DATA / "vgg" / "vgg19_features_conv1_1-conv3_1.pth"
"""The shared VGG19 slice, conv1_1..conv3_1 (enough for VGG22; ``pretrained.vgg19_candidates``)."""

_PAPER = EasyDict({
    "scale": 4,                      # upscaling factor (the paper: x4 only)
    "seed": 0,                       # seeds python, numpy and torch; fixes the data order
    "data": {
        "root": str(ROOT / "data"),              # where downloads and lists live
        "lists_dir": str(ROOT / "data" / "lists"),  # JSON data lists written by create_data_lists.py
        "cache_dir": str(ROOT / "data" / "cache"),  # decoded-image cache (.npy) reused across runs
        "train_list": "DIV2K_train",     # name of the training list in lists_dir
        "val_list": "Set5",              # per-epoch validation set
        "test_sets": ["Set5", "Set14", "B100", "Urban100", "DIV2K_valid"],
        "benchmark_root": str(ROOT / "data" / "benchmark"),  # EDSR layout <Set>/HR, <Set>/LR_bicubic/X4
        "patch_size": 96,                # HR patch side; the LR patch is patch_size // scale
        "patches_per_image": 100,        # random patches drawn from each image per epoch
        "augment": True,                 # random flips and 90-degree rotations
        "skip_small": False,             # a training image smaller than the patch: False = an error
                                         #   naming it; True = left out with a warning naming it
        "workers": 4,                    # DataLoader worker processes (0 = main process)
        "train_sets_root": str(SHARED_DATA / "train_sets"),  # <root>/T91, <root>/BSD200: the classic
                                         #   training sets; the lists T91 and T91_BSD200 ("291") are
                                         #   built from them on first use (create_data_lists.ensure_data)
        "train_samples_root": str(SHARED_DATA / "train_samples"),  # <root>/DIV2K/DIV2K_train_HR,
                                         #   <root>/Flickr2K/Flickr2K_HR: 2K photos that the list
                                         #   reference_train adds to T91 + BSD200 (create_data_lists.ensure_data)
    },
    "generator": {
        "arch": "srresnet",              # srresnet | tconv | srcnn | fsrcnn | vdsr (models.GENERATORS);
                                         #   the baselines take the dict generator.<arch> (below)
        "n_blocks": 16,                  # residual blocks B
        "n_channels": 64,                # feature maps
        "batch_norm": True,              # SRResNet's BatchNorm layers (paper); False: without them,
                                         #   as EDSR/ESRGAN (no train/test statistics mismatch)
        "upsample": "pixel_shuffle",     # pixel_shuffle (paper) | nearest (nearest + conv, no
                                         #   checkerboard; ESRGAN's choice)
        "bicubic_skip": False,           # True: output = bicubic(LR) + network(LR) (VDSR's residual
                                         #   learning: colours cannot drift); paper: False
    },
    "discriminator": {
        "n_channels": 64,                # channels of the first conv; doubles every 2 layers
        "n_blocks": 8,                   # conv layers
        "fc_size": 1024,                 # hidden dense layer
    },
    "vgg": {
        "i": 5, "j": 4,                  # phi_{i,j}: j-th conv (after ReLU) before the i-th max-pool
        "weights": None,                 # None: official torchvision URL via torch.hub; or a .pth path
        "feature_scale": 1 / 12.75,      # the paper rescales VGG features by 1/12.75
    },
    "stage1": {                          # SRResNet: MSE pretraining of the generator
        "name": "srresnet",
        "loss": "mse",                   # mse | l1 (pixel loss) | vgg (phi_{i,j} of cfg.vgg: SRResNet-VGG22/54)
                                         #   | euclidean (the SRCNN/FSRCNN/VDSR papers' loss, losses.pixel_loss)
        "time_budget_s": None,           # seconds of training for this stage (None: train.time_budget_s)
        "patch_size": None,              # HR patch side for this stage (None: data.patch_size)
        "epochs": 200,                   # = 10^6 iterations on DIV2K (800 images x 100 patches / 16)
        "batch_size": 16,                # GLOBAL batch: split over the processes under torchrun
        "lr": 1e-4,
        "betas": (0.9, 0.999),
        "lr_schedule": "constant",       # constant | cosine | step, over the stage's progress (solver.make_lr_fn)
        "lr_min": 0.0,                   # cosine: final lr
        "lr_decay_at": 0.5,              # step: lr x lr_decay_factor after this fraction of the stage
        "lr_decay_factor": 0.1,          # step: the factor
        "optimizer": "adam",             # adam | sgd (momentum SGD: the SRCNN/FSRCNN/VDSR papers)
        "momentum": 0.9,                 # sgd: momentum
        "weight_decay": 0.0,             # L2 weight decay (VDSR: 1e-4)
        "last_layer_lr_scale": 1.0,      # the output layer's lr = this x lr (SRCNN, FSRCNN: 0.1)
        "grad_clip_theta": None,         # VDSR's adjustable gradient clipping at theta/lr; None: off
        "grad_clip_mode": "norm",        # norm: the gradients' global L2 norm <= theta/lr | value:
                                         #   each element in [-theta/lr, theta/lr] (the paper's text)
    },
    "stage2": {                          # SRGAN: adversarial training initialised from stage 1
        "name": "srgan",
        "content_loss": "vgg",           # vgg (phi_{i,j} above) | mse (SRGAN-MSE)
        "adv_weight": 1e-3,              # generator loss = content + adv_weight * adversarial
        "mse_range_factor": 4.0,         # content_loss=mse: the paper's MSE is on HR images in [-1,1],
                                         #   4x the MSE on our [0,1] images (this keeps adv_weight's meaning)
        "pixel_weight": 0.0,             # option: + pixel_weight * pixel loss beside the VGG loss (holds
        "pixel_loss": "l1",              #   colours and low frequencies; ESRGAN uses 1e-2 of L1); paper: 0
        "lr_consistency_weight": 0.0,    # option: + this x pixel_loss(imresize(SR,1/4), imresize(HR,1/4)):
                                         #   holds what LR-PSNR measures, leaves textures free; paper: 0
        "ema_decay": None,               # option: validate/save an EMA of G, ema = d*ema + (1-d)*w (None: off)
        "d_lr_scale": 1.0,               # D's lr = d_lr_scale x G's lr (paper: same lr)
        "time_budget_s": None,           # seconds of training for this stage (None: train.time_budget_s)
        "patch_size": None,              # HR patch side for this stage (None: data.patch_size)
        "best_lr_psnr_margin": 3.0,      # srgan_best.pth: lowest validation NIQE among the epochs whose
                                         #   LR-PSNR is at most this many dB below the starting G's
        "epochs": 40,                    # = 2 x 10^5 iterations on DIV2K
        "batch_size": 16,                # GLOBAL batch: split over the processes under torchrun
        "lr": 1e-4,
        "lr_schedule": "step",           # the paper: 1e-4, then 1e-5 (see stage1.lr_schedule)
        "lr_decay_at": 0.5,              # lr x 0.1 after this fraction of the epochs (1e-4 -> 1e-5)
        "lr_decay_factor": 0.1,
        "betas": (0.9, 0.999),
        "d_steps": 1,                    # k: discriminator steps per generator step
        "init": None,                    # stage-1 checkpoint to start G from (None: OUT/<arch>.pth)
        "collapse_fake": 0.01,           # warn when, for a whole epoch, every batch has mean D(fake) <
        "collapse_real": 0.99,           #   collapse_fake and mean D(real) > collapse_real (D won)
    },
    "train": {
        "device": "auto",                # auto | cpu | cuda | cuda:N
        "amp": None,                     # None | "bf16": bfloat16 autocast (CUDA and CPU) | "fp16":
                                         #   float16 autocast + one GradScaler per optimiser (T4/V100)
                                         #   | "auto": bf16 on CUDA >= sm_80, fp16 on older CUDA, None
                                         #   on the CPU (runtime.resolve_amp)
        "channels_last": True,           # NHWC memory format (faster on CPU and on tensor cores)
        "compile": False,                # torch.compile the generator and the discriminator
                                         #   (refused with sync_bn: a graph break per SyncBatchNorm)
        "sync_every": 25,                # training steps between host reads of the losses (progress
                                         #   bar, non-finite check, multi-process time budget); the
                                         #   steps in between never wait for the GPU (solver.LossWatch)
        "tensorboard": False,            # also log to OUT/tensorboard/<name> (needs `pip install
                                         #   tensorboard`); the CSV log stays the notebooks' source
        "sync_bn": False,                # torchrun with >1 GPU: SyncBatchNorm (BN statistics over the
                                         #   global batch) instead of per-GPU BN (train.py docstring)
        "out_dir": str(ROOT / "runs"),   # checkpoints, CSV logs
        "checkpoint_every": 1,           # epochs between checkpoints
        "val_every": 1,                  # epochs between validations
        "time_budget_s": None,           # stop a stage after this many seconds of training; the lr
                                         #   schedule then runs over min(epochs, budget) (run_clock.RunClock)
        "stages": "both",                # what train.py runs without --stage: srresnet | srgan | both
        "eval_root": str(ROOT / "data" / "benchmark"),  # after training, train.py prints a table of
        "eval_sets": ["Set5", "Set14"],  #   bicubic / SRResNet / SRGAN on these sets, each looked up in
                                         #   eval_root (a folder or a list; None: data.root); missing: skipped
    },
})


def _demo():
    cfg = copy.deepcopy(_PAPER)
    cfg.data.update({
        "train_list": "demo_train", "val_list": "demo_test",
        "root": str(ROOT / "data" / "demo"),
        "patch_size": 96, "patches_per_image": 200, "workers": 0,
    })
    cfg.generator.update({"n_blocks": 6, "n_channels": 32, "batch_norm": False, "upsample": "nearest",
                          "bicubic_skip": True})
    # Demo recipe: a reduced SRResNet (6 blocks x 32 channels) without BN, with nearest + conv
    # upsampling and the bicubic skip (see cfg.generator), L1 loss, Adam lr 1e-3 with cosine
    # decay to 0, batch 8 of 24x24 LR patches, 24 epochs x 150 steps = 3600 steps. A fixed
    # number of steps and no time budget: every machine trains the same models (a slower one
    # later). Why each choice, and what it reaches: README, "SRGAN on a CPU budget".
    cfg.stage1.update({"loss": "l1", "epochs": 24, "batch_size": 8, "lr": 1e-3,
                       "lr_schedule": "cosine", "time_budget_s": None})
    # Demo SRGAN: VGG22 content loss (the shared VGG19 slice covers it offline) + 1e-3 adversarial
    # loss and lr 1e-4 then 1e-5 as in the paper, plus the documented options (0.3 x L1, the
    # LR-consistency term, an EMA of 0.995) that make three CPU minutes work; each was measured
    # (BENCHMARKS.md, "SRGAN stage 2 on the CPU ... (ablation)"; README, "SRGAN on a CPU budget").
    cfg.stage2.update({"epochs": 4, "batch_size": 8, "lr": 1e-4, "lr_schedule": "step",
                       "content_loss": "vgg", "pixel_weight": 0.3, "lr_consistency_weight": 1.0,
                       "ema_decay": 0.995, "patch_size": 64, "time_budget_s": None})
    cfg.discriminator.update({"n_channels": 32, "fc_size": 256})
    cfg.vgg.update({"i": 2, "j": 2})
    cfg.train.update({"device": "cpu",
                      "time_budget_s": None,     # fixed steps (above), whatever the machine
                      "stages": "both",          # the demo's main job: SRResNet, then SRGAN
                      "eval_root": [None, str(SHARED_DATA / "benchmark")],  # data.root (the held-out
                      "eval_sets": ["test", "Set5", "Set14"]})  #   demo photos), then ../shared/data
    return cfg


def _reference():
    # The shipped reference models (weights/README.md): the demo recipe, scaled up to what a
    # 2-core CPU trains in about an hour per stage, on every training image the offline data
    # has (T91 + BSD200 + the DIV2K/Flickr2K samples: 296 images, list reference_train; T91's
    # t20.png, 78x78, is smaller than a patch and left out). A fixed number of steps (no time
    # budget), so every machine trains the same model:
    # stage 1 = 18 epochs x floor(295 x 32 / 16) = 10,620 steps of 16 patches of 96x96;
    # stage 2 = 6 epochs x floor(296 x 32 / 8) = 7,104 steps of 8 patches of 64x64 (t20 fits).
    cfg = _demo()
    cfg.data.update({"train_list": "reference_train", "patches_per_image": 32,
                     "skip_small": True})
    cfg.generator.update({"n_blocks": 8, "n_channels": 48})
    cfg.stage1.update({"epochs": 18, "batch_size": 16})
    cfg.stage2.update({"epochs": 6, "batch_size": 8})
    return cfg


def _smoke():
    cfg = _demo()
    cfg.data.update({"patch_size": 48, "patches_per_image": 4})
    cfg.generator.update({"n_blocks": 2, "n_channels": 16})
    cfg.discriminator.update({"n_channels": 8, "fc_size": 32})
    cfg.stage1.update({"epochs": 1, "batch_size": 4})
    cfg.stage2.update({"epochs": 1, "batch_size": 4, "patch_size": None})
    cfg.vgg.update({"weights": "random"})   # offline and fast; the loss is then meaningless
    cfg.train.update({"stages": "both"})
    return cfg


# ----------------------------------------------------------------------------------------------
# The baselines, each with its own paper's training recipe (stage 1 only)
# ----------------------------------------------------------------------------------------------

def _benchmark_root():
    """data/benchmark when the benchmark sets were downloaded there, else ../shared/data's."""
    local = ROOT / "data" / "benchmark"
    shared = SHARED_DATA / "benchmark"
    return str(local if local.is_dir() or not shared.is_dir() else shared)


def _baseline(arch, train_list, **stage1):
    cfg = copy.deepcopy(_PAPER)
    cfg.generator.arch = arch
    benchmarks = _benchmark_root()
    cfg.data.update({"train_list": train_list, "val_list": "Set5",
                     "benchmark_root": benchmarks, "workers": 2})
    cfg.stage1.update(stage1)
    cfg.train.update({"stages": "srresnet", "eval_root": benchmarks,
                      "eval_sets": ["Set5", "Set14", "B100", "Urban100"]})
    return cfg


def _srcnn():
    # Dong et al., "Image Super-Resolution Using Deep Convolutional Networks", TPAMI 2016,
    # Sec. 4: 9-1-5 with 64/32 filters on the bicubic Y, T91, 33x33 HR sub-images (32 here: a
    # multiple of 4) cut with stride 14, 24,800 of them (~273 per image per epoch); Caffe's
    # EuclideanLoss (loss="euclidean": the lrs are for its scale, ~500x a per-pixel mean); SGD,
    # momentum 0.9, lr 1e-4 (the last layer 1e-5), fixed; N(0, 0.001) init; batch 128 (the
    # released Caffe model); 2000 epochs ~ 3.9x10^5 steps ~ 5x10^7 sub-images. The paper's
    # 'valid' convolutions become 'same' ones padded by edge replication, as zeros pull the
    # border of small patches toward black (BENCHMARKS.md, "Baselines against their papers").
    cfg = _baseline("srcnn", "T91", optimizer="sgd", lr=1e-4, momentum=0.9,
                    last_layer_lr_scale=0.1, lr_schedule="constant", batch_size=128,
                    epochs=2000, loss="euclidean")
    cfg.generator.srcnn = {"n_channels": (64, 32), "kernels": (9, 1, 5), "init_std": 1e-3,
                           "padding_mode": "replicate"}   # see below
    cfg.data.update({"patch_size": 32, "patches_per_image": 273})
    return cfg


def _fsrcnn():
    # Dong, Loy and Tang, "Accelerating the Super-Resolution Convolutional Neural Network",
    # ECCV 2016, Sec. 4.1: FSRCNN(56, 12, 4) on the LR Y, T91 (the paper's fine-tuning on
    # General-100 and scaling by 0.6-0.9 are not here; flips and rotations are), 6x6 LR
    # sub-images (HR 24x24), SGD (momentum 0.9) at lr 1e-3, the deconvolution 1e-4, batch 128;
    # He init, the deconvolution N(0, 0.001). Deviation: the per-pixel MSE, not the paper's
    # Caffe EuclideanLoss, a ~300x larger step at these rates, which diverges (BENCHMARKS.md,
    # "Baselines against their papers").
    cfg = _baseline("fsrcnn", "T91", optimizer="sgd", lr=1e-3, momentum=0.9,
                    last_layer_lr_scale=0.1, lr_schedule="constant", batch_size=128,
                    epochs=2000, loss="mse")
    cfg.generator.fsrcnn = {"d": 56, "s": 12, "m": 4, "padding_mode": "replicate"}  # as SRCNN
    cfg.data.update({"patch_size": 24, "patches_per_image": 273})
    return cfg


def _vdsr():
    # Kim, Lee and Lee, "Accurate Image Super-Resolution Using Very Deep Convolutional
    # Networks", CVPR 2016, Sec. 4.1: 20 layers x 64 channels, residual learning on the bicubic
    # Y, the 291 images (T91 + BSD200), 41x41 patches (40 here: a multiple of 4) with flips and
    # rotations, batch 64, the loss 1/2 ||r - f(x)||^2 summed over a patch (loss="euclidean":
    # the lr 0.1 is made for it), SGD with momentum 0.9 and weight decay 1e-4, lr 0.1 / 10 every
    # 20 of 80 epochs, adjustable gradient clipping at theta / lr. The paper clips each element
    # and gives no theta; the preset clips the global norm at theta = 0.01 (an update is then at
    # most theta long; grad_clip_mode=value clips each element): BENCHMARKS.md, "Baselines
    # against their papers" (VDSR). The paper trains x2, x3 and x4 together; this preset x4 only.
    cfg = _baseline("vdsr", "T91_BSD200", optimizer="sgd", lr=0.1, momentum=0.9,
                    weight_decay=1e-4, grad_clip_theta=0.01, grad_clip_mode="norm",
                    lr_schedule="step",
                    lr_decay_at=[0.25, 0.5, 0.75], lr_decay_factor=0.1, batch_size=64,
                    epochs=80, loss="euclidean")
    cfg.generator.vdsr = {"n_layers": 20, "n_channels": 64}
    cfg.data.update({"patch_size": 40, "patches_per_image": 100})
    return cfg


def _tconv():
    # The course's first network (models.TransposedConvSR) has no paper: it trains like a
    # small modern SR model, on RGB with MSE, Adam lr 1e-3 with cosine decay, 64x64 HR
    # patches, batch 16, on the 291 images.
    cfg = _baseline("tconv", "T91_BSD200", optimizer="adam", lr=1e-3, lr_schedule="cosine",
                    batch_size=16, epochs=100, loss="mse")
    cfg.generator.tconv = {"n_channels": 64, "bicubic_skip": False}
    cfg.data.update({"patch_size": 64, "patches_per_image": 64})
    return cfg


PRESETS = {"paper": lambda: copy.deepcopy(_PAPER), "demo": _demo, "reference": _reference,
           "smoke": _smoke,
           "srcnn": _srcnn, "fsrcnn": _fsrcnn, "vdsr": _vdsr, "tconv": _tconv}

ARCH_PRESETS = {"srresnet": "paper", "tconv": "tconv", "srcnn": "srcnn", "fsrcnn": "fsrcnn",
                "vdsr": "vdsr"}
"""The recipe preset of each generator arch: ``train.py --arch vdsr`` without ``--config``
trains VDSR with its paper's recipe (``--config vdsr``)."""


VARIANTS = {
    # The networks of the SRGAN paper's Table 1 and MOS study (Ledig et al., Sec. 3.3-3.4), each
    # one command: ``train.py --config paper --variant NAME --out runs/NAME`` (stage 2
    # variants start from OUT/srresnet.pth, or --set stage2.init=PATH, and write OUT/<name>.pth:
    # srgan-mse.pth, srgan-vgg22.pth, srgan.pth).
    "srresnet-mse": ["train.stages=srresnet", "stage1.loss=mse"],
    "srresnet-vgg22": ["train.stages=srresnet", "stage1.loss=vgg", "vgg.i=2", "vgg.j=2"],
    "srgan-mse": ["train.stages=srgan", "stage2.name=srgan-mse", "stage2.content_loss=mse"],
    "srgan-vgg22": ["train.stages=srgan", "stage2.name=srgan-vgg22", "stage2.content_loss=vgg",
                    "vgg.i=2", "vgg.j=2"],
    "srgan-vgg54": ["train.stages=srgan", "stage2.content_loss=vgg", "vgg.i=5", "vgg.j=4"],
}
VARIANTS["adam-cosine"] = ["stage1.optimizer=adam", "stage1.lr=1e-3", "stage1.lr_schedule=cosine",
                           "stage1.lr_min=0.0", "stage1.weight_decay=0.0",
                           "stage1.last_layer_lr_scale=1.0", "stage1.grad_clip_theta=None",
                           "stage1.loss=mse"]
# A faster recipe for the baselines on a CPU (add --set for the batch, patch and epochs):
# Adam at 1e-3 with a cosine decay reaches in minutes what the papers' SGD reaches in days.
"""The paper's five variants, and the baselines' ``adam-cosine`` recipe, as ``--set``
overrides of a preset (``train.py --variant NAME``)."""


def parse_value(text):
    """A ``--set`` value: a python literal (``2e-4``, ``True``, ``None``, ``[1, 2]``, ``'x'``)
    or, when it is not one, the plain string (``vgg``, ``/path/to/file``)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_overrides(cfg, overrides):
    """Apply ``KEY=VALUE`` strings (dotted keys, e.g. ``stage1.lr=2e-4``) to ``cfg`` in place.

    Raises ValueError naming the item for a malformed item or a key that the config does not
    have (typos should not be silently ignored).
    """
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. stage1.lr=2e-4")
        parts = key.strip().split(".")
        node = cfg
        for depth, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                where = ".".join(parts[:depth]) or "the config"
                options = sorted(node) if isinstance(node, dict) else []
                near = difflib.get_close_matches(part, options, n=1)
                hint = f"did you mean {'.'.join(parts[:depth] + near[:1])!r}?" if near else \
                    f"keys: {options}"
                raise ValueError(f"--set {item!r}: {where} has no key {part!r}; {hint}")
            if depth < len(parts) - 1:
                node = node[part]
        value = parse_value(text.strip())
        _check_shape(item, key.strip(), node[parts[-1]], value)
        node[parts[-1]] = value
    return cfg


def _check_shape(item, key, old, new):
    """An override keeps the kind of structure the setting has: a section stays a section
    (``--set data=None`` would drop every data setting) and a list stays a list
    (``--set train.eval_sets=Set5`` would be read letter by letter). ValueError naming it."""
    if isinstance(old, dict) and not isinstance(new, dict):
        example = next(iter(old), "KEY")
        raise ValueError(f"--set {item!r}: {key} is a section of settings, not a value; set "
                         f"one of its keys, e.g. --set {key}.{example}=VALUE")
    if isinstance(old, (list, tuple)) and isinstance(new, str):
        raise ValueError(f"--set {item!r}: {key} is a list; write it as one, e.g. "
                         f"--set \"{key}=[{new!r}]\"")


def get_config(name="paper"):
    """Return a fresh EasyDict of the preset ``name`` (a key of :data:`PRESETS`)."""
    if name not in PRESETS:
        raise ValueError(f"unknown config preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()


# ----------------------------------------------------------------------------------------------
# A run's configuration: preset + variant + overrides, validated; a stage's section of it
# ----------------------------------------------------------------------------------------------

STAGES = ("srresnet", "srgan")
"""Stage names: 'srresnet' = stage 1 (pixel loss, any generator arch), 'srgan' = stage 2."""


def build_config(preset="paper", *, epochs=None, device=None, arch=None, overrides=(),
                 stages=STAGES, variant=None):
    """The config of a run: preset ``preset``, then the paper variant ``variant`` (a key of
    :data:`VARIANTS`), then ``overrides`` (``KEY=VALUE``), then the shortcuts ``epochs`` (of
    the stages in ``stages``), ``device`` and ``arch``."""
    cfg = get_config(preset)
    if variant is not None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; choose one of {sorted(VARIANTS)}")
        apply_overrides(cfg, VARIANTS[variant])
    apply_overrides(cfg, overrides)
    if epochs is not None:
        for stage in stages:
            stage_config(cfg, stage).epochs = int(epochs)
    if device is not None:
        cfg.train.device = device
    if arch is not None:
        cfg.generator.arch = arch
    return validate_config(cfg)   # every numeric setting in its documented range (one line)


def stage_config(cfg, stage):
    """The config section of ``stage``: ``cfg.stage1`` ('srresnet') or ``cfg.stage2`` ('srgan')."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {STAGES}")
    return cfg.stage1 if stage == "srresnet" else cfg.stage2


# ----------------------------------------------------------------------------------------------
# Validation: every numeric setting against its documented range
# ----------------------------------------------------------------------------------------------

_INT, _REAL = "an integer", "a number"
_ANY = object()   # no upper bound

MAX_SEED = 2 ** 32 - 1
"""Largest ``seed``: numpy's seeds are 32-bit (the data workers' and crops' generators)."""

MIN_TIME_BUDGET_S = 1.0
"""Smallest time budget of a stage (less would stop before its first step and call it done)."""

PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*\Z")
"""A file stem that stays inside its folder (stage checkpoint names, data list names)."""

_NAMES = ("stage1.name", "stage2.name", "data.train_list")
"""Settings that become file names under ``--out`` or ``data.lists_dir``: plain names."""

_FOLDERS = ("data.root", "data.lists_dir", "train.out_dir")
"""Settings that are folders: a non-empty path ('' would mean the current folder)."""

DEVICE_PATTERN = re.compile(r"(auto|cpu|mps|cuda(:\d+)?)\Z")
"""Values of ``train.device``."""

# (dotted key, kind, lowest, highest, None allowed); lowest/highest are inclusive, except that
# a float lowest given as ("gt", x) excludes x. The ranges are those of the comments above.
_NUMERIC_RULES = (
    ("scale", _INT, 2, _ANY, False),
    ("seed", _INT, 0, MAX_SEED, False),
    ("data.patch_size", _INT, 1, _ANY, False),        # also a multiple of scale (below)
    ("data.patches_per_image", _INT, 1, _ANY, False),
    ("data.workers", _INT, 0, _ANY, False),
    ("generator.n_blocks", _INT, 1, _ANY, False),
    ("generator.n_channels", _INT, 1, _ANY, False),
    ("discriminator.n_channels", _INT, 1, _ANY, False),
    ("discriminator.n_blocks", _INT, 1, _ANY, False),
    ("discriminator.fc_size", _INT, 1, _ANY, False),
    ("vgg.i", _INT, 1, 5, False),
    ("vgg.j", _INT, 1, 4, False),
    ("vgg.feature_scale", _REAL, ("gt", 0), _ANY, False),
    *((f"{stage}.{key}", kind, low, high, none_ok)         # the settings both stages have
      for stage in ("stage1", "stage2")
      for key, kind, low, high, none_ok in (
          ("epochs", _INT, 1, _ANY, False),
          ("batch_size", _INT, 1, _ANY, False),
          ("lr", _REAL, ("gt", 0), _ANY, False),
          ("lr_min", _REAL, 0, _ANY, False),
          ("lr_decay_at", _REAL, 0, 1, False),
          ("lr_decay_factor", _REAL, ("gt", 0), 1, False),
          ("time_budget_s", _REAL, MIN_TIME_BUDGET_S, _ANY, True),
          ("patch_size", _INT, 1, _ANY, True))),
    ("stage1.momentum", _REAL, 0, ("lt", 1), False),
    ("stage1.weight_decay", _REAL, 0, _ANY, False),
    ("stage1.last_layer_lr_scale", _REAL, ("gt", 0), _ANY, False),
    ("stage1.grad_clip_theta", _REAL, ("gt", 0), _ANY, True),
    ("stage2.adv_weight", _REAL, 0, _ANY, False),
    ("stage2.mse_range_factor", _REAL, ("gt", 0), _ANY, False),
    ("stage2.pixel_weight", _REAL, 0, _ANY, False),
    ("stage2.lr_consistency_weight", _REAL, 0, _ANY, False),
    ("stage2.ema_decay", _REAL, 0, ("lt", 1), True),
    ("stage2.d_lr_scale", _REAL, ("gt", 0), _ANY, False),
    ("stage2.best_lr_psnr_margin", _REAL, 0, _ANY, False),
    ("stage2.d_steps", _INT, 1, _ANY, False),
    ("stage2.collapse_fake", _REAL, 0, 1, True),
    ("stage2.collapse_real", _REAL, 0, 1, True),
    ("train.checkpoint_every", _INT, 1, _ANY, False),
    ("train.val_every", _INT, 1, _ANY, False),
    ("train.sync_every", _INT, 1, _ANY, False),
    ("train.time_budget_s", _REAL, MIN_TIME_BUDGET_S, _ANY, True),
)
"""The numeric settings that :func:`validate_config` checks, with their ranges."""

_CHOICES = (
    ("generator.arch", ("srresnet", "tconv", "srcnn", "fsrcnn", "vdsr")),
    ("stage1.optimizer", ("adam", "sgd")),
    ("stage1.grad_clip_mode", ("norm", "value")),
    ("generator.upsample", ("pixel_shuffle", "nearest")),
    ("stage1.loss", ("mse", "l1", "euclidean", "vgg")),
    ("stage1.lr_schedule", ("constant", "cosine", "step")),
    ("stage2.content_loss", ("vgg", "mse")),
    ("stage2.pixel_loss", ("l1", "mse")),
    ("stage2.lr_schedule", ("constant", "cosine", "step")),
    ("train.stages", ("srresnet", "srgan", "both")),
    ("train.amp", (None, "bf16", "fp16", "auto")),
)
"""Settings with a documented set of values (the comments of the presets above)."""

_BOOLEANS = ("data.augment", "data.skip_small", "generator.batch_norm", "generator.bicubic_skip",
             "train.channels_last", "train.compile", "train.sync_bn", "train.tensorboard")
"""Settings that are True or False (``--set train.compile=1`` is refused, not taken as True)."""

VGG_CONVS_PER_BLOCK = (2, 2, 4, 4, 4)
"""Convolutions before each of VGG19's 5 max-pools: phi_{i,j} needs j <= this[i-1]."""


def _lookup(cfg, key):
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _ANY          # absent in this config (an older or reduced one): not checked
        node = node[part]
    return node


def _bound_text(bound, strict_word):
    if isinstance(bound, tuple):
        return f"{strict_word} {bound[1]}"
    return f"{'>=' if strict_word == '>' else '<='} {bound}"


_LIST_OK = ("stage1.lr_decay_at", "stage2.lr_decay_at")
"""Numeric settings that may also be a non-empty list of such numbers (several lr steps)."""


def _check_number(key, value, kind, low, high, nullable, shown=None):
    """ValueError (one line) unless ``value`` is of ``kind`` and within [low, high]."""
    where = f"setting {key}={value if shown is None else shown!r}"
    fix = f"set it with --set {key}=VALUE"
    is_int = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    is_real = is_int or (isinstance(value, numbers.Real) and not isinstance(value, bool))
    if kind is _INT and not is_int:
        raise ValueError(f"{where}: must be an integer{' or None' if nullable else ''}; {fix}")
    if kind is _REAL and not is_real:
        raise ValueError(f"{where}: must be a number{' or None' if nullable else ''}; {fix}")
    if not math.isfinite(value):
        raise ValueError(f"{where}: must be finite; {fix}")
    too_low = value <= low[1] if isinstance(low, tuple) else value < low
    too_high = high is not _ANY and (value >= high[1] if isinstance(high, tuple) else value > high)
    if too_low or too_high:
        allowed = _bound_text(low, ">")
        if high is not _ANY:
            allowed += " and " + _bound_text(high, "<")
        raise ValueError(f"{where}: out of range, must be {allowed}; {fix}")


def _check_names_and_folders(cfg):
    """The settings that become paths (:data:`_NAMES`, :data:`_FOLDERS`, ``data.cache_dir``,
    ``data.val_list``) and ``train.device``: ValueError naming the setting otherwise."""
    for key in _NAMES + ("data.val_list",):
        value = _lookup(cfg, key)
        if value is _ANY or (value is None and key == "data.val_list"):
            continue
        if not isinstance(value, str) or not PLAIN_NAME.match(value) or ".." in value:
            raise ValueError(f"setting {key}={value!r}: must be a plain name (letters, digits, "
                             f"_ . + -; no folder part): it becomes a file name")
    for key in _FOLDERS + ("data.cache_dir",):
        value = _lookup(cfg, key)
        if value is _ANY or (value is None and key == "data.cache_dir"):
            continue
        if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
            none = " (or None: keep the decoded images in memory)" if key == "data.cache_dir" else ""
            raise ValueError(f"setting {key}={value!r}: must be a folder path{none}; set it with "
                             f"--set {key}=PATH")
    device = _lookup(cfg, "train.device")
    if device is not _ANY and not (isinstance(device, str) and DEVICE_PATTERN.match(device)):
        raise ValueError(f"setting train.device={device!r}: not a device name; use auto, cpu, "
                         f"cuda or cuda:N")


def validate_config(cfg):
    """Check every numeric setting of ``cfg`` (see :data:`_NUMERIC_RULES`: type and documented
    range) and the relations between settings; raise ValueError with ONE line naming the
    setting, the value, the allowed range and what to do. Returns ``cfg``.

    Integers must be ints (a bool or 2.5 is refused; 2.0 is not an int either), numbers ints or
    finite floats; the settings of :data:`_CHOICES` one of their values, those of
    :data:`_BOOLEANS` True or False. Relations: ``data.patch_size`` (and a stage's ``patch_size``) a multiple of
    ``scale``; ``lr_min`` <= ``lr``; phi_{i,j} exists in VGG19 (``vgg.j`` <= the convs of block
    ``vgg.i``); ``stage*.betas`` two numbers in [0, 1).
    """

    for key, kind, low, high, nullable in _NUMERIC_RULES:
        value = _lookup(cfg, key)
        if value is _ANY or (value is None and nullable):
            continue
        if key in _LIST_OK and isinstance(value, (list, tuple)) and value:
            for item in value:                   # e.g. lr_decay_at=[0.25, 0.5, 0.75]
                _check_number(key, item, kind, low, high, False, shown=value)
        else:
            _check_number(key, value, kind, low, high, nullable)

    for key, options in _CHOICES:
        value = _lookup(cfg, key)
        if value is not _ANY and value not in options:
            raise ValueError(f"setting {key}={value!r}: must be one of {list(options)}; set it "
                             f"with --set {key}=VALUE")
    for key in _BOOLEANS:
        value = _lookup(cfg, key)
        if value is not _ANY and not isinstance(value, bool):
            raise ValueError(f"setting {key}={value!r}: must be True or False; set it with "
                             f"--set {key}=True")

    scale = cfg.get("scale", 4)
    for key in ("data.patch_size", "stage1.patch_size", "stage2.patch_size"):
        value = _lookup(cfg, key)
        if value is not _ANY and value is not None and value % scale:
            raise ValueError(f"setting {key}={value}: must be a multiple of scale={scale} (the "
                             f"LR patch is patch_size / scale); use e.g. {value - value % scale or scale}")
    for stage in ("stage1", "stage2"):
        lr, lr_min = _lookup(cfg, f"{stage}.lr"), _lookup(cfg, f"{stage}.lr_min")
        if lr is not _ANY and lr_min is not _ANY and lr_min > lr:
            raise ValueError(f"setting {stage}.lr_min={lr_min}: above {stage}.lr={lr}; "
                             f"make it <= the lr (0 by default)")
        betas = _lookup(cfg, f"{stage}.betas")
        if betas is not _ANY and (
                not isinstance(betas, (tuple, list)) or len(betas) != 2
                or not all(isinstance(b, numbers.Real) and not isinstance(b, bool)
                           and 0 <= b < 1 for b in betas)):
            raise ValueError(f"setting {stage}.betas={betas!r}: must be two numbers in [0, 1), "
                             f"e.g. {stage}.betas=(0.9,0.999)")
    _check_names_and_folders(cfg)
    i, j = _lookup(cfg, "vgg.i"), _lookup(cfg, "vgg.j")
    if i is not _ANY and j is not _ANY and j > VGG_CONVS_PER_BLOCK[i - 1]:
        raise ValueError(f"setting vgg.j={j}: VGG19 block {i} has only "
                         f"{VGG_CONVS_PER_BLOCK[i - 1]} convs; use vgg.j <= "
                         f"{VGG_CONVS_PER_BLOCK[i - 1]} (phi_22 or phi_54 of the paper)")
    return cfg
