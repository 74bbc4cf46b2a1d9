"""Means of progress.csv columns over windows of iterations, and where a column first passes
a threshold (the per-window figures quoted in RESULTS.md).

    python experiments/analysis/window_means.py runs/maml-trpo-cheetah-dir --window 20 \
        --columns pre_update_return post_update_return --limit 160 --first-above 170.4
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from metarl.plot import read_progress
from metarl.provenance import SEGMENTS_FILE, read_segments, setting_changes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--columns", nargs="+", default=["pre_update_return",
                                                         "post_update_return"])
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--limit", type=int, help="only the first LIMIT iterations")
    parser.add_argument("--digits", type=int, default=1, help="decimals printed")
    parser.add_argument("--start", type=int, default=0,
                        help="print windows from this iteration on (forks, resumed runs)")
    parser.add_argument("--first-above", type=float,
                        help="report the first iteration whose last column exceeds this")
    args = parser.parse_args()
    progress = read_progress(Path(args.run_dir) / "progress.csv")
    missing = [c for c in args.columns if c not in progress]
    if missing:
        parser.error(f"no column {', '.join(missing)} in {args.run_dir}/progress.csv; "
                     f"valid: {', '.join(progress)}")
    rows = len(progress["iteration"])
    if args.limit is not None:
        rows = min(rows, args.limit)
    steps, times = progress["env_steps_total"][rows - 1], progress["time_s"][:rows]
    longest = int(np.argmax(times))
    print(f"{args.run_dir}: {rows} iterations, {steps / 1e6:.1f}M env steps, "
          f"{times.sum() / 60:.1f} min (median {np.median(times):.1f} s per iteration, "
          f"longest {times[longest]:.1f} s at iteration {longest})")
    for first, changed in setting_changes(read_segments(Path(args.run_dir) / SEGMENTS_FILE)):
        changed.pop("iterations", None)  # each resume's own target
        if changed and first < rows:
            print(f"  settings from iteration {first}: "
                  + ", ".join(f"{key}={value}" for key, value in changed.items()))
    for start in range(args.start, rows, args.window):
        stop = min(start + args.window, rows)
        means = " / ".join(f"{np.nanmean(progress[c][start:stop]):.{args.digits}f}"
                           for c in args.columns)
        print(f"  iterations {start}-{stop - 1}: {means}")
    if args.first_above is not None:
        above = np.flatnonzero(progress[args.columns[-1]][:rows] > args.first_above)
        if len(above):
            i = int(above[0])
            print(f"  first above {args.first_above}: iteration {i} "
                  f"({progress['env_steps_total'][i] / 1e6:.1f}M env steps)")
        else:
            print(f"  never above {args.first_above}")


if __name__ == "__main__":
    main()
