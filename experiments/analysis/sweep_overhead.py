"""What a sweep's trials spent beyond their iterations: Tune's ``time_total_s`` (the trial
function from its start to its last report) against the sum of the run's ``progress.csv``
``time_s``, per trial of a ``metarl sweep`` dir (the figure in docs/clusters.md).

    python experiments/analysis/sweep_overhead.py runs/sweeps/rl2-bandit [...]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from metarl.sweep import RUNS_DIR, TUNE_TRIAL_PREFIX


def trial_overhead(sweep: Path, label: str) -> dict[str, float]:
    """Tune's total and the iterations' sum (s) of the trial ``label``, and their share."""
    lines = (sweep / f"{TUNE_TRIAL_PREFIX}{label}" / "result.json").read_text().splitlines()
    total = json.loads(lines[-1])["time_total_s"]
    with (sweep / RUNS_DIR / label / "progress.csv").open(newline="") as handle:
        iterations = sum(float(row["time_s"]) for row in csv.DictReader(handle))
    return {"total_s": round(total, 1), "iterations_s": round(iterations, 1),
            "overhead_s": round(total - iterations, 1),
            "overhead_fraction": round((total - iterations) / total, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="+", type=Path)
    for sweep in parser.parse_args().sweeps:
        for run in sorted((sweep / RUNS_DIR).iterdir()):
            print(json.dumps({"sweep": str(sweep), "trial": run.name,
                              **trial_overhead(sweep, run.name)}))


if __name__ == "__main__":
    main()
