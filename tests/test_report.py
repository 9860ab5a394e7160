"""Tests of report.py (the published table, the results tables and files, test-set lookup,
the methods and where they come from) and figures.py (the zoom region, the training curves and
the comparison figure); smoke-run behaviour is in test_notebooks.py."""
import csv
from pathlib import Path

import matplotlib
import numpy as np
import pytest

import checkpoint
import config
import evaluate
import figures
import metrics
import models
import report
import tables
import train
import train_log

matplotlib.use("Agg")

RESULTS = {"Bicubic": {"Set5": {"psnr": 28.4291, "ssim": 0.81113, "images": 5}},
           "SRGAN": {"Set5": {"psnr": 29.0, "ssim": 0.84, "images": 5},
                     "Set14": {"psnr": 26.1, "ssim": 0.70, "images": 14}}}


def _row(text, first_cell):
    """Cells after the first of the Markdown table row of ../shared/data/README.md starting so."""
    line = next(l for l in text.splitlines() if l.startswith(f"| {first_cell}"))
    return [c.strip() for c in line.strip().strip("|").split("|")][1:]


def test_published_table_matches_the_shared_readme(shared_data):
    text = (shared_data / "README.md").read_text()
    header = _row(text, "method |")
    assert header == ["Set5", "Set14", "B100", "Urban100", "Manga109"]
    for name, first in (("Bicubic", "Bicubic ("), ("SRCNN", "SRCNN |"), ("VDSR", "VDSR |"),
                        ("EDSR", "EDSR |")):
        want = {s: tuple(map(float, c.split(" / "))) for s, c in zip(header, _row(text, first)) if c}
        assert report.PUBLISHED_X4[name] == want, name


def test_results_markdown_and_csv(tmp_path):
    sets = ["Set5", "Set14"]
    md = report.results_markdown(RESULTS, sets)
    lines = md.strip().splitlines()
    assert lines[0] == "| set | method | PSNR (dB) ↑ | SSIM ↑ |"
    # per set: this run's methods, then the published ones below them
    assert lines[2] == "| Set5 | Bicubic | 28.43 | 0.8111 |"
    assert lines[3] == "| Set5 | SRGAN | 29.00 | 0.8400 |"
    assert lines[4] == f"| Set5 | {report.PUBLISHED_PREFIX}Bicubic | 28.42 | 0.8104 |"
    assert f"| Set5 | {report.PUBLISHED_PREFIX}SRResNet (SRGAN paper) | 32.05 | " \
           f"{tables.NO_VALUE} |" in lines
    set14 = lines.index(f"| Set14 | Bicubic | {tables.NO_VALUE} | {tables.NO_VALUE} |")
    assert lines[set14 + 1] == "| Set14 | SRGAN | 26.10 | 0.7000 |"
    assert set14 > lines.index(f"| Set5 | {report.PUBLISHED_PREFIX}SRGAN (SRGAN paper) | 29.40 | "
                               f"{tables.NO_VALUE} |")
    # published methods without a number on these sets are left out
    only_div2k = report.results_markdown(RESULTS, ["DIV2K_valid"])
    assert "published" not in only_div2k

    csv_path, md_path = report.write_results(RESULTS, sets, tmp_path / "r", notes=["VDSR: x"])
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows[:2]] == ["Bicubic", "SRGAN"]
    assert rows[0]["Set5_psnr"] == "28.4291" and rows[0]["Set14_psnr"] == ""
    assert list(rows[0])[:3] == ["method", "source", "file"]
    assert list(rows[0])[3:9] == [f"Set5_{m}" for m in metrics.METRICS]
    assert rows[0]["Set5_lpips"] == "" and rows[0]["Set5_niqe"] == ""
    edsr = next(r for r in rows if r["method"] == report.PUBLISHED_PREFIX + "EDSR")
    assert edsr["source"] == "published" and float(edsr["Set14_ssim"]) == 0.7876
    text = md_path.read_text()
    assert md in text and "- VDSR: x" in text and report.PUBLISHED_SOURCE in text
    assert report.METRICS_LEGEND in text
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["results.csv", "results.md"]


FULL = {"Bicubic": {"Set5": {"psnr": 28.43, "ssim": 0.8111, "psnr_rgb": 26.69,
                              "lr_psnr": 37.30, "niqe": 8.44, "lpips": 0.3512, "images": 5}},
        "SRGAN": {"Set5": {"psnr": 29.0, "ssim": 0.84, "psnr_rgb": 27.5, "lr_psnr": 38.1,
                           "niqe": 4.2, "images": 5,
                           "unavailable": {"lpips": "no weights"},
                           "skipped": {"niqe": {"tiny": "too small"}}}}}


def test_new_metric_columns_show_the_better_direction(tmp_path):
    md = report.results_markdown(FULL, ["Set5"])
    lines = md.strip().splitlines()
    assert lines[0] == ("| set | method | PSNR (dB) ↑ | SSIM ↑ | PSNR-RGB (dB) ↑ | LR-PSNR (dB) ↑ "
                        "| NIQE ↓ | LPIPS ↓ |")
    assert lines[2] == "| Set5 | Bicubic | 28.43 | 0.8111 | 26.69 | 37.30 | 8.440 | 0.3512 |"
    assert lines[3] == f"| Set5 | SRGAN | 29.00 | 0.8400 | 27.50 | 38.10 | 4.200 | {tables.NO_VALUE} |"
    # published rows: PSNR / SSIM only
    assert f"| Set5 | {report.PUBLISHED_PREFIX}EDSR | 32.46 | 0.8968 | " + \
        " | ".join([tables.NO_VALUE] * 4) + " |" in lines
    assert report.metric_notes(FULL) == ["LPIPS not computed: no weights",
                                         "SRGAN, NIQE on Set5: 1 image(s) left out of the mean: "
                                         "tiny (too small)"]
    csv_path, _ = report.write_results(FULL, ["Set5"], tmp_path)
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["Set5_lpips"] == "0.351200" and rows[1]["Set5_lpips"] == ""
    assert rows[1]["Set5_lr_psnr"] == "38.1000" and rows[1]["Set5_niqe"] == "4.2000"


def test_comparison_table_and_titles():
    items = [{"name": "a", "hr_niqe": 3.0,
              "metrics": {"Bicubic": {"psnr": 30.0, "ssim": 0.9, "lpips": 0.2, "niqe": 7.0},
                          "SRGAN": {"psnr": 28.0, "ssim": 0.8, "lpips": 0.1, "niqe": None}}},
             {"name": "b", "hr_niqe": 5.0,
              "metrics": {"Bicubic": {"psnr": 32.0, "ssim": 0.7, "lpips": 0.4, "niqe": 9.0},
                          "SRGAN": {"psnr": 30.0, "ssim": 0.6, "lpips": 0.3, "niqe": 4.0}}}]
    lines = report.comparison_markdown(items).strip().splitlines()
    what = "PSNR (dB) ↑ / SSIM ↑ / LPIPS ↓ / NIQE ↓"
    assert lines[0] == f"| image | Bicubic: {what} | SRGAN: {what} | HR: NIQE ↓ |"
    assert lines[2] == f"| a | 30.00 / 0.9000 / 0.2000 / 7.000 | 28.00 / 0.8000 / 0.1000 / " \
                       f"{tables.NO_VALUE} | 3.000 |"
    # the mean over the images that have a value
    assert lines[-1] == "| mean | 31.00 / 0.8000 / 0.3000 / 8.000 | 29.00 / 0.7000 / 0.2000 / " \
                        "4.000 | 4.000 |"
    assert figures._title("SRGAN", items[0]["metrics"]["SRGAN"]) == "SRGAN\n28.00 dB / LPIPS 0.1000"
    assert figures._title("HR", {"niqe": 3.0}) == "HR\nNIQE 3.000"
    assert figures._title("HR", {"niqe": None}) == "HR"


def test_zoom_region_finds_the_detail():
    img = np.full((120, 160, 3), 128, np.uint8)
    rng = np.random.default_rng(0)
    img[70:100, 20:50] = rng.integers(0, 256, (30, 30, 3))     # the only textured area
    top, left, side = figures.zoom_region(img)
    assert side == 30
    assert 70 - 2 <= top <= 70 + 2 and 20 - 2 <= left <= 20 + 2
    assert figures.zoom_region(img[:, :, 0])[2] == side


def test_find_sets_and_missing_notes(tmp_path):
    (tmp_path / "a" / "Set5" / "HR").mkdir(parents=True)
    (tmp_path / "b" / "Set14" / "HR").mkdir(parents=True)
    found, missing = report.find_sets(["Set5", "Set14", "B100"],
                                      [tmp_path / "a", tmp_path / "b"])
    assert found == {"Set5": str(tmp_path / "a"), "Set14": str(tmp_path / "b")}
    assert missing == ["B100"]
    notes = report.missing_notes({"VDSR": "runs/vdsr.pth"}, missing)
    assert notes == ["VDSR: no checkpoint at runs/vdsr.pth (not evaluated)",
                     "B100: test set not found (not evaluated)"]
    with pytest.raises(FileNotFoundError, match="B100"):
        report.open_test_set("B100", [tmp_path / "a"])


def test_a_set_not_found_names_the_roots_and_the_parameter(tmp_path):
    roots = [str(tmp_path / "data"), str(tmp_path / "shared" / "benchmark")]
    with pytest.raises(FileNotFoundError) as e:
        report.open_test_set("Set14", roots)
    message = str(e.value)
    assert "\n" not in message                                   # one line
    assert "'Set14'" in message and str(roots) in message and "set data_roots" in message
    # a notebook that finds none of its sets stops (an empty table is no result); some: listed
    with pytest.raises(FileNotFoundError, match=r"none of the test sets .* set data_roots"):
        report.find_sets(["Set5", "Set14"], roots, required=True)
    (tmp_path / "data" / "Set5" / "HR").mkdir(parents=True)
    assert report.find_sets(["Set5", "Set14"], roots, required=True) == (
        {"Set5": roots[0]}, ["Set14"])
    assert report.missing_notes({}, ["Set14"], roots) == [
        f"Set14: test set not found under data_roots {roots} (not evaluated)"]


def _panels(fig):
    """The curve panels of a training-curve figure (the spare grid cells have no title)."""
    return [ax for ax in fig.axes if ax.get_title()]


def test_figures():
    history = [{"epoch": 1, "content_loss": 0.3, "val_psnr": 20.0},
               {"epoch": 2, "content_loss": 0.2, "val_psnr": 21.0}]
    fig = figures.plot_history(history, "stage 1")
    assert len(_panels(fig)) == 2                       # no D panels in stage 1
    gan = [dict(r, adv_loss=0.7, d_loss=1.3, d_real=0.6, d_fake=0.4) for r in history]
    assert len(_panels(figures.plot_history(gan))) == 5
    with pytest.raises(ValueError, match="empty"):
        figures.plot_history([])

    hr = np.random.default_rng(1).integers(0, 256, (32, 40, 3), dtype=np.uint8)
    item = {"name": "x", "lr": hr[::report.SCALE, ::report.SCALE], "hr": hr,
            "sr": {"gray": hr[:, :, 0]}, "metrics": {"gray": {"psnr": 30.0, "ssim": 0.9}},
            "hr_niqe": None, "files": []}
    fig = figures.comparison_figure(item)
    top, left, side = figures.zoom_region(hr)
    assert [ax.get_title() for ax in fig.axes] == ["LR (nearest)", "gray\n30.00 dB", "HR"]
    assert fig.axes[0].get_images()[0].get_array().shape == hr.shape    # LR at the HR size
    for ax in fig.axes:                                 # each panel has the zoomed inset
        (inset,) = ax.child_axes
        assert inset.get_xlim() == (left - 0.5, left + side - 0.5)
        assert inset.get_ylim() == (top + side - 0.5, top - 0.5)
    matplotlib.pyplot.close("all")


# ----------------------------------------------------------------------------------------------
# Training curves ready for a report page
# ----------------------------------------------------------------------------------------------

STAGE2 = [{"epoch": 0, "step": 0, "val_psnr": 29.505, "val_lr_psnr": 51.4, "val_niqe": 6.93}] + [
    {"epoch": e, "step": 150 * e, "content_loss": 0.3 - 0.01 * e, "adv_loss": 5.5, "d_loss": 0.02,
     "d_real": 0.99, "d_fake": 0.01, "val_psnr": 29.5 - 0.001 * e, "val_lr_psnr": 52.0,
     "val_niqe": 6.9 - 0.03 * e} for e in range(1, 6)]
"""A stage-2 history (epoch 0 = the starting generator) whose PSNR moves by 5 mdB: matplotlib
would label such an axis with an offset (``+2.949e1``)."""


def test_stage2_curves_fit_a_page_with_plain_ticks_and_the_bicubic_level():
    fig = figures.plot_history(STAGE2, "t", reference={"val_psnr": 29.38, "val_lr_psnr": 40.7,
                                                      "val_niqe": 7.68})
    fig.canvas.draw()
    panels = _panels(fig)
    assert len(panels) == 7
    width, _ = fig.get_size_inches()
    assert width <= figures.CURVE_FIGURE_MAX_INCHES <= 12
    # two rows of four cells (the eighth holds the legend)
    rows = sorted({round(ax.get_position().y0, 3) for ax in panels})
    cols = sorted({round(ax.get_position().x0, 3) for ax in panels})
    assert len(rows) == 2 and len(cols) == figures.CURVE_PANELS_PER_ROW == 4
    for ax in panels:                               # no offset or scientific notation
        assert ax.yaxis.get_offset_text().get_text() == ""
        assert all("e" not in t.get_text() for t in ax.get_yticklabels())
    psnr = next(ax for ax in panels if ax.get_title().startswith("validation PSNR"))
    assert any(t.get_text().startswith("29.49") or t.get_text().startswith("29.50")
               for t in psnr.get_yticklabels())
    # the bicubic line on the PSNR and NIQE panels, not on LR-PSNR (it would flatten the curve)
    def flat_lines(ax):
        return [line.get_ydata()[0] for line in ax.get_lines()
                if len(set(line.get_ydata())) == 1 and len(line.get_ydata()) == 2]
    by_title = {ax.get_title().split(" (")[0].split(" ↑")[0].split(" ↓")[0]: ax for ax in panels}
    assert flat_lines(by_title["validation PSNR-Y"]) == [29.38]
    assert flat_lines(by_title["validation NIQE"]) == [7.68]
    assert flat_lines(by_title["validation LR-PSNR"]) == []
    legend = [t.get_text() for ax in fig.axes if ax.get_legend() and not ax.get_title()
              for t in ax.get_legend().get_texts()]
    assert legend == ["bicubic, validation set\n(PSNR-Y 29.38 dB, NIQE 7.68)"]
    matplotlib.pyplot.close("all")


def test_a_partial_last_epoch_is_drawn_hollow_at_its_fraction():
    history = [dict(r) for r in STAGE2]
    history[-1]["step"] = 150 * 4 + 60                      # a time budget stopped epoch 5
    x, partial = figures.epoch_positions(history)            # 150 steps per epoch, from the log
    assert partial == (5, 60, 150) and x[-1] == pytest.approx(4.4) and x[:5] == [0, 1, 2, 3, 4]
    assert figures.epoch_positions(STAGE2)[1] is None        # full epochs
    assert figures.epoch_positions(history[:2])[1] is None   # one epoch: unknown from the log...
    one = [{"epoch": 1, "step": 40, "val_psnr": 30.0}]
    assert figures.epoch_positions(one, steps_per_epoch=150)[1] == (0, 40, 150)  # ...given: known
    with pytest.raises(ValueError, match="steps_per_epoch"):
        figures.epoch_positions(one, steps_per_epoch=0)

    fig = figures.plot_history(history, "t")
    hollow = [line for ax in _panels(fig) for line in ax.get_lines()
              if line.get_markerfacecolor() in ("white", (1.0, 1.0, 1.0, 1.0))]
    assert len(hollow) == 8                  # one per curve (D(real) and D(fake) share a panel)
    assert all(line.get_xdata()[0] == pytest.approx(4.4) for line in hollow)
    legend = [t.get_text() for ax in fig.axes for t in
              (ax.get_legend().get_texts() if ax.get_legend() else [])]
    assert f"{figures.PARTIAL_EPOCH_LABEL}\n(60 of 150 steps)" in legend
    # stage 1 (two panels, no spare cell): the legend goes under the panels
    fig = figures.plot_history([{"epoch": e, "step": 10 * e, "content_loss": 0.1, "val_psnr": 30}
                               for e in (1, 2)] + [{"epoch": 3, "step": 25, "content_loss": 0.1,
                                                    "val_psnr": 30}])
    assert len(_panels(fig)) == 2 and fig.legends
    assert f"{figures.PARTIAL_EPOCH_LABEL}\n(5 of 10 steps)" in [
        t.get_text() for t in fig.legends[0].get_texts()]
    matplotlib.pyplot.close("all")


def test_stage_figure_reads_the_run_and_names_file_recipe_and_steps(tiny_data, tmp_path):
    cfg = tiny_data.config(epochs=2)                # smoke preset: 3 steps per epoch
    out = tmp_path / "run"
    train.run_stage(cfg, "srresnet", out, progress=False)
    # as if a time budget had stopped it one step into epoch 2: the log and checkpoint say so
    ckpt = checkpoint.load_checkpoint(out / "srresnet.pth")
    log = figures.load_history(out / "srresnet_log.csv")
    log[-1]["step"] = ckpt["step"] = ckpt["clock"]["step"] = 4
    train_log.write_log(out / "srresnet_log.csv", log)
    checkpoint.save_checkpoint(out / "srresnet.pth", ckpt)
    bicubic = evaluate.bicubic_validation(cfg)
    assert set(bicubic) == {f"val_{m}" for m in evaluate.VALIDATION_METRICS}
    want = evaluate.evaluate("bicubic", tiny_data.root, ["tiny_val"], progress=False,
                             metrics=["psnr"])["tiny_val"]["psnr"]
    assert bicubic["val_psnr"] == pytest.approx(want)
    fig = figures.stage_figure(out, "srresnet", bicubic)
    title = fig._suptitle.get_text().replace("\n", " ")
    assert str(out / "srresnet.pth") in title and "(smoke recipe)" in title
    assert "L1 loss, 4 steps" in title
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert f"{figures.PARTIAL_EPOCH_LABEL}\n(1 of 3 steps)" in legend
    assert any(t.startswith("bicubic, validation set") for t in legend)
    with pytest.raises(FileNotFoundError, match="srgan_log.csv"):
        figures.stage_figure(out, "srgan")
    matplotlib.pyplot.close("all")


# ----------------------------------------------------------------------------------------------
# Where each model comes from: recipe, file, the shipped reference models
# ----------------------------------------------------------------------------------------------

def _checkpoint(path, preset, stage="srresnet", overrides=()):
    """Write an (untrained) checkpoint of ``preset``'s generator as ``train.py`` would: stage
    ``stage``, its config recorded. Returns the path."""
    cfg = config.build_config(preset, overrides=list(overrides))
    kwargs = train.generator_kwargs(cfg)
    generator = models.build_generator(cfg.generator.arch, scale=cfg.scale, **kwargs)
    checkpoint.save_checkpoint(path, checkpoint.make_checkpoint(
        stage=train.checkpoint_name(cfg, stage), arch=cfg.generator.arch, arch_kwargs=kwargs,
        scale=cfg.scale, generator=generator, epoch=3, step=30, config=cfg, history=[]))
    return path


def test_recipe_of_names_the_preset_or_variant_a_checkpoint_was_made_with():
    for name in config.PRESETS:
        cfg = config.get_config(name)
        for stage in (cfg.generator.arch, cfg.stage2.name):
            assert checkpoint.recipe_of({"config": cfg, "stage": stage}) == name, (name, stage)
    vgg22 = config.apply_overrides(config.get_config("paper"), config.VARIANTS["srgan-vgg22"])
    assert checkpoint.recipe_of({"config": vgg22, "stage": "srgan-vgg22"}) == "paper srgan-vgg22"
    # stage 1 of that run is the paper's SRResNet: stage-2 settings do not count for it
    assert checkpoint.recipe_of({"config": vgg22, "stage": "srresnet"}) == "paper"
    odd = config.apply_overrides(config.get_config("demo"), ["generator.n_blocks=3"])
    assert checkpoint.recipe_of({"config": odd, "stage": "srresnet"}) == checkpoint.CUSTOM_RECIPE
    # a file with only arch / arch_kwargs (no config recorded): the generator tells
    demo = config.get_config("demo")
    kwargs = {k: demo.generator[k] for k in ("n_blocks", "n_channels", "batch_norm", "upsample",
                                             "bicubic_skip")}
    assert checkpoint.recipe_of({"arch": "srresnet", "arch_kwargs": kwargs}) == "demo"
    # the shipped files (export.py: exported_from) are the reference recipe's
    for path in config.REFERENCE_WEIGHTS.values():
        ckpt = checkpoint.load_checkpoint(path)
        assert checkpoint.recipe_of(ckpt) == "reference"
        assert report.source_of(path, ckpt) == report.REFERENCE_SOURCE


def test_missing_srresnet_and_srgan_fall_back_to_the_reference_models(tmp_path):
    demo = _checkpoint(tmp_path / "demo" / "srresnet.pth", "demo")
    asked = {"SRResNet": str(demo), "SRGAN": str(tmp_path / "paper" / "srgan.pth"),
             "VDSR": str(tmp_path / "vdsr.pth")}
    checkpoints, note = report.reference_fallback(asked)
    assert list(checkpoints) == list(asked)
    assert checkpoints["SRResNet"] == str(demo) and checkpoints["VDSR"] == asked["VDSR"]
    assert Path(checkpoints["SRGAN"]) == config.REFERENCE_WEIGHTS["SRGAN"]
    assert "\n" not in note and asked["SRGAN"] in note and "'SRGAN (reference)'" in note
    assert "'SRResNet (reference)'" not in note and "VDSR" not in note
    assert report.reference_fallback({"SRResNet": str(demo)}) == ({"SRResNet": str(demo)}, None)

    methods, missing = report.load_methods(checkpoints)
    # every label names its source: the demo recipe read from the file, the shipped model
    assert list(methods) == ["Bicubic", "SRResNet (demo)", "SRGAN (reference)"]
    assert missing == {"VDSR": asked["VDSR"]}
    assert [m.tag for m in methods.values()] == ["bicubic", "srresnet", "srgan"]
    assert report.method_files(methods) == {"SRResNet (demo)": str(demo),
                                            "SRGAN (reference)": checkpoints["SRGAN"]}
    table = report.methods_markdown(methods)
    assert f"| SRResNet (demo) | {demo} | demo | srresnet | 3 | 30 | trained |" in table
    assert f"| SRGAN (reference) | {checkpoints['SRGAN']} | reference | srgan | " in table
    assert "| EMA |" in table                          # the shipped SRGAN holds EMA weights
    # the results tables name the file of each row
    results = {label: {"Set5": {"psnr": 30.0, "ssim": 0.9}} for label in methods}
    md = report.results_markdown(results, ["Set5"], files=report.method_files(methods))
    lines = md.splitlines()
    assert lines[0] == "| set | method | file | PSNR (dB) ↑ | SSIM ↑ |"
    assert lines[2] == f"| Set5 | Bicubic | {tables.NO_VALUE} | 30.00 | 0.9000 |"
    assert lines[3] == f"| Set5 | SRResNet (demo) | {demo} | 30.00 | 0.9000 |"
    assert f"| Set5 | {report.PUBLISHED_PREFIX}SRGAN (SRGAN paper) | {tables.NO_VALUE} | 29.40 |" in md
    rows = list(csv.DictReader(report.results_csv(results, ["Set5"],
                                                  files=report.method_files(methods)).splitlines()))
    assert [r["file"] for r in rows[:3]] == ["", str(demo), checkpoints["SRGAN"]]
    # no label of this run claims the paper: only the published rows do
    assert not any("paper" in label for label in methods)


def test_image_file_tags_never_hold_the_mos_separator():
    assert report.file_tag("SRGAN") == "srgan"
    assert report.file_tag("SRGAN best") == "srgan-best"
    assert report.file_tag("SRGAN (x_y)") == "srgan-x-y"
    assert "_" not in report.file_tag("a_b c")
