"""Task-parallel sampling on Ray actors.

Tasks are split into contiguous shards, one per worker; each worker runs a
:class:`~metarl.sampling.LocalSampler` on its shard with the shard's global task offset, so
the result equals a LocalSampler over all tasks for the same seed. The policy (with its
weights) is put in the object store once per ``sample`` call and shared by all workers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from metarl.envs_api import MetaEnv
from metarl.policy import Policy
from metarl.types import Rollouts, Task


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

        def sample(self, policy, tasks, trials, episodes, seed, task_offset):
            return self.sampler.sample(policy, tasks, trials=trials, episodes=episodes,
                                       seed=seed, task_offset=task_offset)

        def ping(self) -> bool:
            return True

    return SamplerWorker


class RaySampler:
    """Shards tasks over ``workers`` Ray actors (a local Ray instance unless ``address``)."""

    def __init__(self, env: MetaEnv, workers: int = 2, address: str | None = None,
                 threads_per_worker: int = 1):
        import ray

        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False, ignore_reinit_error=True)
        cls = _worker_class()
        self.workers = [cls.remote(env.name, env.init_kwargs, threads_per_worker)
                        for _ in range(workers)]
        ray.get([w.ping.remote() for w in self.workers])  # wait until they are up

    def sample(self, policy: Policy, tasks: Sequence[Task], *, trials: int = 1,
               episodes: int = 1, seed: int = 0, task_offset: int = 0) -> Rollouts:
        import ray

        tasks = tuple(tasks)
        bounds = np.linspace(0, len(tasks), min(len(self.workers), len(tasks)) + 1).astype(int)
        policy_ref = ray.put(policy)
        futures = [
            worker.sample.remote(policy_ref, tasks[lo:hi], trials, episodes, seed,
                                 task_offset + lo)
            for worker, lo, hi in zip(self.workers, bounds[:-1], bounds[1:], strict=False)
        ]
        parts = ray.get(futures)
        return Rollouts.concatenate(parts, axis="task")

    def close(self) -> None:
        import ray

        for worker in self.workers:
            ray.kill(worker)
        self.workers = []
