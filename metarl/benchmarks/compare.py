"""Flag benchmark ratios that fell below their recorded values.

``metarl bench NAME --compare FILE`` runs benchmark ``NAME`` with the options recorded in
``FILE`` (options given on the command line win), prints its JSON as usual, then compares
each ratio recorded for it in ``FILE`` with the one just measured: one line on stderr per
ratio more than ``tolerance`` (default 30%) worse than recorded, and exit status 1 if any.
Only ratios are compared — a speed-up against a reference loop or library timed in the same
run — because absolute rates move with the machine and its load; the ratios are what the
results page (experiments/RESULTS.md) quotes. The reference file::

    {"tolerance": 0.3,
     "benchmarks": {
       "envs": {"options": {}, "ratios": {"envs/tabular-mdp/speedup": 72.0}},
       "sac-update": {"ratios": {"ratio": 1.07}, "lower_is_better": ["ratio"]}}}

A ratio is named by its path in the benchmark's JSON (keys joined by ``/``). Most ratios are
speed-ups (higher is better: flagged when ``measured < recorded * (1 - tolerance)``); those
listed in ``lower_is_better`` are cost ratios (flagged when the speed they stand for drops
as much: ``measured > recorded / (1 - tolerance)``). A recorded ratio missing from (or
``null`` in) the new results is noted on stderr but not flagged (e.g. an optional comparison
library not installed).

    for b in envs sampler inner-loop sac-update rl2-update; do
        metarl bench $b --compare experiments/bench-reference.json || echo "$b regressed"
    done
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from typing import TextIO

DEFAULT_TOLERANCE = 0.3


@dataclass(frozen=True)
class Check:
    """One recorded ratio against the measured one."""

    benchmark: str
    path: str
    recorded: float
    measured: float | None
    lower_is_better: bool
    tolerance: float

    @property
    def threshold(self) -> float:
        """The worst value still accepted."""
        if self.lower_is_better:
            return self.recorded / (1 - self.tolerance)
        return self.recorded * (1 - self.tolerance)

    @property
    def regressed(self) -> bool:
        if self.measured is None:
            return False
        if self.lower_is_better:
            return self.measured > self.threshold
        return self.measured < self.threshold

    def line(self) -> str:
        if self.measured is None:
            return (f"metarl bench {self.benchmark}: {self.path} not measured (recorded "
                    f"{self.recorded:.3g}); not compared")
        change = self.measured / self.recorded - 1
        verdict = "REGRESSION" if self.regressed else "ok"
        better = "lower" if self.lower_is_better else "higher"
        return (f"metarl bench {self.benchmark}: {verdict} {self.path} = {self.measured:.3g}, "
                f"recorded {self.recorded:.3g} ({change:+.0%}; {better} is better, limit "
                f"{self.threshold:.3g})")


def load_reference(path: str, benchmark: str) -> dict:
    """The entry of ``benchmark`` in the reference file ``path``, with its ``tolerance``
    filled in; ``ValueError`` with a one-line message when the file or entry is unusable."""
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as exc:
        raise ValueError(f"cannot read --compare file {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"--compare file {path} is not JSON: {exc}") from None
    entries = data.get("benchmarks") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        raise ValueError(f"--compare file {path} has no \"benchmarks\" object")
    entry = entries.get(benchmark)
    if not isinstance(entry, dict) or not isinstance(entry.get("ratios"), dict):
        raise ValueError(f"--compare file {path} records no ratios for benchmark "
                         f"{benchmark!r} (it has: {', '.join(sorted(entries)) or 'none'})")
    tolerance = entry.get("tolerance", data.get("tolerance", DEFAULT_TOLERANCE))
    if not isinstance(tolerance, (int, float)) or not 0 < tolerance < 1:
        raise ValueError(f"--compare file {path}: tolerance must be in (0, 1), got "
                         f"{tolerance!r}")
    for name, value in entry["ratios"].items():
        if not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"--compare file {path}: {benchmark} ratio {name} must be a "
                             f"positive number, got {value!r}")
    options = entry.get("options", {})
    if not isinstance(options, dict):
        raise ValueError(f"--compare file {path}: {benchmark} options must be an object")
    return {**entry, "options": options, "tolerance": float(tolerance)}


def lookup(result: dict, path: str) -> float | None:
    """The number at ``path`` (keys joined by ``/``) in ``result``, or None."""
    value: object = result
    for key in path.split("/"):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def checks(benchmark: str, result: dict, entry: dict) -> list[Check]:
    """Every recorded ratio of ``entry`` (see :func:`load_reference`) against ``result``."""
    tolerance = float(entry.get("tolerance", DEFAULT_TOLERANCE))
    lower = set(entry.get("lower_is_better", ()))
    return [Check(benchmark, path, float(recorded), lookup(result, path), path in lower,
                  tolerance)
            for path, recorded in entry["ratios"].items()]


def report(benchmark: str, result: dict, entry: dict, source: str,
           out: TextIO | None = None) -> int:
    """Print one line per regression (and per ratio not measured) and a summary on ``out``
    (stderr); return 1 if any ratio regressed, else 0."""
    out = sys.stderr if out is None else out
    done = checks(benchmark, result, entry)
    flagged = [c for c in done if c.regressed]
    for check in done:
        if check.regressed or check.measured is None:
            print(check.line(), file=out)
    compared = sum(c.measured is not None for c in done)
    print(f"metarl bench {benchmark}: {len(flagged)} of {compared} ratios more than "
          f"{entry.get('tolerance', DEFAULT_TOLERANCE):.0%} worse than {source}", file=out)
    return 1 if flagged else 0
