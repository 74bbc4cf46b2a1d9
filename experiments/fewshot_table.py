"""Markdown tables from the JSON lines of experiments/fewshot.py.

    python experiments/fewshot_table.py experiments/fewshot-sinusoid.jsonl
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def main(path: str) -> None:
    rows = [json.loads(line) for line in open(path)]
    cells: dict[tuple, dict[str, str]] = defaultdict(dict)
    columns: list[str] = []
    for row in rows:
        metric = row["metric"]
        if metric == "mse":
            column = f"K={row['shots']}"
            key = (row["learner"], row.get("eval_inner_steps"))
            value = f"{row[metric]:.3f} ± {row['ci95']:.3f}"
        else:
            column = f"{row['ways']}-way {row['shots']}-shot"
            key = (row["learner"], row.get("eval_inner_steps"))
            value = f"{100 * row[metric]:.1f} ± {100 * row['ci95']:.1f}"
        if column not in columns:
            columns.append(column)
        cells[key][column] = value
        cells[key].setdefault("_seconds", [])
        cells[key]["_seconds"].append(row["train_seconds"])
    print("| learner | inner steps at test | " + " | ".join(columns) + " | training s |")
    print("|---|---|" + "---|" * (len(columns) + 1))
    for (learner, steps), values in cells.items():
        seconds = sorted(set(values.pop("_seconds")))
        print(f"| {learner} | {steps if steps is not None else '–'} | "
              + " | ".join(values.get(c, "–") for c in columns)
              + f" | {', '.join(f'{s:.0f}' for s in seconds)} |")


if __name__ == "__main__":
    main(sys.argv[1])
