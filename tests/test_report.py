"""Tests of report.py: the published table, the results tables and files, the zoom region,
test-set lookup and the figures (smoke-run behaviour is in test_notebooks.py)."""
import csv
import re

import matplotlib
import numpy as np
import pytest

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
    assert lines[0] == "| method | Set5 PSNR / SSIM | Set14 PSNR / SSIM |"
    assert lines[2] == f"| Bicubic | 28.43 / 0.8111 | {report.MISSING} |"
    assert lines[3] == "| SRGAN | 29.00 / 0.8400 | 26.10 / 0.7000 |"
    assert f"| {report.PUBLISHED_PREFIX}SRResNet (SRGAN paper) | 32.05 / {report.MISSING} | " \
           f"28.49 / {report.MISSING} |" in lines
    # published methods without a number on these sets are left out
    only_div2k = report.results_markdown(RESULTS, ["DIV2K_valid"])
    assert "published" not in only_div2k

    csv_path, md_path = report.write_results(RESULTS, sets, tmp_path / "r", notes=["VDSR: x"])
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows[:2]] == ["Bicubic", "SRGAN"]
    assert rows[0]["Set5_psnr"] == "28.4291" and rows[0]["Set14_psnr"] == ""
    edsr = next(r for r in rows if r["method"] == report.PUBLISHED_PREFIX + "EDSR")
    assert edsr["source"] == "published" and float(edsr["Set14_ssim"]) == 0.7876
    text = md_path.read_text()
    assert md in text and "- VDSR: x" in text and report.PUBLISHED_SOURCE in text
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["results.csv", "results.md"]


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
