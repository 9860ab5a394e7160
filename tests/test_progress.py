"""Progress lines off a terminal, the stage time estimate and the time-budget note."""
import io

import pytest

import progress
import run_clock


def test_off_a_terminal_a_bar_writes_a_line_per_tenth_and_no_carriage_return():
    out = io.StringIO()                      # not a terminal
    bar = progress.progress_bar(total=1000, desc="srresnet epoch 1", unit="step", file=out)
    assert isinstance(bar, progress.LineProgress)
    for _ in range(1000):
        bar.update()
    bar.close()
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 10 and lines[-1].startswith("srresnet epoch 1: 100%")
    assert "1000/1000" in lines[-1]


def test_an_epoch_bar_counts_the_stage_and_prints_at_its_tenths():
    out = io.StringIO()
    bar = progress.progress_bar(total=100, initial=40, desc="e3", file=out)   # epoch 3 of a stage
    for _ in range(30):
        bar.update()
    bar.close()
    assert [line.split("|")[0].strip() for line in out.getvalue().splitlines()] == [
        "e3:  50%", "e3:  60%", "e3:  70%"]


def test_clock_reports_its_speed_once_after_the_warm_up():
    seen = []
    clock = run_clock.RunClock(total_steps=100, on_estimate=lambda c, rate: seen.append((c.step, rate)))
    clock.start()
    for _ in range(60):
        clock.tick()
    warm, window = run_clock.ESTIMATE_WARMUP, run_clock.ESTIMATE_STEPS
    assert len(seen) == 1 and seen[0][0] == 1 + warm + window and seen[0][1] > 0


def test_budget_note_says_where_a_budget_stopped_a_stage():
    clock = run_clock.RunClock(total_steps=3600, time_budget_s=1e-9).start()
    for _ in range(455):
        clock.tick()
    assert clock.stopped_by_budget()
    assert clock.budget_note("srresnet") == ("srresnet stopped by its time budget (0 s) at step "
                                             "455 of 3,600 (13%)")
    done = run_clock.RunClock(total_steps=10, time_budget_s=3600).start()
    for _ in range(10):
        done.tick()
    assert not done.stopped_by_budget() and done.budget_note("srresnet") is None
    assert run_clock.budget_note("x", {"step": 5, "total_steps": 10, "time_budget_s": None}) is None


def test_a_short_loop_can_ask_for_one_line_when_done():
    out = io.StringIO()                      # e.g. the images of one test set in a notebook
    for _ in progress.progress_bar(range(5), lines=1, desc="SRGAN (demo) Set5", file=out):
        pass
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("SRGAN (demo) Set5: 100%")
    assert "\r" not in out.getvalue() and " 0%|" not in out.getvalue()
    with pytest.raises(ValueError, match="lines=0"):
        progress.progress_bar(range(5), lines=0, file=io.StringIO())
