"""Memory estimates that refuse a run which cannot fit, before anything is written.

Each agent says what it allocates at once (``Agent.memory_needs(config, env)``: a list of
:class:`MemoryNeed`, e.g. :func:`rollout_need` for a sampler's rollouts); :func:`check_memory`
compares the largest with this machine's memory and names the key to lower. An estimate is
a floor: copies made for an update come on top.
"""

from __future__ import annotations

import inspect
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metarl.config import ConfigError

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


#: one dimension of a buffer: ``(label, key, value)``, ``key`` the config key that sets it
Factor = tuple[str, "str | None", int]


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


def numbers(space: Any) -> int:
    """The numbers one element of a gymnasium space holds."""
    shape = getattr(space, "shape", None)
    return int(math.prod(shape)) if shape else 1


def rollout_need(what: str, env: Any, steps_key: str | None, tasks: Factor, trials: Factor,
                 episodes: Factor) -> MemoryNeed:
    """A sampler's rollouts: tasks x trials x episodes x the env's ``max_episode_steps``
    steps of :data:`NUMBER_BYTES` x (2 x observation + action + :data:`STEP_SCALARS`)."""
    row = NUMBER_BYTES * (2 * numbers(env.observation_space) + numbers(env.action_space)
                          + STEP_SCALARS)
    return MemoryNeed(what, (tasks, trials, episodes,
                             ("steps", steps_key, int(env.max_episode_steps))), row)


def check_memory(needs: list[MemoryNeed], memory: int | None = None) -> None:
    """A :class:`ConfigError` for the largest of ``needs`` above ``memory`` (default:
    :func:`physical_memory`), giving the estimate, the memory and the key to lower."""
    memory = physical_memory() if memory is None else memory
    too_big = [need for need in needs if memory is not None and need.bytes > memory]
    if too_big:
        raise ConfigError(max(too_big, key=lambda need: need.bytes).message(memory))




def steps_key(env_factory: Any) -> str | None:
    """The ``env.`` key that sets an episode's length, where the env has one."""
    params = inspect.signature(env_factory).parameters
    return next((f"env.{k}" for k in ("horizon", "max_episode_steps") if k in params), None)
