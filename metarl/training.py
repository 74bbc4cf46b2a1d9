"""The Trainer: outer loop, logging, evaluation, atomic checkpoints and exact resume.

::

    for it in range(start, iterations):
        rng = np.random.default_rng([seed, it])     # per-iteration stream: resume is exact
        metrics = agent.train_iteration(sampler, rng)
        log(metrics)                                 # progress.csv, TensorBoard, progress bar
        if due: save checkpoint                      # checkpoints/iter_NNNNNN.pt, atomically

The Trainer knows nothing agent-specific. A run killed at any point resumes from its last
checkpoint: rows of ``progress.csv`` written after that checkpoint (and a row cut short) are
dropped, TensorBoard hides their events (``purge_step``), and the iterations are re-run
with the same random streams, so the metrics equal an uninterrupted run's. SIGTERM, or
SIGINT where the process does not ignore it, stops the run once the iteration in flight is
logged and saved (:class:`TrainingStopped`), so nothing is re-run; a second signal acts at
once as usual. After every iteration the metrics and the agent's parameters, gradients and
buffers are checked: a non-finite one stops the run before anything of that iteration is
saved (:class:`TrainingDiverged`). A full disk stops it with :class:`DiskFull`, the
checkpoints intact.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metarl.agent import Agent
from metarl.checkpoints import (
    atomic_write_text,
    full_disk_names,
    load_checkpoint,
    save_checkpoint,
)
from metarl.config import RunConfig, dump_yaml
from metarl.envs_api import MetaEnv
from metarl.evaluation import EvalRequest, eval_summary
from metarl.progress import Progress
from metarl.provenance import (
    SEGMENTS_FILE,
    machine_record,
    read_segments,
    truncate_segments,
    write_segments,
)
from metarl.run_lock import RunDirError
from metarl.sampling import Sampler
from metarl.stopping import (
    NO_SPACE,
    DiskFull,
    TrainingDiverged,
    TrainingStopped,
    stop_requests,
)

CHECKPOINT_DIR = "checkpoints"
#: a run's files besides its checkpoints; a fresh start moves a dead run's aside
RUN_FILES = ("config.yaml", "progress.csv", SEGMENTS_FILE, "eval.json", "tb")
#: where a fresh start puts the files of a run that stopped before its first checkpoint
ABANDONED_PREFIX = "abandoned-"
#: the metrics progress displays show, the first present (else the last ``*_return``)
HEADLINE_METRICS = ("trial_return", "mean_return", "accuracy", "loss")


def checkpoint_path(run_dir: Path, iteration: int) -> Path:
    return run_dir / CHECKPOINT_DIR / f"iter_{iteration:06d}.pt"


def latest_checkpoint(run_dir: Path) -> Path | None:
    files = sorted((run_dir / CHECKPOINT_DIR).glob("iter_*.pt"))
    return files[-1] if files else None


class ProgressLog:
    """``progress.csv``: rows appended and flushed each iteration; the header grows when a
    row brings new keys (see :meth:`append`). A last line cut short (a kill or a full disk
    in the middle of a write) is not a row: :meth:`read` skips it and :meth:`truncate_after`
    drops it."""

    def __init__(self, path: Path):
        self.path = path
        self.fields: list[str] | None = self.read()[0]

    def read(self) -> tuple[list[str] | None, list[dict[str, str]]]:
        """The header (None without one) and the complete rows. A line without its newline
        (the end of a write cut short), a row of another width than the header and a row
        whose ``iteration`` is not an integer are not rows."""
        if not self.path.exists():
            return None, []
        with self.path.open(newline="", errors="replace") as handle:
            text = handle.read()
        lines = list(csv.reader(io.StringIO(text[:text.rfind("\n") + 1])))
        if not lines:
            return None, []
        fields, rows = lines[0], []
        for values in lines[1:]:
            if len(values) == len(fields):
                row = dict(zip(fields, values, strict=True))
                if row.get("iteration", "").strip().lstrip("-").isdigit():
                    rows.append(row)
        return fields, rows

    def rows(self) -> list[dict[str, str]]:
        return self.read()[1]

    def _rewrite(self, fields: list[str] | None, rows: list[dict[str, Any]]) -> None:
        buffer = io.StringIO()
        if fields:
            writer = csv.DictWriter(buffer, fields, restval="", extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        atomic_write_text(self.path, buffer.getvalue())
        self.fields = fields or None

    def _widen(self, new_fields: list[str]) -> None:
        self._rewrite([*(self.fields or []), *new_fields], self.rows())

    def truncate_after(self, iteration: int) -> None:
        """Drop rows of iterations ``> iteration`` (written after the last checkpoint), and
        a line cut short."""
        if not self.path.exists():
            return
        fields, rows = self.read()
        self._rewrite(fields, [r for r in rows if int(r["iteration"]) <= iteration])

    def append(self, row: dict[str, Any]) -> None:
        """Append ``row``; keys not seen before (e.g. evaluation metrics, which only some
        iterations have) widen the header, rewriting the file once, atomically."""
        with full_disk_names(self.path):
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
    """Drives ``agent.train_iteration`` and owns everything around it.

    Call :meth:`resume` first to continue the run in ``run_dir``; without it, :meth:`train`
    starts afresh and refuses a run dir that holds checkpoints (:class:`RunDirError`). The
    CLI holds :func:`metarl.run_lock.run_lock` on ``run_dir`` around both.

    ``on_iteration(row, checkpoint)``, if given, is called after each iteration is logged
    (and saved when due) with its progress row and the checkpoint written for it (``None``
    when none was): ``metarl sweep`` reports to Ray Tune through it."""

    def __init__(self, run_dir: str | Path, config: RunConfig, agent: Agent, env: MetaEnv,
                 sampler: Sampler, eval_sampler: Sampler | None = None,
                 on_iteration: Callable[[dict[str, Any], Path | None], None] | None = None):
        self.run_dir = Path(run_dir)
        self.config, self.agent, self.env = config, agent, env
        self.sampler = sampler
        self.eval_sampler = eval_sampler or sampler
        self.start_iteration = 0
        self.resumed = False
        self.log = ProgressLog(self.run_dir / "progress.csv")
        self.on_iteration = on_iteration

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
        with self._full_disk_is_one_line():
            path = latest_checkpoint(self.run_dir)
            if path is not None:
                state = load_checkpoint(path)
                self.agent.load_state_dict(state["agent"])
                torch.set_rng_state(state["torch_rng"])
                self.start_iteration = int(state["iteration"])
            self.resumed = True
            _remove_partial_writes(self.run_dir)
            self.log.truncate_after(self.start_iteration - 1)
            truncate_segments(self.run_dir / SEGMENTS_FILE, self.start_iteration)
        return self.start_iteration

    def _start_afresh(self) -> None:
        """A new run: refuse a run dir with checkpoints; move the files of a run that
        stopped before its first checkpoint (``progress.csv``, ``tb/``, ...) into
        ``abandoned-<UTC time>/``, so that nothing is appended to them."""
        if latest_checkpoint(self.run_dir) is not None:
            raise RunDirError(f"run dir {str(self.run_dir)!r} already holds checkpoints; use "
                              f"--resume to continue it or choose another --run-dir")
        _remove_partial_writes(self.run_dir)
        present = [self.run_dir / name for name in RUN_FILES if (self.run_dir / name).exists()]
        if not [p for p in present if p.name != "config.yaml"]:
            return  # nothing was run here (a config.yaml alone is rewritten)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.run_dir / f"{ABANDONED_PREFIX}{stamp}"
        suffix = 1
        while target.exists():
            suffix += 1
            target = self.run_dir / f"{ABANDONED_PREFIX}{stamp}-{suffix}"
        target.mkdir()
        for path in present:
            path.rename(target / path.name)
        self.log = ProgressLog(self.log.path)
        print(f"metarl: {str(self.run_dir)!r} held a run that stopped before its first "
              f"checkpoint; its files are now in {str(target)!r}", file=sys.stderr)

    # ------------------------------------------------------------------- loop
    def train(self, progress: bool | None = None) -> dict[str, Any]:
        """Run the iterations left. ``progress``: None shows a progress bar on a terminal
        and plain lines otherwise (:class:`_TrainingProgress`), True always the bar, False
        nothing. Raises :class:`TrainingStopped` (a signal), :class:`TrainingDiverged` (a
        non-finite loss, gradient or parameter) or :class:`DiskFull`."""
        cfg = self.config.trainer
        with self._full_disk_is_one_line():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if not self.resumed:
                self._start_afresh()
            dump_yaml(self.config, self.run_dir / "config.yaml")
            env_steps = self._env_steps_so_far()
            started = time.time()
            self._record_segment()
            writer = _tensorboard(self.run_dir, self.start_iteration if self.resumed else None)
            bar = _TrainingProgress(cfg.iterations, self.start_iteration, env_steps, progress)
            try:
                with stop_requests() as stops:
                    for it in range(self.start_iteration, cfg.iterations):
                        env_steps = self._iteration(it, env_steps, writer, bar)
                        if stops:
                            if not self._checkpoint_due(it):  # else _iteration saved it
                                self.save(it + 1)
                            raise TrainingStopped(stops[0], it + 1)
                if (self.start_iteration >= cfg.iterations
                        and latest_checkpoint(self.run_dir) is None):
                    self.save(cfg.iterations)
            except BaseException:
                self._close(writer, bar, failed=True)
                raise
            self._close(writer, bar)
        return {"iterations": cfg.iterations, "wall_time_s": time.time() - started}

    def _record_segment(self) -> None:
        """Append this stretch of the run (first iteration, start time, machine, settings)
        to ``segments.jsonl``."""
        path = self.run_dir / SEGMENTS_FILE
        record = {"first_iteration": self.start_iteration,
                  "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  **machine_record(), "settings": self.config.to_flat()}
        write_segments(path, [*read_segments(path), record])

    def _iteration(self, it: int, env_steps: int, writer: Any,
                   bar: _TrainingProgress) -> int:
        """Run, log, check (:func:`nonfinite_quantity`) and, when due, save iteration
        ``it``; returns the env steps so far."""
        cfg = self.config.trainer
        tick = time.time()
        rng = np.random.default_rng([cfg.seed, it])
        try:
            metrics = self.agent.train_iteration(self.sampler, rng)
        except FloatingPointError as exc:  # an agent's own check of a non-finite quantity
            raise TrainingDiverged(it, str(exc), latest_checkpoint(self.run_dir)) from None
        env_steps += int(metrics.get("env_steps", 0))
        row = {"iteration": it, "env_steps_total": env_steps,
               "time_s": round(time.time() - tick, 4), **metrics}
        bad = nonfinite_metric(metrics) or nonfinite_quantity(self.agent)
        if (not bad and cfg.eval_every and (it + 1) % cfg.eval_every == 0
                and it + 1 < cfg.iterations):
            row.update(self._eval_metrics())
        self.log.append(row)  # a diverged iteration's row too: it shows what went wrong
        if writer:
            with full_disk_names(self.run_dir / "tb"):
                for key, value in row.items():
                    if isinstance(value, (int, float)) and math.isfinite(value):
                        writer.add_scalar(key, value, it)
        if bad:  # nothing of this iteration is saved: the last checkpoint is finite
            raise TrainingDiverged(it, bad, latest_checkpoint(self.run_dir))
        saved = self.save(it + 1) if self._checkpoint_due(it) else None
        if self.on_iteration is not None:
            self.on_iteration(row, saved)
        bar.update(it + 1, metrics, env_steps)
        return env_steps

    def _checkpoint_due(self, it: int) -> bool:
        cfg = self.config.trainer
        return (it + 1) % cfg.checkpoint_every == 0 or it + 1 == cfg.iterations

    @staticmethod
    def _close(writer: Any, bar: _TrainingProgress, failed: bool = False) -> None:
        """Close the progress display and TensorBoard; after a failure, quietly (a full disk
        fails the TensorBoard flush too, and the first error is the one to report)."""
        bar.close(final=not failed)
        if writer:
            try:
                writer.close()
            except OSError:
                if not failed:
                    raise

    @contextlib.contextmanager
    def _full_disk_is_one_line(self) -> Iterator[None]:
        """A full disk (``ENOSPC``, ``EDQUOT``) anywhere in the block raises :class:`DiskFull`
        naming the file and the last checkpoint (intact: checkpoints are atomic). The
        TensorBoard writer's thread hits it first sometimes: its traceback is silenced, the
        writer raises the error again in this thread."""
        previous_hook = threading.excepthook

        def quiet_full_disk(args: Any) -> None:
            if not (isinstance(args.exc_value, OSError) and args.exc_value.errno in NO_SPACE):
                previous_hook(args)

        threading.excepthook = quiet_full_disk
        try:
            yield
        except OSError as exc:
            if exc.errno not in NO_SPACE:
                raise
            raise DiskFull(exc.filename or self.run_dir, os.strerror(exc.errno).lower(),
                           latest_checkpoint(self.run_dir)) from exc
        finally:
            threading.excepthook = previous_hook

    def _eval_metrics(self) -> dict[str, float]:
        cfg = self.config.trainer
        result = self.agent.evaluate(self.env, self.eval_sampler,
                                     EvalRequest(num_tasks=cfg.eval_tasks, seed=cfg.seed))
        return eval_summary(result)

    def _env_steps_so_far(self) -> int:
        rows = self.log.rows()
        return int(float(rows[-1]["env_steps_total"] or 0)) if rows else 0


def _remove_partial_writes(run_dir: Path) -> None:
    """Remove the temporary files of atomic writes cut short (by a kill or a full disk):
    ``checkpoints/.iter_NNNNNN.*.pt`` and ``.progress.*.csv`` and the like. Only call it
    holding the run dir's lock."""
    for pattern in (f"{CHECKPOINT_DIR}/.iter_*.pt",
                    *(f".{Path(name).stem}.*{Path(name).suffix}" for name in RUN_FILES
                      if Path(name).suffix)):
        for path in run_dir.glob(pattern):
            path.unlink(missing_ok=True)


# --------------------------------------------------------------- numerical guard
#: a parameter, gradient or buffer beyond this magnitude has blown up (a step such as
#: ``lr=1e30`` under Adam leaves weights huge but finite, and the run learns nothing)
EXPLODED = 1e15


def nonfinite_metric(metrics: dict[str, Any]) -> str | None:
    """``"KEY is nan"`` for the first numeric metric that is NaN or infinite, or None."""
    for key, value in metrics.items():
        if isinstance(value, (int, float, np.number)) and not math.isfinite(float(value)):
            return f"{key} is {float(value)}"
    return None


def _named_tensors(agent: Any) -> Iterator[tuple[str, torch.Tensor]]:
    """The parameters, their gradients and the floating buffers of the torch modules among
    the agent's attributes (also in lists, tuples and dicts); an agent without any: the
    tensors of its ``state_dict()``."""
    seen: set[int] = set()
    found = False
    for attr, value in vars(agent).items():
        if isinstance(value, dict):
            items = [(f"{attr}.{k}", v) for k, v in value.items()]
        elif isinstance(value, (list, tuple)):
            items = [(f"{attr}.{i}", v) for i, v in enumerate(value)]
        else:
            items = [(attr, value)]
        for prefix, module in items:
            if not isinstance(module, torch.nn.Module):
                continue
            found = True
            for name, param in module.named_parameters():
                if id(param) not in seen:
                    seen.add(id(param))
                    yield f"parameter {prefix}.{name}", param
                    if param.grad is not None:
                        yield f"gradient of {prefix}.{name}", param.grad
            for name, buffer in module.named_buffers():
                if id(buffer) not in seen:
                    seen.add(id(buffer))
                    yield f"{prefix}.{name}", buffer
    if not found:
        yield from _state_tensors(agent.state_dict(), "")


def _state_tensors(state: Any, prefix: str) -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(state, torch.Tensor):
        yield prefix or "state", state
    elif isinstance(state, dict):
        for key, value in state.items():
            yield from _state_tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(state, (list, tuple)):
        for i, value in enumerate(state):
            yield from _state_tensors(value, f"{prefix}.{i}" if prefix else str(i))


def nonfinite_quantity(agent: Any) -> str | None:
    """The first parameter, gradient or buffer of ``agent`` (see :func:`_named_tensors`) that
    is not finite or beyond :data:`EXPLODED` in magnitude, e.g. ``"parameter
    policy_net.output.bias is not finite"``, or None."""
    named = [(name, torch.view_as_real(t.detach()) if t.is_complex() else t.detach())
             for name, t in _named_tensors(agent)
             if (t.is_floating_point() or t.is_complex()) and t.numel()]
    if _all_bounded([tensor for _, tensor in named], EXPLODED):
        return None
    for name, tensor in named:
        if not bool(torch.isfinite(tensor).all()):
            return f"{name} is not finite"
        if (largest := float(tensor.abs().max())) > EXPLODED:
            return f"{name} reached |x| = {largest:.3g} (beyond {EXPLODED:g})"
    return None


def _all_bounded(tensors: list[torch.Tensor], bound: float, small: int = 1 << 16) -> bool:
    """Whether every value is finite and within ``±bound``: a tensor is when its minimum
    and maximum are (NaN propagates through both and fails the comparison), so one pass over
    the values, small tensors concatenated (a call per tensor costs more than the values),
    one synchronisation per device."""
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    large = []
    for tensor in tensors:
        if tensor.numel() < small:
            groups.setdefault((tensor.device, tensor.dtype), []).append(tensor.reshape(-1))
        else:
            large.append(tensor)
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for tensor in [*large, *(torch.cat(group) for group in groups.values())]:
        bounded = (torch.stack(torch.aminmax(tensor)).abs() <= bound).all()
        by_device.setdefault(tensor.device, []).append(bounded)
    return all(bool(torch.stack(flags).all()) for flags in by_device.values())


# ------------------------------------------------------------------ progress output
def _headline(metrics: dict[str, Any]) -> dict[str, float]:
    """The figure a progress line shows: the first of :data:`HEADLINE_METRICS` present,
    else the last ``*_return`` metric (e.g. PEARL's ``extra_posterior_return``)."""
    keys = [k for k in HEADLINE_METRICS if k in metrics][:1] or [
        k for k in metrics if k.endswith("_return")][-1:]
    return {k: float(metrics[k]) for k in keys}


class _TrainingProgress:
    """The training loop's :class:`~metarl.progress.Progress`: iterations done, the headline
    metric and env steps/s; off a terminal a plain line after the first iteration, then
    every ``METARL_PROGRESS_INTERVAL`` seconds (default 10) and at the end::

        train 12/100 it (12%) | trial_return 3.41 | steps/s 520 | elapsed 0:01:02 | ETA 0:07:36
    """

    def __init__(self, total: int, initial: int, env_steps: int, enabled: bool | None = None,
                 interval: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.progress = Progress(total, "train", "it", initial=initial, enabled=enabled,
                                 interval=interval, clock=clock, first_line=True)
        self.env_steps0, self.started, self.clock = env_steps, clock(), clock

    def update(self, done: int, metrics: dict[str, Any], env_steps: int) -> None:
        postfix = {key: f"{value:.4g}" for key, value in _headline(metrics).items()}
        elapsed = self.clock() - self.started
        if env_steps > self.env_steps0 and elapsed > 0:
            postfix["steps/s"] = f"{(env_steps - self.env_steps0) / elapsed:.3g}"
        self.progress.set_postfix(postfix)
        self.progress.update(done - self.progress.n)

    def close(self, final: bool = True) -> None:
        self.progress.close(final=final)


def _tensorboard(run_dir: Path, purge_step: int | None):
    """The run's TensorBoard writer; ``purge_step`` (a resume's first iteration) hides the
    events of that step and later ones a killed stretch wrote, so no step appears twice."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency, but keep training without it
        return None
    with full_disk_names(run_dir / "tb"):
        return SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=purge_step)
