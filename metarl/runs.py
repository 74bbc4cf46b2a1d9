"""Building, loading and resuming runs (shared by the CLI and notebooks).

``metarl.load(run_dir)`` gives back the trained agent with its env and config.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from metarl import agents, envs
from metarl.checkpoints import CheckpointError, atomic_write_text, load_checkpoint
from metarl.config import (
    ConfigError,
    RunConfig,
    build_config,
    env_parameters,
    load_yaml,
    resumable_keys,
)
from metarl.envs_api import MetaEnv
from metarl.thread_limits import set_threads
from metarl.training import Trainer, latest_checkpoint


def _agent_and_env_factory(values: dict[str, Any]) -> tuple[type, type, Any]:
    """The agent class, its config class and its env's constructor for flat ``values``."""
    for key in ("agent", "env"):
        if not isinstance(values.get(key), str):
            raise ConfigError(f"the config names no {key} (got {key}: {values.get(key)!r})")
    agent_cls, config_cls = agents.get(values["agent"]).load()
    try:
        env_factory = agent_cls.env_factory(values["env"])
    except ValueError as exc:
        if isinstance(exc, envs.UnknownEnvError):
            raise
        raise ConfigError(f"agent {values['agent']!r} {exc}") from None
    return agent_cls, config_cls, env_factory


def check_config(values: dict[str, Any]) -> RunConfig:
    """Validate flat config values (names, keys, types, declared ranges) without building
    the env."""
    agent_cls, config_cls, env_factory = _agent_and_env_factory(values)
    return build_config(values, config_cls, env_factory,
                        agent_cls.config_defaults(values["env"], config_cls))


def build_run_config(values: dict[str, Any]) -> tuple[RunConfig, Any]:
    """Validate flat config values; returns the config and the agent's "env" (a task
    distribution, or a few-shot learner's dataset), built as the agent says."""
    agent_cls, _, _ = _agent_and_env_factory(values)
    config = check_config(values)
    try:
        env = agent_cls.make_env(config.env, config.env_kwargs, config.agent_config)
    except (FileNotFoundError, TypeError, ValueError) as exc:
        raise ConfigError(f"env {config.env!r}: {str(exc).splitlines()[0]}") from None
    return config, env


def default_run_dir(config: RunConfig) -> Path:
    return Path("runs") / f"{config.agent}-{config.env}-seed{config.trainer.seed}"


def make_agent(config: RunConfig, env: MetaEnv):
    if config.trainer.threads:
        set_threads(config.trainer.threads)
    torch.manual_seed(config.trainer.seed)
    try:
        return agents.build(config.agent, env, config.agent_config, device=config.trainer.device)
    except ValueError as exc:  # the agent cannot take this env (e.g. discrete actions)
        raise ConfigError(str(exc).splitlines()[0]) from None


def make_trainer(run_dir: Path, config: RunConfig, env: MetaEnv, sampler) -> Trainer:
    return Trainer(run_dir, config, make_agent(config, env), env, sampler)


def checkpoint_iteration(run_dir: Path) -> int:
    """The iteration of the run's latest checkpoint (0 without one), from its file name."""
    path = latest_checkpoint(run_dir)
    try:
        return int(path.stem.removeprefix("iter_")) if path is not None else 0
    except ValueError:
        return 0


def resume_values(run_dir: Path, typed: dict[str, Any]) -> dict[str, Any]:
    """The flat values to resume the run in ``run_dir`` with: its stored ``config.yaml``
    with the ``typed`` values (the command line's, :func:`metarl.cli.gather_config_values`)
    applied. A typed value that differs from the stored one is a :class:`ConfigError`
    naming both, unless its key is resumable (:func:`metarl.config.resumable_keys`); so is
    ``iterations`` below the latest checkpoint's, and a stored config this version of the
    code no longer accepts. Reads only; nothing on disk changes."""
    run = str(run_dir)
    try:
        stored_values = load_yaml(run_dir / "config.yaml")
        stored = check_config(stored_values)
    except ValueError as exc:  # ConfigError, an unknown agent or env
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise ConfigError(f"cannot resume {run!r}: its config.yaml does not fit this version "
                          f"of metarl: {reason}") from None
    for key in ("agent", "env"):
        if key in typed and typed[key] != stored_values[key]:
            raise ConfigError(f"cannot resume {run!r} with {key}={typed[key]!r}: the run has "
                              f"{key}={stored_values[key]!r}")
    values = {**stored_values, **typed}
    merged = check_config(values)
    before, after = stored.to_flat(), merged.to_flat()
    _, config_cls, env_factory = _agent_and_env_factory(stored_values)
    env_defaults = {f"env.{k}": p.default for k, p in env_parameters(env_factory).items()}
    resumable = resumable_keys(config_cls)
    for key in typed:
        name = key.removeprefix("agent.")
        if name in ("agent", "env") or name not in after:
            continue  # the names are compared above; a retired option is ignored
        old = before.get(name, env_defaults.get(name))
        if after[name] != old and name not in resumable:
            raise ConfigError(f"cannot resume {run!r} with {name}={after[name]!r}: the run has "
                              f"{name}={old!r} (a resume may change only "
                              f"{', '.join(resumable)}; to change others, fork the run with "
                              f"experiments/fork_run.py)")
    done = checkpoint_iteration(run_dir)
    if merged.trainer.iterations < done:
        raise ConfigError(f"cannot resume {run!r} with iterations={merged.trainer.iterations}: "
                          f"the run is already at iteration {done}")
    return values


# ------------------------------------------------------------------ memory estimate
#: bytes per stored number in the estimate: the sampler keeps what the env and the policy
#: give, float64 / int64 at the widest
NUMBER_BYTES = 8
#: numbers a step stores besides its observation, next observation and action: the reward,
#: the terminated / truncated / valid flags, and room for the policy's extras (log-probability,
#: value, ...)
STEP_SCALARS = 8
#: PEARL's replay buffers hold float32 rows (observation, action, reward, next observation,
#: terminated)
REPLAY_NUMBER_BYTES = 4


@dataclass(frozen=True)
class MemoryNeed:
    """One buffer a run allocates at once: the product of ``factors`` rows of ``row_bytes``
    each. A factor is ``(label, key, value)``, ``key`` the config key that sets it (or
    None)."""

    what: str
    factors: tuple[tuple[str, str | None, int], ...]
    row_bytes: int

    @property
    def bytes(self) -> int:
        return math.prod(value for *_, value in self.factors) * self.row_bytes

    def key_to_lower(self) -> str | None:
        """The key of the largest factor."""
        keyed = [(value, key) for _, key, value in self.factors if key]
        return max(keyed, key=lambda pair: pair[0])[1] if keyed else None

    def message(self, memory: int) -> str:
        sizes = " x ".join(f"{value} {label if value != 1 else label.removesuffix('s')}"
                           for label, _, value in self.factors)
        key = self.key_to_lower()
        return (f"{self.what} would need ~{format_bytes(self.bytes)} ({sizes} x {self.row_bytes} "
                f"bytes), more than this machine's {format_bytes(memory)} of memory; lower "
                f"{key or 'the sizes'}")


def format_bytes(n: float) -> str:
    """``n`` bytes for people: ``"512 bytes"``, ``"23.5 GiB"``, ``"527.5 TiB"``."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def physical_memory() -> int | None:
    """This machine's memory in bytes (``os.sysconf``, or psutil where installed), capped
    by a cgroup memory limit (a container's) where there is one; None if unknown."""
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        try:
            import psutil
        except ImportError:
            return None
        memory = int(psutil.virtual_memory().total)
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            memory = min(memory, int(Path(limit).read_text().strip()))
        except (OSError, ValueError):  # absent, or "max"
            continue
    return memory


def _numbers(space: Any) -> int:
    shape = getattr(space, "shape", None)
    return int(math.prod(shape)) if shape else 1


def rollout_need(what: str, env: Any, steps_key: str | None,
                 tasks: tuple[str, str | None, int], trials: tuple[str, str | None, int],
                 episodes: tuple[str, str | None, int]) -> MemoryNeed:
    """A sampler's rollouts: tasks x trials x episodes x the env's ``max_episode_steps``
    steps of :data:`NUMBER_BYTES` x (2 x observation + action + :data:`STEP_SCALARS`)."""
    row = NUMBER_BYTES * (2 * _numbers(env.observation_space) + _numbers(env.action_space)
                          + STEP_SCALARS)
    return MemoryNeed(what, (tasks, trials, episodes,
                             ("steps", steps_key, int(env.max_episode_steps))), row)


def memory_needs(config: RunConfig, env: Any) -> list[MemoryNeed]:
    """What a training run of a meta-RL agent allocates at once, each buffer on its own:

    ==================  ==================================================================
    agent               buffers (tasks x trials x episodes x steps, unless said)
    ==================  ==================================================================
    rl2                 iteration: tasks_per_iteration x 1 x episodes_per_trial;
                        evaluation: eval_tasks x 1 x episodes_per_trial
    maml-trpo, promp    iteration: meta_batch x rollouts_per_task x (inner_steps + 1);
                        evaluation: eval_tasks x rollouts_per_task x 3
    pearl               first collection: train_tasks x 1 x episodes of initial_steps;
                        iteration: tasks_per_iteration x 1 x episodes of the largest of
                        prior_steps / posterior_steps / extra_posterior_steps; evaluation:
                        eval_tasks x 1 x episodes_per_trial; replay buffers: train_tasks x
                        the transitions a task gathers over the run on average (at most
                        replay_capacity, plus its encoder buffer's) x float32 rows;
                        gradient batch: meta_batch x (batch_size + context_batch) rows
    ==================  ==================================================================

    Each is a floor (copies made for the update come on top); few-shot learners (no env
    steps) have none here."""
    from metarl.agents.pearl.agent import PEARLConfig
    from metarl.agents.rl2.agent import RL2Config
    from metarl.meta.rl import AdaptationConfig

    if getattr(env, "max_episode_steps", None) is None or not hasattr(env, "action_space"):
        return []
    agent_cls, _, env_factory = _agent_and_env_factory({"agent": config.agent,
                                                          "env": config.env})
    params = env_parameters(env_factory)
    steps_key = next((f"env.{k}" for k in ("horizon", "max_episode_steps") if k in params),
                     None)
    cfg, trainer = config.agent_config, config.trainer
    eval_tasks = ("tasks", "eval_tasks", trainer.eval_tasks)
    one = ("trials", None, 1)

    def rollouts(what: str, *shape: tuple[str, str | None, int]) -> MemoryNeed:
        return rollout_need(what, env, steps_key, *shape)

    if isinstance(cfg, RL2Config):
        episodes = ("episodes", "episodes_per_trial", cfg.episodes_per_trial)
        return [rollouts("an iteration's rollouts",
                         ("tasks", "tasks_per_iteration", cfg.tasks_per_iteration), one,
                         episodes),
                rollouts("an evaluation's rollouts", eval_tasks, one, episodes)]
    if isinstance(cfg, AdaptationConfig):
        trials = ("trials", "rollouts_per_task", cfg.rollouts_per_task)
        return [rollouts("an iteration's rollouts", ("tasks", "meta_batch", cfg.meta_batch),
                         trials, ("episodes", "inner_steps", cfg.inner_steps + 1)),
                rollouts("an evaluation's rollouts", eval_tasks, trials,
                         ("episodes", None, agent_cls.eval_episodes))]
    if isinstance(cfg, PEARLConfig):
        horizon = int(env.max_episode_steps)

        def episodes(key: str) -> tuple[str, str, int]:
            return "episodes", key, -(-getattr(cfg, key) // horizon)  # rounded up

        largest = max(("prior_steps", "posterior_steps", "extra_posterior_steps"),
                      key=lambda key: getattr(cfg, key))
        initial = episodes("initial_steps")[2] * horizon
        per_visit = horizon * sum(episodes(key)[2] for key in (
            "prior_steps", "posterior_steps", "extra_posterior_steps"))
        visits = -(-trainer.iterations * cfg.tasks_per_iteration // cfg.train_tasks)
        replay = min(cfg.replay_capacity, initial + visits * per_visit)
        encoder = min(cfg.replay_capacity, max(initial, horizon * sum(
            episodes(key)[2] for key in ("prior_steps", "posterior_steps"))))
        width = REPLAY_NUMBER_BYTES * (2 * _numbers(env.observation_space)
                                       + _numbers(env.action_space) + 2)
        return [rollouts("the first collection", ("tasks", "train_tasks", cfg.train_tasks),
                         one, episodes("initial_steps")),
                rollouts("an iteration's collection",
                         ("tasks", "tasks_per_iteration", cfg.tasks_per_iteration), one,
                         episodes(largest)),
                rollouts("an evaluation's rollouts", eval_tasks, one,
                         ("episodes", "episodes_per_trial", cfg.episodes_per_trial)),
                MemoryNeed("PEARL's replay buffers", (
                    ("tasks", "train_tasks", cfg.train_tasks),
                    ("transitions", "replay_capacity", replay + encoder)), width),
                MemoryNeed("PEARL's gradient batch", (
                    ("tasks", "meta_batch", cfg.meta_batch),
                    ("transitions", "batch_size", cfg.batch_size + cfg.context_batch)), width)]
    return [rollouts("an evaluation's rollouts", eval_tasks, one,
                     ("episodes", None, getattr(agent_cls, "eval_episodes", 3)))]


def check_memory(needs: list[MemoryNeed], memory: int | None = None) -> None:
    """A :class:`ConfigError` for the largest of ``needs`` above ``memory`` (default:
    :func:`physical_memory`), giving the estimate, the memory and the key to lower."""
    memory = physical_memory() if memory is None else memory
    too_big = [need for need in needs if memory is not None and need.bytes > memory]
    if too_big:
        raise ConfigError(max(too_big, key=lambda need: need.bytes).message(memory))


def final_evaluation(trainer: Trainer, progress: bool | None = None) -> dict[str, Any]:
    """Evaluate the trained agent on ``eval_tasks`` test tasks into ``eval.json``; returns
    the summary as ``eval_*``. ``progress``: report the evaluation's steps on stderr
    (``None``/``True``: a bar on a terminal, else a line every ~10 s; :mod:`metarl.progress`);
    the results are the same either way."""
    from metarl.evaluation import EvalRequest, eval_summary
    from metarl.progress import Progress, reports_steps, sampler_with_progress

    cfg = trainer.config.trainer
    sampler = trainer.eval_sampler
    with Progress(desc="final evaluation", unit="steps",
                  enabled=progress if reports_steps(sampler) else False) as bar:
        result = trainer.agent.evaluate(trainer.env, sampler_with_progress(sampler, bar),
                                        EvalRequest(num_tasks=cfg.eval_tasks, seed=cfg.seed))
    atomic_write_text(trainer.run_dir / "eval.json", json.dumps(result, indent=2))
    return eval_summary(result)


@dataclass
class LoadedRun:
    agent: Any
    env: MetaEnv
    config: RunConfig
    iteration: int
    run_dir: Path


def load(run_dir: str | Path, checkpoint: str | Path | None = None,
         overrides: dict[str, Any] | None = None) -> LoadedRun:
    """A trained run: its agent (weights from the latest checkpoint), env and config;
    ``overrides`` replace stored settings (e.g. ``{"env.data_dir": DIR}`` for data that
    moved)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run dir {str(run_dir)!r} does not exist")
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{str(run_dir)!r} is not a run dir (no config.yaml)")
    config, env = build_run_config({**load_yaml(run_dir / "config.yaml"), **(overrides or {})})
    path = Path(checkpoint) if checkpoint else latest_checkpoint(run_dir)
    if path is None:
        raise CheckpointError(f"run dir {str(run_dir)!r} has no checkpoints")
    state = load_checkpoint(path)
    agent = make_agent(config, env)
    load_agent_state(agent, state["agent"], path, config.agent)
    return LoadedRun(agent, env, config, int(state["iteration"]), run_dir)


def load_agent_state(agent: Any, state: dict, path: str | Path, agent_name: str) -> None:
    """Load a checkpoint's agent ``state`` (read from ``path``); a misfit (another
    architecture or config) is one :class:`CheckpointError` line."""
    try:
        agent.load_state_dict(state)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} does not fit agent {agent_name!r}: "
                              f"{str(exc).splitlines()[0][:120]}") from None
