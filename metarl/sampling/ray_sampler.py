"""Task-parallel sampling on Ray actors.

Tasks are split into contiguous shards, one per worker; each worker runs a
:class:`~metarl.sampling.LocalSampler` on its shard with the shard's global task offset, so
the result equals a LocalSampler over all tasks for the same seed. The policy (with its
weights) is pickled once per ``sample`` call; up to ``INLINE_POLICY_BYTES`` the bytes travel
inside each worker's task message, a larger policy is put in the object store once and
shared by all workers. :class:`SampleTiming` (``RaySampler.last_timing``) tells where a
call's time went: pickling the policy, each worker's start, sampling and return.

A worker that dies (its process killed, its node lost) is replaced and its shard re-run:
Ray reports the death as :class:`ray.exceptions.RayActorError` (``ActorDiedError``, or
``ActorUnavailableError`` when the actor cannot be reached) on that shard's result; the
sampler then kills the old actor, starts a new one in its slot and submits the same shard
again (same policy object, tasks, seed and task offset). A shard's rollouts depend on
nothing else (the random streams are keyed per environment, :mod:`metarl.random`), so the
call returns exactly what a healthy run would. Each shard is re-run at most ``max_retries``
times per call; after that the call raises :class:`SamplerError`. Exceptions raised by the
sampling code itself (``RayTaskError``) are not retried: re-running would raise them again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from metarl.envs_api import MetaEnv
from metarl.policy import Policy
from metarl.stopping import SamplerError
from metarl.types import Rollouts, Task

log = logging.getLogger(__name__)

#: a pickled policy up to this size travels inside each worker's task message (Ray's own
#: limit for inlining arguments, ``max_direct_call_object_size``); a larger one is put in the
#: object store once and fetched by each worker
INLINE_POLICY_BYTES = 100 * 1024


@dataclass(frozen=True)
class SampleTiming:
    """Where the time of one :meth:`RaySampler.sample` call went, in seconds.

    ``start_s`` and ``return_s`` compare the driver's and the workers' ``time.time()``: exact
    on one machine, as good as the clocks' synchronisation across machines."""

    #: pickling the policy (and putting it in the object store, if large)
    put_policy_s: float
    #: from before the put until the rollouts were concatenated
    wall_s: float
    #: per shard (worker slot order): the worker's time inside ``LocalSampler.sample``
    busy_s: tuple[float, ...]
    #: per shard: from the submission to the worker starting to sample (dispatch, fetching
    #: and unpickling the policy and the tasks)
    start_s: tuple[float, ...]
    #: per shard: from the worker's end to the rollouts in the driver (pickling, transfer,
    #: unpickling)
    return_s: tuple[float, ...]
    #: joining the shards' rollouts
    concatenate_s: float
    #: bytes of rollouts returned per shard (the arrays' ``nbytes``)
    result_bytes: tuple[int, ...]

    @property
    def idle_fraction(self) -> float:
        """The share of the workers' time in the call not spent sampling."""
        return 1.0 - sum(self.busy_s) / (len(self.busy_s) * self.wall_s)

    def as_dict(self) -> dict[str, Any]:
        """The fields and ``idle_fraction`` (JSON-ready)."""
        return {**{name: getattr(self, name) for name in self.__dataclass_fields__},
                "idle_fraction": self.idle_fraction}


def _worker_class():
    import ray

    @ray.remote(num_cpus=1)
    class SamplerWorker:
        def __init__(self, env_name: str, env_kwargs: dict, threads: int = 1):
            from metarl.envs import make
            from metarl.sampling.local import LocalSampler
            from metarl.thread_limits import set_threads

            set_threads(threads)
            self.sampler = LocalSampler(make(env_name, **env_kwargs))

        def sample(self, policy: bytes, tasks, trials, episodes, seed, task_offset):
            """The shard's rollouts for the pickled ``policy``, and ``(time.time() when
            ready to sample, seconds sampling)``."""
            from ray import cloudpickle

            policy = cloudpickle.loads(policy)
            start, begin = time.time(), time.perf_counter()
            rollouts = self.sampler.sample(policy, tasks, trials=trials, episodes=episodes,
                                           seed=seed, task_offset=task_offset)
            return rollouts, (start, time.perf_counter() - begin)

        def ping(self) -> bool:
            return True

        def pid(self) -> int:
            import os

            return os.getpid()

        def node_id(self) -> str:
            return ray.get_runtime_context().get_node_id()

    return SamplerWorker


def unreachable_ray_head(address: str | None, timeout: float = 3.0) -> str | None:
    """Why a Ray head at ``address`` (``host:port``, optionally ``ray://host:port``) cannot
    be reached, from a plain TCP connection with a ``timeout`` (s); ``None`` when it answers
    or when Ray resolves the address itself (``None``, ``"auto"``, ``"local"``). Ray's own
    connection attempt waits minutes before it fails, with many log lines."""
    if address is None or address in ("auto", "local"):
        return None
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return f"{address!r} is not host:port"
    import socket

    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        return f"nothing answers at {host}:{port} ({exc.strerror or exc})"
    return None


class RaySampler:
    """Shards tasks over ``workers`` Ray actors (a local Ray instance unless ``address``).

    ``scheduling_strategy`` places the actors, e.g. ``"SPREAD"``: over as many nodes as the
    cluster has (Ray's default packs them onto few nodes); ``None`` is Ray's default.

    A worker that dies is replaced and its shard re-run from the same seed and task offset,
    at most ``max_retries`` times per shard and ``sample`` call (then :class:`SamplerError`).
    ``replacements`` counts the workers replaced so far; ``last_timing`` tells where the
    last ``sample`` call's time went (:class:`SampleTiming`)."""

    def __init__(self, env: MetaEnv, workers: int = 2, address: str | None = None,
                 threads_per_worker: int = 1, max_retries: int = 3,
                 scheduling_strategy: str | None = None):
        import ray

        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False, ignore_reinit_error=True)
        self._worker_args = (env.name, env.init_kwargs, threads_per_worker)
        self._cls = _worker_class()
        if scheduling_strategy is not None:
            self._cls = self._cls.options(scheduling_strategy=scheduling_strategy)
        self.max_retries = max_retries
        self.replacements = 0
        self.last_timing: SampleTiming | None = None
        self.workers = [self._new_worker() for _ in range(workers)]
        self._run([(w, "ping", ()) for w in range(workers)], "start")  # wait until up
        if log.isEnabledFor(logging.DEBUG):
            log.debug("Ray sampler workers' pids: %s", self.worker_pids())

    def _new_worker(self) -> Any:
        return self._cls.remote(*self._worker_args)

    def worker_pids(self) -> list[int]:
        """The process ids of the workers (slot order)."""
        return self._run([(w, "pid", ()) for w in range(len(self.workers))], "pid")

    def worker_nodes(self) -> list[str]:
        """The Ray node ids the workers run on (slot order)."""
        return self._run([(w, "node_id", ()) for w in range(len(self.workers))], "node_id")

    def sample(self, policy: Policy, tasks: Sequence[Task], *, trials: int = 1,
               episodes: int = 1, seed: int = 0, task_offset: int = 0) -> Rollouts:
        import ray
        from ray import cloudpickle

        tasks = tuple(tasks)
        bounds = np.linspace(0, len(tasks), min(len(self.workers), len(tasks)) + 1).astype(int)
        shards = list(zip(bounds[:-1], bounds[1:], strict=True))
        begin, clock = time.perf_counter(), time.time()
        pickled = cloudpickle.dumps(policy)
        # inlined in each task's message when small (as Ray does for small arguments, without
        # an object-store round trip); else in the object store once for all workers
        payload = pickled if len(pickled) <= INLINE_POLICY_BYTES else ray.put(pickled)
        put = time.perf_counter() - begin
        calls = [(w, "sample", (payload, tasks[lo:hi], trials, episodes, seed,
                                task_offset + lo))
                 for w, (lo, hi) in enumerate(shards)]
        arrived: list[float] = [0.0] * len(calls)
        results = self._run(calls, "sample", [f"tasks {task_offset + lo}-{task_offset + hi - 1}"
                                              for lo, hi in shards], arrived)
        parts = [rollouts for rollouts, _ in results]
        joined = time.perf_counter()
        rollouts = Rollouts.concatenate(parts, axis="task")
        end = time.perf_counter()
        submitted = clock + put
        self.last_timing = SampleTiming(
            put_policy_s=put, wall_s=end - begin,
            busy_s=tuple(busy for _, (_, busy) in results),
            start_s=tuple(start - submitted for _, (start, _) in results),
            return_s=tuple(got - start - busy
                           for got, (_, (start, busy)) in zip(arrived, results, strict=True)),
            concatenate_s=end - joined,
            result_bytes=tuple(part.nbytes for part in parts))
        return rollouts

    def _run(self, calls: list[tuple[int, str, tuple]], what: str,
             labels: list[str] | None = None, arrived: list[float] | None = None
             ) -> list[Any]:
        """Run ``worker_slot.method(*args)`` for each call and return the results in order
        (and, in ``arrived``, the ``time.time()`` at which each result was in hand). A call
        whose worker dies is resubmitted to a new worker in that slot, at most
        ``max_retries`` times (then :class:`SamplerError`)."""
        import ray
        from ray.exceptions import RayActorError

        def submit(i: int):
            slot, method, args = calls[i]
            return getattr(self.workers[slot], method).remote(*args)

        results: list[Any] = [None] * len(calls)
        failures = [0] * len(calls)
        pending = {submit(i): i for i in range(len(calls))}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(ready[0])
            try:
                results[i] = ray.get(ready[0])
                if arrived is not None:
                    arrived[i] = time.time()
            except RayActorError as exc:
                slot = calls[i][0]
                failures[i] += 1
                label = f" ({labels[i]})" if labels else ""
                cause = _first_line(exc)
                if failures[i] > self.max_retries:
                    raise SamplerError(
                        f"Ray sampler worker {slot}{label} died {_times(failures[i])} in one "
                        f"{what} call (retries exhausted, max_retries={self.max_retries}): "
                        f"{type(exc).__name__}: {cause}") from exc
                log.warning("Ray sampler worker %d%s died (%s: %s); replacing it and "
                            "re-running its %s call (retry %d of %d)", slot, label,
                            type(exc).__name__, cause, what, failures[i], self.max_retries)
                self._replace(slot)
                pending[submit(i)] = i
        return results

    def _replace(self, slot: int) -> None:
        import ray

        try:  # it may be unreachable rather than dead (ActorUnavailableError): make sure
            ray.kill(self.workers[slot])
        except Exception:  # already gone: nothing to stop
            pass
        self.workers[slot] = self._new_worker()
        self.replacements += 1

    def close(self) -> None:
        import ray

        for worker in self.workers:
            ray.kill(worker)
        self.workers = []


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else repr(exc)
