"""Training step time on the CPU: SRResNet with and without channels_last, and one SRGAN step.

A step is forward + backward + Adam update on one batch of random patches, through the same
loss functions as ``solver.py``. Every variant is timed in the same process, alternating between
the variants repeat by repeat so that background load hits them alike; the table shows medians.
"""
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # the project root

import models
import solver
from config import get_config

BATCH = 16          # the paper's batch size
LR_PATCH = 24       # LR patch side (HR 96x96, the paper's patch)
REPEATS = 5         # timed steps per variant (after WARMUP untimed ones)
WARMUP = 2


def _batch(scale, channels_last, seed=0):
    g = torch.Generator().manual_seed(seed)
    lr = torch.rand(BATCH, 3, LR_PATCH, LR_PATCH, generator=g)
    hr = torch.rand(BATCH, 3, LR_PATCH * scale, LR_PATCH * scale, generator=g)
    return solver.to_device(lr, "cpu", channels_last), solver.to_device(hr, "cpu", channels_last)


def srresnet_step(cfg, channels_last):
    """A closure doing one stage-1 step of ``cfg``'s SRResNet (pixel MSE)."""
    torch.manual_seed(0)
    g = solver.prepare_model(models.SRResNet(cfg.scale, cfg.generator.n_blocks, cfg.generator.n_channels),
                             "cpu", channels_last)
    opt = torch.optim.Adam(g.parameters(), lr=cfg.stage1.lr, betas=tuple(cfg.stage1.betas))
    loss_fn = solver.PixelLoss("mse")
    lr, hr = _batch(cfg.scale, channels_last)

    def step():
        loss = loss_fn(g(lr), hr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def srgan_step(cfg, channels_last):
    """A closure doing one stage-2 step: D step + G step with VGG22 content loss (random VGG
    weights: the time does not depend on the values)."""
    torch.manual_seed(0)
    g = solver.prepare_model(models.SRResNet(cfg.scale, cfg.generator.n_blocks, cfg.generator.n_channels),
                             "cpu", channels_last)
    d = cfg.discriminator
    disc = solver.prepare_model(models.Discriminator(d.n_channels, d.n_blocks, d.fc_size), "cpu",
                                channels_last)
    vgg = models.TruncatedVGG19(2, 2, weights=models.RANDOM_WEIGHTS)
    loss_fn = solver.prepare_model(solver.VGGLoss(vgg, cfg.vgg.feature_scale), "cpu", channels_last)
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.stage2.lr)
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.stage2.lr)
    batch = [_batch(cfg.scale, channels_last)]

    def step():
        solver.train_epoch_gan(g, disc, batch, opt_g, opt_d, loss_fn, "cpu",
                               adv_weight=cfg.stage2.adv_weight, channels_last=channels_last,
                               progress=False)
    return step


def time_interleaved(steps, repeats=REPEATS, warmup=WARMUP):
    """Median seconds of each closure in ``steps`` (dict name -> fn), run in turns."""
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, fn in steps.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def run():
    cfg, demo = get_config("paper"), get_config("demo")
    steps = {
        "srresnet": srresnet_step(cfg, channels_last=False),
        "srresnet_cl": srresnet_step(cfg, channels_last=True),
        "demo": srresnet_step(demo, channels_last=False),
        "demo_cl": srresnet_step(demo, channels_last=True),
        "srgan": srgan_step(cfg, channels_last=False),
        "srgan_cl": srgan_step(cfg, channels_last=True),
    }
    t = time_interleaved(steps)
    hr = LR_PATCH * cfg.scale
    small = f"demo SRResNet ({demo.generator.n_blocks} x {demo.generator.n_channels})"
    rows = [
        ("SRResNet (stage 1, MSE)", "NCHW", t["srresnet"], 1.0),
        ("SRResNet (stage 1, MSE)", "channels_last", t["srresnet_cl"], t["srresnet"] / t["srresnet_cl"]),
        (small, "NCHW", t["demo"], 1.0),
        (small, "channels_last", t["demo_cl"], t["demo"] / t["demo_cl"]),
        ("SRGAN (stage 2: D step + G step, VGG22)", "NCHW", t["srgan"], 1.0),
        ("SRGAN (stage 2: D step + G step, VGG22)", "channels_last", t["srgan_cl"], t["srgan"] / t["srgan_cl"]),
    ]
    lines = [
        "## Training step time (CPU)",
        "",
        f"One optimiser step (forward + backward + Adam) of the paper's models on a batch of "
        f"{BATCH} random {LR_PATCH}x{LR_PATCH} LR / {hr}x{hr} HR patches, "
        f"{torch.get_num_threads()} torch threads: full SRResNet ({cfg.generator.n_blocks} blocks x "
        f"{cfg.generator.n_channels} channels) and the demo preset's reduced one; the SRGAN step adds the paper's discriminator and the "
        f"VGG22 content loss (random VGG weights: same time as the ImageNet ones). Median of "
        f"{REPEATS} steps after {WARMUP} warm-up steps, all variants timed in turns in one process.",
        "",
        "| step | memory format | median s/step | speed-up vs NCHW |",
        "|---|---|---:|---:|",
    ]
    lines += [f"| {name} | {fmt} | {sec:.2f} | {ratio:.2f}x |" for name, fmt, sec, ratio in rows]
    lines += ["", f"An SRGAN step costs {t['srgan_cl'] / t['srresnet_cl']:.1f}x an SRResNet step "
                  f"(both channels_last)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run())
