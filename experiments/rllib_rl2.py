"""RLlib's PPO with an LSTM (new API stack) as an independent RL² on a metarl env in trial mode
(metarl.integrations.rllib), written as a run dir like `metarl train`'s: progress.csv (env
steps, RLlib's mean training trial return, seconds per iteration) and eval.json from metarl's
own evaluator on the held-out test tasks (the JSON of `metarl eval`), plus RLlib's checkpoint.

    python experiments/rllib_rl2.py --out runs/rllib-rl2-bandit-k5-n10 --iterations 600

Settings: our rl2/bandit-k5-n10 where they map (256 recurrent units, γ 0.99, λ 0.3, lr 1e-3,
5000 steps = 500 trials an iteration, 5 epochs of 4 minibatches; 50 environments stepped
together in the driver, one torch thread).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="run dir to create")
    parser.add_argument("--iterations", type=int, default=600)
    parser.add_argument("--arms", type=int, default=5)
    parser.add_argument("--episodes", type=int, default=10, help="pulls (episodes) a trial")
    parser.add_argument("--eval-tasks", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists():
        print(f"rllib_rl2: --out {str(out)!r} exists; choose a new run dir", file=sys.stderr)
        return 2

    import ray
    import torch

    from metarl.envs import make
    from metarl.evaluation import evaluate_policy
    from metarl.integrations.rllib import RLlibPolicy, rl2_ppo_config
    from metarl.sampling import LocalSampler

    torch.set_num_threads(1)
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    env_kwargs = {"arms": args.arms}
    algo = rl2_ppo_config("bandit", episodes_per_trial=args.episodes, env_kwargs=env_kwargs,
                          seed=args.seed).build_algo()
    out.mkdir(parents=True)
    with open(out / "progress.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["iteration", "env_steps_total", "time_s", "train_return"])
        for it in range(args.iterations):
            tick = time.time()
            result = algo.train()
            runners = result["env_runners"]
            writer.writerow([it, int(runners["num_env_steps_sampled_lifetime"]),
                             round(time.time() - tick, 4), runners.get("episode_return_mean")])
            f.flush()
    algo.save_to_path(str((out / "rllib_checkpoint").resolve()))
    env = make("bandit", **env_kwargs)
    policy = RLlibPolicy(algo.get_module(), env, "trial", deterministic=False)
    result = evaluate_policy(policy, env, LocalSampler(env), split="test",
                             num_tasks=args.eval_tasks, episodes=args.episodes, trials=1,
                             seed=args.seed)
    result = {"agent": "rllib-ppo-lstm", "env": "bandit", "iteration": args.iterations,
              **result}
    (out / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"]))
    algo.stop()
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
