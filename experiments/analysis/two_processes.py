"""Two plain processes, each a LocalSampler on 10 of 20 cheetah-vel tasks, side by side, against
one process on all 20 (best of 5, alternating): what two workers reach without Ray, the
reference for `metarl bench sampler`'s ``ray_vs_local``.

    python experiments/analysis/two_processes.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np

from metarl.benchmarks.sampler import benchmark_policy
from metarl.envs import make
from metarl.sampling import LocalSampler

TASKS, EPISODES, REPEATS = 20, 2, 5


def sampling(lo: int, hi: int) -> Callable[[], object]:
    """One LocalSampler call on tasks ``lo:hi`` of the benchmark's workload."""
    env = make("cheetah-vel")
    tasks = env.split_tasks("train", TASKS)[lo:hi]
    policy = benchmark_policy(int(np.prod(env.observation_space.shape)),
                              int(np.prod(env.action_space.shape)))
    sampler = LocalSampler(make("cheetah-vel"), threads=1)
    return lambda: sampler.sample(policy, tasks, trials=1, episodes=EPISODES, seed=0)


def child(lo: int, hi: int) -> None:
    """Sample tasks ``lo:hi`` once per line on stdin; answer each with a line."""
    call = sampling(lo, hi)
    call()
    print("ready", flush=True)
    for _ in sys.stdin:
        call()
        print("done", flush=True)


def main() -> None:
    one = sampling(0, TASKS)
    one()
    half = TASKS // 2
    kids = [subprocess.Popen([sys.executable, __file__, str(lo), str(lo + half)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            for lo in (0, half)]
    for kid in kids:
        kid.stdout.readline()
    best_one = best_two = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        one()
        best_one = min(best_one, time.perf_counter() - start)
        start = time.perf_counter()
        for kid in kids:
            kid.stdin.write("go\n")
            kid.stdin.flush()
        for kid in kids:
            kid.stdout.readline()
        best_two = min(best_two, time.perf_counter() - start)
    for kid in kids:
        kid.stdin.close()
        kid.wait()
    print(json.dumps({"one_process_s": round(best_one, 4), "two_processes_s": round(best_two, 4),
                      "two_vs_one": round(best_one / best_two, 3)}))


if __name__ == "__main__":
    if len(sys.argv) == 3:
        child(int(sys.argv[1]), int(sys.argv[2]))
    else:
        main()
