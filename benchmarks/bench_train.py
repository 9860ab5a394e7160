"""Training step time on the CPU: SRResNet with and without channels_last, and one SRGAN step;
on a CUDA machine also the GPU rows (fp32 / bf16 / fp16, NCHW / channels_last, torch.compile;
SRResNet and SRGAN steps through ``solver.train_epoch_*``; patches/s of the whole pipeline with
DataLoader workers).

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

import losses
import models
import pretrained
import runtime
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
    return runtime.to_device(lr, "cpu", channels_last), runtime.to_device(hr, "cpu", channels_last)


def srresnet_step(cfg, channels_last):
    """A closure doing one stage-1 step of ``cfg``'s SRResNet (pixel MSE)."""
    torch.manual_seed(0)
    g = runtime.prepare_model(models.SRResNet(cfg.scale, cfg.generator.n_blocks, cfg.generator.n_channels),
                             "cpu", channels_last)
    opt = torch.optim.Adam(g.parameters(), lr=cfg.stage1.lr, betas=tuple(cfg.stage1.betas))
    loss_fn = losses.PixelLoss("mse")
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
    g = runtime.prepare_model(models.SRResNet(cfg.scale, cfg.generator.n_blocks, cfg.generator.n_channels),
                             "cpu", channels_last)
    d = cfg.discriminator
    disc = runtime.prepare_model(models.Discriminator(d.n_channels, d.n_blocks, d.fc_size), "cpu",
                                channels_last)
    vgg = pretrained.vgg19(2, 2, weights=pretrained.RANDOM_WEIGHTS)
    loss_fn = runtime.prepare_model(losses.VGGLoss(vgg, cfg.vgg.feature_scale), "cpu", channels_last)
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.stage2.lr)
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.stage2.lr)
    batch = [_batch(cfg.scale, channels_last)]

    def step():
        solver.train_epoch_gan(solver.Trainee(g, opt_g), solver.Trainee(disc, opt_d), batch,
                               loss_fn,
                               solver.EpochPlan("cpu", channels_last=channels_last, progress=False),
                               solver.GANSettings(adv_weight=cfg.stage2.adv_weight))
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


GPU_STEPS = 50          # steps per timed GPU epoch (one host read at its end, as in training)
GPU_VARIANTS = [(amp, cl, False) for amp in (None, "bf16", "fp16") for cl in (False, True)]
GPU_VARIANTS += [("bf16", True, True)]      # + torch.compile


def _gpu_epoch(cfg, stage, amp, channels_last, compiled, device):
    """A closure running one ``solver.train_epoch_*`` of GPU_STEPS steps on batches already on
    ``device`` (the GPU time of the steps, the loader excluded); synchronised at the end."""
    torch.manual_seed(0)
    g = runtime.prepare_model(models.SRResNet(cfg.scale, cfg.generator.n_blocks, cfg.generator.n_channels),
                             device, channels_last)
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.stage1.lr)
    lr, hr = _batch(cfg.scale, channels_last)
    batches = [(lr.to(device), hr.to(device))] * GPU_STEPS
    scaler = lambda: runtime.make_grad_scaler(amp, device)
    model = torch.compile(g) if compiled else g
    common = dict(amp=amp, channels_last=channels_last, progress=False)
    if stage == "srresnet":
        loss, s_g = losses.PixelLoss("mse"), scaler()
        run = lambda: solver.train_epoch_mse(solver.Trainee(model, opt_g, s_g), batches, loss,
                                             solver.EpochPlan(device, **common))
    else:
        d = cfg.discriminator
        disc = runtime.prepare_model(models.Discriminator(d.n_channels, d.n_blocks, d.fc_size),
                                    device, channels_last)
        critic = torch.compile(disc) if compiled else disc
        vgg = pretrained.vgg19(2, 2, weights=pretrained.RANDOM_WEIGHTS)
        loss = runtime.prepare_model(losses.VGGLoss(vgg, cfg.vgg.feature_scale), device, channels_last)
        opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.stage2.lr)
        s_g, s_d = scaler(), scaler()
        run = lambda: solver.train_epoch_gan(solver.Trainee(model, opt_g, s_g),
                                             solver.Trainee(critic, opt_d, s_d), batches, loss,
                                             solver.EpochPlan(device, **common))

    def epoch():
        run()
        torch.cuda.synchronize(device)
    return epoch


def _pipeline_patches_per_s(cfg, device, workers=4):
    """Patches/s of stage 1 with the real DataLoader (``workers`` processes, pinned memory) on
    the demo training list, bf16 + channels_last; None when the demo data is not built."""
    import datasets
    demo = get_config("demo")
    path = datasets.list_path(demo, demo.data.train_list)
    if not path.is_file():
        return None
    ds = datasets.TrainDataset.from_list(path, scale=cfg.scale, patch_size=LR_PATCH * cfg.scale,
                                         patches_per_image=50, progress=False)
    loader = datasets.make_train_loader(ds, BATCH, workers, 0, pin_memory=True)
    torch.manual_seed(0)
    g = runtime.prepare_model(models.SRResNet(cfg.scale, cfg.generator.n_blocks, cfg.generator.n_channels),
                             device, True)
    opt = torch.optim.Adam(g.parameters(), lr=cfg.stage1.lr)
    solver.train_epoch_mse(solver.Trainee(g, opt), loader, losses.PixelLoss("mse"),
                           solver.EpochPlan(device, amp="bf16", channels_last=True, progress=False))          # warm-up (workers start)
    m = solver.train_epoch_mse(solver.Trainee(g, opt), loader, losses.PixelLoss("mse"),
                               solver.EpochPlan(device, amp="bf16", channels_last=True,
                                                progress=False))
    return m["patches_per_s"], m["data_wait"], workers


def gpu_section(cfg):
    """The GPU rows as markdown (a note saying they were not measured without CUDA)."""
    lines = ["## Training step time (GPU)", ""]
    if not torch.cuda.is_available():
        return "\n".join(lines + [
            "Not measured: no CUDA device on the machine that ran this benchmark. On a CUDA machine "
            "this section times SRResNet and SRGAN steps (fp32 / bf16 / fp16 x NCHW / "
            "channels_last, and bf16 + channels_last + torch.compile) and the patches/s of the "
            "whole pipeline with DataLoader workers.", ""])
    device = torch.device("cuda", torch.cuda.current_device())
    torch.backends.cudnn.benchmark = True
    steps = {(stage, *v): _gpu_epoch(cfg, stage, *v, device)
             for stage in ("srresnet", "srgan") for v in GPU_VARIANTS}
    t = time_interleaved(steps, repeats=3, warmup=1)
    lines += [f"{torch.cuda.get_device_name(device)}; batch {BATCH} of {LR_PATCH}x{LR_PATCH} LR "
              f"patches, the paper's models; {GPU_STEPS} steps per timed epoch through "
              f"`solver.train_epoch_*` (losses read once per epoch), median of 3 epochs.", "",
              "| step | amp | memory format | compile | ms/step | patches/s |",
              "|---|---|---|---|---:|---:|"]
    for (stage, amp, cl, compiled), sec in t.items():
        ms = 1000 * sec / GPU_STEPS
        lines.append(f"| {stage} | {amp or 'fp32'} | {'channels_last' if cl else 'NCHW'} | "
                     f"{'yes' if compiled else 'no'} | {ms:.1f} | {BATCH * 1000 / ms:.0f} |")
    pipeline = _pipeline_patches_per_s(cfg, device)
    if pipeline is not None:
        pps, wait, workers = pipeline
        lines += ["", f"Whole pipeline (demo photos, {workers} DataLoader workers, pinned memory, "
                      f"bf16 + channels_last SRResNet): {pps:.0f} patches/s, "
                      f"{100 * wait:.0f}% of the epoch waiting for data."]
    return "\n".join(lines) + "\n"


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
                  f"(both channels_last).", ""]
    return "\n".join(lines) + "\n" + gpu_section(cfg)


if __name__ == "__main__":
    print(run())
