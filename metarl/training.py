"""The Trainer: outer loop, logging, evaluation, atomic checkpoints and exact resume.

::

    for it in range(start, iterations):
        rng = np.random.default_rng([seed, it])     # per-iteration stream: resume is exact
        metrics = agent.train_iteration(sampler, rng)
        log(metrics)                                 # progress.csv, TensorBoard, progress bar
        if due: save checkpoint                      # checkpoints/iter_NNNNNN.pt, atomically

The Trainer knows nothing agent-specific. A run killed at any point resumes from its last
checkpoint: rows of ``progress.csv`` written after that checkpoint are dropped and the
iterations are re-run with the same random streams, so the metrics equal an uninterrupted
run's. SIGTERM, or SIGINT where the process does not ignore it, stops the run once the
iteration in flight is logged and saved (:class:`TrainingStopped`), so nothing is re-run;
a second signal acts at once as usual.
"""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metarl.agent import Agent
from metarl.checkpoints import atomic_write_text, load_checkpoint, save_checkpoint
from metarl.config import RunConfig, dump_yaml
from metarl.envs_api import MetaEnv
from metarl.evaluation import EvalRequest, eval_summary
from metarl.provenance import (
    SEGMENTS_FILE,
    machine_record,
    read_segments,
    truncate_segments,
    write_segments,
)
from metarl.sampling import Sampler
from metarl.stopping import TrainingStopped, stop_requests

CHECKPOINT_DIR = "checkpoints"


def checkpoint_path(run_dir: Path, iteration: int) -> Path:
    return run_dir / CHECKPOINT_DIR / f"iter_{iteration:06d}.pt"


def latest_checkpoint(run_dir: Path) -> Path | None:
    files = sorted((run_dir / CHECKPOINT_DIR).glob("iter_*.pt"))
    return files[-1] if files else None


class ProgressLog:
    """``progress.csv``: rows appended and flushed each iteration; the header grows when a
    row brings new keys (see :meth:`append`)."""

    def __init__(self, path: Path):
        self.path = path
        self.fields: list[str] | None = None
        if path.exists():
            with path.open() as handle:
                self.fields = next(csv.reader(handle), None)

    def _widen(self, new_fields: list[str]) -> None:
        with self.path.open() as handle:
            rows = list(csv.DictReader(handle))
        self.fields = [*(self.fields or []), *new_fields]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, self.fields, restval="")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.path, buffer.getvalue())

    def truncate_after(self, iteration: int) -> None:
        """Drop rows of iterations ``> iteration`` (written after the last checkpoint)."""
        if not self.path.exists():
            return
        with self.path.open() as handle:
            rows = list(csv.DictReader(handle))
        kept = [r for r in rows if int(r["iteration"]) <= iteration]
        buffer = io.StringIO()
        if self.fields:
            writer = csv.DictWriter(buffer, self.fields)
            writer.writeheader()
            writer.writerows(kept)
        atomic_write_text(self.path, buffer.getvalue())

    def append(self, row: dict[str, Any]) -> None:
        """Append ``row``; keys not seen before (e.g. evaluation metrics, which only some
        iterations have) widen the header, rewriting the file once, atomically."""
        if self.fields is None:
            self.fields = list(row)
            with self.path.open("w", newline="") as handle:
                csv.DictWriter(handle, self.fields).writeheader()
        elif new := [key for key in row if key not in self.fields]:
            self._widen(new)
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, self.fields, extrasaction="ignore").writerow(
                {k: row.get(k, "") for k in self.fields})


class Trainer:
    """Drives ``agent.train_iteration`` and owns everything around it."""

    def __init__(self, run_dir: str | Path, config: RunConfig, agent: Agent, env: MetaEnv,
                 sampler: Sampler, eval_sampler: Sampler | None = None):
        self.run_dir = Path(run_dir)
        self.config, self.agent, self.env = config, agent, env
        self.sampler = sampler
        self.eval_sampler = eval_sampler or sampler
        self.start_iteration = 0
        self.log = ProgressLog(self.run_dir / "progress.csv")

    # ------------------------------------------------------------------ state
    def save(self, iteration: int) -> Path:
        path = checkpoint_path(self.run_dir, iteration)
        save_checkpoint(path, {"agent": self.agent.state_dict(), "iteration": iteration,
                               "torch_rng": torch.get_rng_state()})
        keep = self.config.trainer.keep_checkpoints
        if keep > 0:  # only after the new one is safely on disk
            for old in sorted((self.run_dir / CHECKPOINT_DIR).glob("iter_*.pt"))[:-keep]:
                old.unlink(missing_ok=True)
        return path

    def resume(self) -> int:
        """Load the latest checkpoint (if any); returns the next iteration to run."""
        path = latest_checkpoint(self.run_dir)
        if path is not None:
            state = load_checkpoint(path)
            self.agent.load_state_dict(state["agent"])
            torch.set_rng_state(state["torch_rng"])
            self.start_iteration = int(state["iteration"])
        self.log.truncate_after(self.start_iteration - 1)
        truncate_segments(self.run_dir / SEGMENTS_FILE, self.start_iteration)
        return self.start_iteration

    # ------------------------------------------------------------------- loop
    def train(self, progress: bool | None = None) -> dict[str, Any]:
        cfg = self.config.trainer
        self.run_dir.mkdir(parents=True, exist_ok=True)
        dump_yaml(self.config, self.run_dir / "config.yaml")
        writer = _tensorboard(self.run_dir)
        bar = _progress_bar(cfg.iterations, self.start_iteration, progress)
        env_steps = self._env_steps_so_far()
        started = time.time()
        self._record_segment()
        with stop_requests() as stops:
            for it in range(self.start_iteration, cfg.iterations):
                env_steps = self._iteration(it, env_steps, writer, bar)
                if stops:
                    if not self._checkpoint_due(it):  # else _iteration has just saved it
                        self.save(it + 1)
                    self._close(writer, bar)
                    raise TrainingStopped(stops[0], it + 1)
        self._close(writer, bar)
        if self.start_iteration >= cfg.iterations and latest_checkpoint(self.run_dir) is None:
            self.save(cfg.iterations)
        return {"iterations": cfg.iterations, "wall_time_s": time.time() - started}

    def _record_segment(self) -> None:
        """Append this stretch of the run (first iteration, start time, machine, settings)
        to ``segments.jsonl``."""
        path = self.run_dir / SEGMENTS_FILE
        record = {"first_iteration": self.start_iteration,
                  "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  **machine_record(), "settings": self.config.to_flat()}
        write_segments(path, [*read_segments(path), record])

    def _iteration(self, it: int, env_steps: int, writer: Any, bar: Any) -> int:
        """Run, log and (when due) save iteration ``it``; returns the env steps so far."""
        cfg = self.config.trainer
        tick = time.time()
        rng = np.random.default_rng([cfg.seed, it])
        metrics = self.agent.train_iteration(self.sampler, rng)
        env_steps += int(metrics.get("env_steps", 0))
        row = {"iteration": it, "env_steps_total": env_steps,
               "time_s": round(time.time() - tick, 4), **metrics}
        if cfg.eval_every and (it + 1) % cfg.eval_every == 0 and it + 1 < cfg.iterations:
            row.update(self._eval_metrics())
        self.log.append(row)
        for key, value in row.items():
            if isinstance(value, (int, float)) and math.isfinite(value) and writer:
                writer.add_scalar(key, value, it)
        if self._checkpoint_due(it):
            self.save(it + 1)
        if bar is not None:
            bar.update(1)
            bar.set_postfix({k: f"{v:.3g}" for k, v in metrics.items()
                             if k in ("trial_return", "mean_return", "loss", "accuracy")})
        return env_steps

    def _checkpoint_due(self, it: int) -> bool:
        cfg = self.config.trainer
        return (it + 1) % cfg.checkpoint_every == 0 or it + 1 == cfg.iterations

    @staticmethod
    def _close(writer: Any, bar: Any) -> None:
        if bar is not None:
            bar.close()
        if writer:
            writer.close()

    def _eval_metrics(self) -> dict[str, float]:
        cfg = self.config.trainer
        result = self.agent.evaluate(self.env, self.eval_sampler,
                                     EvalRequest(num_tasks=cfg.eval_tasks, seed=cfg.seed))
        return eval_summary(result)

    def _env_steps_so_far(self) -> int:
        path = self.log.path
        if not path.exists():
            return 0
        with path.open() as handle:
            rows = list(csv.DictReader(handle))
        return int(float(rows[-1]["env_steps_total"])) if rows else 0


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency, but keep training without it
        return None
    return SummaryWriter(log_dir=str(run_dir / "tb"))


def _progress_bar(total: int, initial: int, enabled: bool | None):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="it",
                disable=None if enabled is None else not enabled, dynamic_ncols=True)
