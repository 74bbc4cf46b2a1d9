"""Progress of a long step on stderr: a tqdm bar on a terminal, plain lines in a log.

::

    with Progress(total=400, desc="render", unit="step") as bar:
        for ...:
            bar.update()

On a terminal this is a tqdm bar. When stderr is not a terminal (a log file, a pipe, CI),
a bar's carriage returns would garble the log, so a plain line is printed instead every
``interval`` seconds (``METARL_PROGRESS_INTERVAL``, default 10, as the training loop's
lines), and a last one when the step ends if any was printed::

    render 120/400 steps (30%) | elapsed 0:00:10 | ETA 0:00:23

A step shorter than ``interval`` prints nothing (``first_line=True``: one line at the first
update anyway, as the training loop does). ``enabled=True`` shows a bar even off a
terminal, ``False`` nothing at all. The interface is the part of tqdm's the callers use
(``update``, ``set_postfix``, ``reset``, ``close``, ``n``, ``total``).

:func:`sampler_with_progress` counts a sampler's lockstep steps in one, through the ``on_step``
hook of :class:`~metarl.sampling.LocalSampler`; the rollouts are unchanged.
"""

from __future__ import annotations

import inspect
import os
import sys
import time
from collections.abc import Mapping
from typing import IO, Any

#: seconds between the plain lines written when stderr is not a terminal (default 10)
INTERVAL_ENV = "METARL_PROGRESS_INTERVAL"
DEFAULT_INTERVAL_S = 10.0


def interval_s() -> float:
    """Seconds between plain progress lines: ``METARL_PROGRESS_INTERVAL``, else 10."""
    try:
        return max(float(os.environ.get(INTERVAL_ENV, "")), 0.0)
    except ValueError:
        return DEFAULT_INTERVAL_S


def duration(seconds: float) -> str:
    """``H:MM:SS``."""
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Progress:
    """A progress report over ``total`` units (``None``: unknown) on ``stream`` (stderr).

    ``enabled``: ``None`` a bar on a terminal, else plain lines; ``True`` a bar;
    ``False`` nothing. ``interval``: seconds between plain lines (default
    :func:`interval_s`)."""

    def __init__(self, total: int | None = None, desc: str = "", unit: str = "it", *,
                 initial: int = 0, enabled: bool | None = None, interval: float | None = None,
                 stream: IO[str] | None = None, clock=time.monotonic,
                 first_line: bool = False):
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.interval = interval_s() if interval is None else interval
        self.clock = clock
        self.stream = sys.stderr if stream is None else stream
        self.postfix = ""
        self.enabled = enabled is not False
        self.lines = 0  # plain lines printed
        self.first_line = first_line  # a plain line at the first update too, not only later
        self.is_bar = self.enabled and bool(enabled or _is_terminal(self.stream))
        self._bar = None  # the tqdm bar, drawn once the total is known (or at an update)
        self._start = self._last = clock()
        self._start_n = initial
        if total is not None:
            self._draw()

    def _draw(self) -> None:
        if self._bar is None and self.is_bar and self.enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, initial=self.n, desc=self.desc, unit=self.unit,
                             file=self.stream, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.is_bar:
            self._draw()
            if self._bar is not None:
                self._bar.update(n)
        elif self.enabled and ((self.first_line and not self.lines)
                               or self.clock() - self._last >= self.interval):
            self._line()

    def set_postfix(self, values: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        """Figures shown after the count (e.g. ``{"trial_return": "0.52"}``)."""
        values = {**(values or {}), **kwargs}
        self.postfix = " | ".join(f"{key} {value}" for key, value in values.items())
        self._draw()
        if self._bar is not None:
            self._bar.set_postfix(values)

    def reset(self, total: int | None = None) -> None:
        """Start counting again from 0 towards ``total``, and the clock from now."""
        self.total, self.n, self._start_n = total, 0, 0
        self._start = self._last = self.clock()
        if self._bar is not None:
            self._bar.reset(total=total)
        else:
            self._draw()

    def close(self, final: bool = True) -> None:
        """End the report; ``final=False`` (a failed step) prints no closing line."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif final and self.enabled and self.lines and not self.is_bar:
            self._line(final=True)
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _line(self, final: bool = False) -> None:
        now = self.clock()
        self._last = now
        self.lines += 1
        elapsed = now - self._start
        count = f"{self.n}/{self.total} {self.unit}" if self.total else f"{self.n} {self.unit}"
        if self.total:
            count += f" ({100 * self.n // self.total}%)"
        parts = [f"{self.desc} {count}" if self.desc else count]
        if self.postfix:
            parts.append(self.postfix)
        parts.append(f"elapsed {duration(elapsed)}")
        done = self.n - self._start_n
        if final:
            parts.append("done")
        elif self.total and done > 0 and self.n < self.total:
            parts.append(f"ETA {duration(elapsed / done * (self.total - self.n))}")
        print(" | ".join(parts), file=self.stream, flush=True)


def sampler_with_progress(sampler: Any, progress: Progress) -> Any:
    """``sampler``, counting its lockstep steps (all tasks at once) in ``progress``, whose
    ``total`` each ``sample`` call sets to episodes x the env's horizon. Needs the
    ``on_step`` hook of :class:`~metarl.sampling.LocalSampler`; other samplers (Ray) and
    ``None`` are returned as they are. The hook only counts: the rollouts are unchanged."""
    return _ProgressSampler(sampler, progress) if reports_steps(sampler) else sampler


def reports_steps(sampler: Any) -> bool:
    """Whether :func:`sampler_with_progress` can count ``sampler``'s steps."""
    return sampler is not None and "on_step" in inspect.signature(sampler.sample).parameters


class _ProgressSampler:
    def __init__(self, sampler: Any, progress: Progress):
        self._sampler, self._progress = sampler, progress

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sampler, name)

    def sample(self, policy: Any, tasks: Any, **kwargs: Any) -> Any:
        if "on_step" in kwargs:  # the caller's own hook: leave it alone
            return self._sampler.sample(policy, tasks, **kwargs)
        progress = self._progress
        progress.reset(total=kwargs.get("episodes", 1) * self._sampler.env.max_episode_steps)
        rollouts = self._sampler.sample(policy, tasks, **kwargs,
                                        on_step=lambda step, venv: progress.update(1))
        if progress.total is not None and progress.n < progress.total:
            progress.update(progress.total - progress.n)  # episodes that ended early
        return rollouts
