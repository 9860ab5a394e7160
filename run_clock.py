"""The clock of a training stage (:class:`RunClock`): iterations done and wall time spent, the
schedule's progress in [0, 1] from whichever of the planned steps or the time budget is further,
the speed estimate printed near the start, agreement of the elapsed time between the processes
of a run, and the line saying where a time budget stopped a stage (:func:`budget_note`)."""
import time

from distributed import all_reduce_max, is_distributed

SYNC_EVERY = 25
"""Default steps between two synchronisations of a run (``train.sync_every``): host reads of
the training losses (``solver.LossWatch``) and the agreement of the elapsed time here."""

ESTIMATE_WARMUP, ESTIMATE_STEPS = 5, 20
"""The stage's speed is measured over ESTIMATE_STEPS steps after ESTIMATE_WARMUP warm-up steps
(``RunClock.on_estimate``: the time estimate printed at the start of a stage)."""


class RunClock:
    """Iterations and wall time of a training stage; gives the schedule's progress in [0, 1].

    ``progress() = max(step / total_steps, elapsed / time_budget_s)`` (terms whose denominator is
    None are left out), capped at 1. With a time budget a slow machine ends the stage on time and
    still follows its lr schedule to the end; without one the progress depends only on ``step``,
    so runs are reproducible. ``elapsed_s`` counts the wall time since :meth:`start` plus the
    time of earlier sessions (restored from a checkpoint).

    In a multi-process run with a time budget the progress uses the largest elapsed time over
    the ranks, agreed at :meth:`start` and every ``share_every`` :meth:`tick` (one all-reduce
    each time, not one per step), so every rank sets the same lr and stops at the same step.
    """

    def __init__(self, total_steps=None, time_budget_s=None, step=0, elapsed_s=0.0,
                 share_every=SYNC_EVERY, on_estimate=None):
        self.total_steps = total_steps
        self.time_budget_s = time_budget_s
        self.share_every = max(1, int(share_every))
        self.step = int(step)
        self._elapsed_before = float(elapsed_s)
        self._started = None
        self._shared_elapsed = None    # the agreed elapsed time of a multi-process run
        self.on_estimate = on_estimate  # called once as on_estimate(clock, steps_per_s)
        self._timing = None             # (step, time) where this session's speed is measured from

    def _share(self):
        if self.time_budget_s and is_distributed():
            self._shared_elapsed = all_reduce_max(self.elapsed_s)

    def start(self):
        """Start (or restart) counting wall time."""
        self._started = time.perf_counter()
        self._timing = None
        self._share()
        return self

    @property
    def elapsed_s(self):
        running = time.perf_counter() - self._started if self._started is not None else 0.0
        return self._elapsed_before + running

    def progress(self):
        fractions = [0.0]
        if self.total_steps:
            fractions.append(self.step / self.total_steps)
        if self.time_budget_s:
            elapsed = self.elapsed_s if self._shared_elapsed is None else self._shared_elapsed
            fractions.append(elapsed / self.time_budget_s)
        return min(1.0, max(fractions))

    def finished(self):
        """True once the planned iterations are done or the time budget is spent."""
        return self.progress() >= 1.0

    def tick(self):
        """Count one iteration (and agree the elapsed time every ``share_every`` of them). The
        speed of steps ``ESTIMATE_WARMUP + 1`` to ``ESTIMATE_WARMUP + ESTIMATE_STEPS`` after
        :meth:`start` is passed once to ``on_estimate`` (when set)."""
        self.step += 1
        if self.step % self.share_every == 0:
            self._share()
        if self.on_estimate is not None:
            self._measure()

    def _measure(self):
        now = time.perf_counter()
        if self._timing is None:                 # the first step of this session
            self._timing = [self.step, now, False]   # [its step, a time, reported]
            return
        first, since, reported = self._timing
        done = self.step - first
        if reported:
            return
        if done == ESTIMATE_WARMUP:              # the first steps warm caches up: not timed
            self._timing[1] = now
        elif done == ESTIMATE_WARMUP + ESTIMATE_STEPS:
            self._timing[2] = True
            self.on_estimate(self, ESTIMATE_STEPS / max(now - since, 1e-9))

    def stopped_by_budget(self):
        """True when the time budget ended the stage before its planned steps."""
        return bool(self.time_budget_s and self.total_steps and self.step < self.total_steps
                    and self.finished())

    def budget_note(self, name):
        """One line saying where the time budget stopped stage ``name``, or None when it did
        not: e.g. "srresnet stopped by its time budget (450 s) at step 455 of 3,600 (13%)"."""
        return budget_note(name, self.state_dict()) if self.stopped_by_budget() else None

    def state_dict(self):
        return {"step": self.step, "elapsed_s": self.elapsed_s, "total_steps": self.total_steps,
                "time_budget_s": self.time_budget_s}

    @classmethod
    def from_state_dict(cls, state, total_steps=None, time_budget_s=None, share_every=SYNC_EVERY):
        """A clock continuing ``state``; the plan (``total_steps``, budget) may be changed."""
        return cls(total_steps, time_budget_s, state["step"], state["elapsed_s"], share_every)


def budget_note(name, clock_state):
    """The line of :meth:`RunClock.budget_note` from a clock's ``state_dict()`` (also read back
    from a checkpoint), or None when the stage ran all its planned steps."""
    step, total = clock_state.get("step", 0), clock_state.get("total_steps")
    budget = clock_state.get("time_budget_s")
    if not budget or not total or step >= total:
        return None
    return (f"{name} stopped by its time budget ({budget:.0f} s) at step {step:,} of "
            f"{total:,} ({100 * step / total:.0f}%)")
