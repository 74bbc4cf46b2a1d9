"""Fork a run at one of its checkpoints into a new run directory with changed settings.

The new run starts from the source's checkpoint ``--iteration`` (its weights, optimiser
state, torch RNG state, the first ``--iteration`` rows of ``progress.csv`` and the
stretches of ``segments.jsonl`` that ran them) with the source's config plus the
``--set`` overrides, and continues with ``metarl train --resume``:

    python experiments/fork_run.py experiments/checkpoints/rl2-mdp-n10 --iteration 6825 \\
        --to runs/rl2-mdp-n25 --set episodes_per_trial=25 tasks_per_iteration=250
    metarl train --resume --run-dir runs/rl2-mdp-n25 --iterations 9050

When the overrides only change settings the checkpoint is copied unchanged. When they add
parts the source lacks, the agent is rebuilt from the new config with torch seeded by
``--init-seed`` (default: the run's seed): every part the source has is loaded, new parts
keep their fresh initialisation, and an optimiser that gained parameters at its end keeps
the source's Adam state for the old ones. Parts the new config drops are left out. A weight
that only gains inputs at the end of its last dimension (e.g. RL²'s ``value_time_input``
appends the horizon left in the trial to the value net's inputs) keeps its old columns and
gets zero columns for the new inputs, so the forked network first computes exactly what the
source's did (see :func:`widen_optimizer_moments` for their Adam state).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

from metarl import agents
from metarl.checkpoints import load_checkpoint, save_checkpoint
from metarl.config import ConfigError, dump_yaml, load_yaml, parse_overrides
from metarl.provenance import SEGMENTS_FILE, truncate_segments
from metarl.runs import build_run_config, load_agent_state
from metarl.training import ProgressLog, checkpoint_path


def extend_optimizer_state(old: dict, new: dict) -> dict:
    """``old`` optimiser state for a parameter list that ``new`` extends at its end."""
    old_groups, new_groups = old["param_groups"], new["param_groups"]
    if len(old_groups) != 1 or len(new_groups) != 1:
        raise ValueError("only single-group optimisers can gain parameters")
    old_count, new_count = len(old_groups[0]["params"]), len(new_groups[0]["params"])
    if new_count < old_count:
        raise ValueError(f"the optimiser would lose parameters ({old_count} -> {new_count})")
    group = {**old_groups[0], "params": list(new_groups[0]["params"])}
    return {"state": dict(old["state"]), "param_groups": [group]}


def widened(old: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """``old`` zero-padded at the end of its last dimension to ``shape`` when that is the
    only difference (a layer that reads more inputs); otherwise ``old`` unchanged."""
    if (old.ndim < 2 or old.ndim != len(shape) or old.shape[:-1] != shape[:-1]
            or old.shape[-1] >= shape[-1]):
        return old
    return torch.cat([old, old.new_zeros(*shape[:-1], shape[-1] - old.shape[-1])], dim=-1)


def _is_optimizer_state(value: object) -> bool:
    return isinstance(value, dict) and "param_groups" in value


def merged_agent_state(source: dict, fresh: dict) -> dict:
    """``fresh`` (a new agent's state) with every part ``source`` also has taken from it
    (weights that gained inputs widened with zeros, see :func:`widened`)."""
    merged = dict(fresh)
    for key, value in source.items():
        if key not in fresh:
            continue  # a part the new config drops
        if _is_optimizer_state(value):
            if len(value["param_groups"][0]["params"]) != len(fresh[key]["param_groups"][0]
                                                              ["params"]):
                value = extend_optimizer_state(value, fresh[key])
        elif isinstance(value, dict):
            value = {name: (widened(t, fresh[key][name].shape)
                            if torch.is_tensor(t) and name in fresh[key] else t)
                     for name, t in value.items()}
        merged[key] = value
    return merged


def widen_optimizer_moments(agent: object) -> None:
    """Widen the optimiser state of parameters that were widened, for every optimiser the
    agent holds as an attribute: new columns' first moments start at zero, their second
    moments (Adam's ``exp_avg_sq``) at the mean of the old columns in the same row. (Zero
    would make Adam's steps on them several times the learning rate for hundreds of
    steps: a long-running optimiser's bias correction has expired.)"""
    for opt in vars(agent).values():
        if not isinstance(opt, torch.optim.Optimizer):
            continue
        for param in (p for group in opt.param_groups for p in group["params"]):
            state = opt.state.get(param, {})
            for name, value in state.items():
                if not torch.is_tensor(value) or value.shape == param.shape:
                    continue
                wide = widened(value, param.shape)
                if name == "exp_avg_sq" and wide is not value:
                    wide[..., value.shape[-1]:] = value.mean(-1, keepdim=True)
                state[name] = wide


def _module_shapes(state: dict) -> dict:
    """Shapes of the modules' tensors (not the optimisers') of an agent state."""
    return {(key, name): tuple(t.shape) for key, part in state.items()
            if isinstance(part, dict) and not _is_optimizer_state(part)
            for name, t in part.items() if torch.is_tensor(t)}


def fork(source: Path, iteration: int, target: Path, overrides: list[str],
         init_seed: int | None = None) -> Path:
    """Create run dir ``target``; returns the path of its checkpoint."""
    if target.exists():
        raise ConfigError(f"{str(target)!r} already exists; pick a new run dir")
    src_checkpoint = checkpoint_path(source, iteration)
    if not src_checkpoint.is_file():
        kept = sorted(p.name for p in (source / "checkpoints").glob("iter_*.pt"))
        raise ConfigError(f"{str(source)!r} has no checkpoint at iteration {iteration}; "
                          f"kept: {', '.join(kept) or 'none'}")
    values = {**load_yaml(source / "config.yaml"), **parse_overrides(overrides)}
    config, env = build_run_config(values)
    state = load_checkpoint(src_checkpoint)
    torch.manual_seed(config.trainer.seed if init_seed is None else init_seed)
    agent = agents.build(config.agent, env, config.agent_config, device=config.trainer.device)
    fresh = agent.state_dict()
    same_parts = (set(fresh) == set(state["agent"])
                  and _module_shapes(fresh) == _module_shapes(state["agent"]))
    merged = merged_agent_state(state["agent"], fresh)  # = the source if same
    load_agent_state(agent, merged, src_checkpoint, config.agent)  # a misfit fails here
    widen_optimizer_moments(agent)
    new_checkpoint = checkpoint_path(target, iteration)
    new_checkpoint.parent.mkdir(parents=True)  # only now: a failed fork leaves nothing behind
    if same_parts:
        shutil.copyfile(src_checkpoint, new_checkpoint)
    else:
        save_checkpoint(new_checkpoint, {**state, "agent": agent.state_dict()})
    dump_yaml(config, target / "config.yaml")
    if (source / "progress.csv").exists():  # (the published checkpoints ship without it)
        shutil.copyfile(source / "progress.csv", target / "progress.csv")
        ProgressLog(target / "progress.csv").truncate_after(iteration - 1)
    if (source / SEGMENTS_FILE).exists():  # where the iterations so far ran
        shutil.copyfile(source / SEGMENTS_FILE, target / SEGMENTS_FILE)
        truncate_segments(target / SEGMENTS_FILE, iteration)
    return new_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="run dir to fork")
    parser.add_argument("--iteration", type=int, required=True, help="its checkpoint to start from")
    parser.add_argument("--to", type=Path, required=True, help="the new run dir")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="config overrides, as for metarl train")
    parser.add_argument("--init-seed", type=int,
                        help="torch seed for parts the source lacks (default: the run's seed)")
    args = parser.parse_args(argv)
    try:
        path = fork(args.source, args.iteration, args.to, args.set, args.init_seed)
    except (ConfigError, ValueError) as exc:
        print(f"fork_run: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    print(f"wrote {path}; continue with: metarl train --resume --run-dir {args.to} "
          f"--iterations N")
    return 0


if __name__ == "__main__":
    sys.exit(main())
