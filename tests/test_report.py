"""Tests of report.py: the published table, the results tables and files, the zoom region,
test-set lookup and the figures (smoke-run behaviour is in test_notebooks.py)."""
import csv

import matplotlib
import numpy as np
import pytest

import evaluate
import report

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
           f"{report.MISSING} |" in lines
    set14 = lines.index(f"| Set14 | Bicubic | {report.MISSING} | {report.MISSING} |")
    assert lines[set14 + 1] == "| Set14 | SRGAN | 26.10 | 0.7000 |"
    assert set14 > lines.index(f"| Set5 | {report.PUBLISHED_PREFIX}SRGAN (SRGAN paper) | 29.40 | "
                               f"{report.MISSING} |")
    # published methods without a number on these sets are left out
    only_div2k = report.results_markdown(RESULTS, ["DIV2K_valid"])
    assert "published" not in only_div2k

    csv_path, md_path = report.write_results(RESULTS, sets, tmp_path / "r", notes=["VDSR: x"])
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows[:2]] == ["Bicubic", "SRGAN"]
    assert rows[0]["Set5_psnr"] == "28.4291" and rows[0]["Set14_psnr"] == ""
    assert list(rows[0])[2:8] == [f"Set5_{m}" for m in evaluate.METRICS]
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
    assert lines[3] == f"| Set5 | SRGAN | 29.00 | 0.8400 | 27.50 | 38.10 | 4.200 | {report.MISSING} |"
    # published rows: PSNR / SSIM only
    assert f"| Set5 | {report.PUBLISHED_PREFIX}EDSR | 32.46 | 0.8968 | " + \
        " | ".join([report.MISSING] * 4) + " |" in lines
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
                       f"{report.MISSING} | 3.000 |"
    # the mean over the images that have a value
    assert lines[-1] == "| mean | 31.00 / 0.8000 / 0.3000 / 8.000 | 29.00 / 0.7000 / 0.2000 / " \
                        "4.000 | 4.000 |"
    assert report._title("SRGAN", items[0]["metrics"]["SRGAN"]) == "SRGAN\n28.00 dB / LPIPS 0.1000"
    assert report._title("HR", {"niqe": 3.0}) == "HR\nNIQE 3.000"
    assert report._title("HR", {"niqe": None}) == "HR"


def test_zoom_region_finds_the_detail():
    img = np.full((120, 160, 3), 128, np.uint8)
    rng = np.random.default_rng(0)
    img[70:100, 20:50] = rng.integers(0, 256, (30, 30, 3))     # the only textured area
    top, left, side = report.zoom_region(img)
    assert side == 30
    assert 70 - 2 <= top <= 70 + 2 and 20 - 2 <= left <= 20 + 2
    assert report.zoom_region(img[:, :, 0])[2] == side


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


def test_figures():
    history = [{"epoch": 1, "content_loss": 0.3, "val_psnr": 20.0},
               {"epoch": 2, "content_loss": 0.2, "val_psnr": 21.0}]
    fig = report.plot_history(history, "stage 1")
    assert len(fig.axes) == 2                           # no D panels in stage 1
    gan = [dict(r, adv_loss=0.7, d_loss=1.3, d_real=0.6, d_fake=0.4) for r in history]
    assert len(report.plot_history(gan).axes) == 5
    with pytest.raises(ValueError, match="empty"):
        report.plot_history([])

    hr = np.random.default_rng(1).integers(0, 256, (32, 40, 3), dtype=np.uint8)
    item = {"name": "x", "panels": [("LR", hr), ("HR", hr[:, :, 0])], "metrics": {},
            "region": report.zoom_region(hr), "files": []}
    fig = report.comparison_figure(item)
    top, left, side = item["region"]
    assert len(fig.axes) == 2
    for ax in fig.axes:                                 # each panel has the zoomed inset
        (inset,) = ax.child_axes
        assert inset.get_xlim() == (left - 0.5, left + side - 0.5)
        assert inset.get_ylim() == (top + side - 0.5, top - 0.5)
    matplotlib.pyplot.close("all")
