"""The numerical guard: a non-finite loss, gradient or parameter stops a run with exit code 3
and one line naming the iteration, the quantity and the last good checkpoint, which stays
finite and loadable; nothing of the diverged iteration is saved."""

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from as_a_user import finite_weights, messages, metarl, progress_rows

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 300
RL2_TINY = ["tasks_per_iteration=4", "hidden_size=8", "episodes_per_trial=2", "eval_tasks=2",
            "ppo_epochs=2", "minibatches=2"]
PEARL_TINY = ["train_tasks=4", "initial_steps=20", "prior_steps=20", "extra_posterior_steps=20",
              "tasks_per_iteration=2", "gradient_steps=3", "meta_batch=3", "batch_size=8",
              "context_batch=6", "hidden_size=16", "encoder_hidden=16", "eval_tasks=2"]





# ------------------------------------------------------------- through the command line
@pytest.mark.parametrize(("agent", "settings", "problem"), [
    # RL²'s lr=1e30 alone saturates the softmax (weights ~1e30, still finite, gradients 0):
    # no NaN, the bound on magnitudes catches it; value_lr=1e30 gives a NaN
    ("rl2", [*RL2_TINY, "lr=1e30"],
     r"parameter policy_net\.[\w.]+ reached \|x\| = [\d.]+e\+\d+ \(beyond 1e\+15\)"),
    ("rl2", [*RL2_TINY, "lr=1e30", "value_lr=1e30"], r"value_loss is nan"),
    ("pearl", [*PEARL_TINY, "actor_lr=1e30", "critic_lr=1e30", "encoder_lr=1e30"],
     r"critic_loss is nan"),
    ("promp", ["meta_batch=2", "rollouts_per_task=2", "hidden_size=8", "eval_tasks=2",
               "threads=1", "lr=1e30"], r"surrogate is nan"),
])
def test_a_huge_learning_rate_stops_the_run_with_exit_3_and_saves_nothing(
        tmp_path, agent, settings, problem):
    run = tmp_path / "run"
    done = metarl("train", agent, "bandit" if agent == "rl2" else "point-nav", "--iterations",
                "5", "--run-dir", str(run), "--set", *settings, "checkpoint_every=1")
    assert done.returncode == 3, done.stderr
    (message,) = messages(done.stderr)
    assert re.fullmatch(f"metarl: diverged at iteration 0: {problem}; no checkpoint was "
                        f"saved yet", message), message
    assert not done.stdout  # no final evaluation of a diverged run
    assert not (run / "checkpoints").exists() and not (run / "eval.json").exists()
    assert [r["iteration"] for r in progress_rows(run)] == ["0"]  # the diverged row, to look at


@pytest.mark.reliability_slow
def test_divergence_after_a_fork_keeps_the_last_good_checkpoint(tmp_path):
    """A run forked with ``lr=1e30`` (the documented way to change a setting) diverges in its
    first iteration; its checkpoint is kept as it was and loads with finite weights."""
    from metarl.runs import load

    source, fork = tmp_path / "source", tmp_path / "fork"
    done = metarl("train", "rl2", "bandit", "--iterations", "2", "--run-dir", str(source),
                  "--set", *RL2_TINY, "checkpoint_every=1")
    assert done.returncode == 0, done.stderr
    forked = subprocess.run([sys.executable, str(ROOT / "experiments" / "fork_run.py"),
                             str(source), "--iteration", "2", "--to", str(fork), "--set",
                             "lr=1e30", "value_lr=1e30"],
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert forked.returncode == 0, forked.stderr
    good = fork / "checkpoints" / "iter_000002.pt"
    before = good.read_bytes()
    resumed = metarl("train", "--resume", "--run-dir", str(fork), "--iterations", "6")
    assert resumed.returncode == 3, resumed.stderr
    assert messages(resumed.stderr) == [
        f"resuming {fork} at iteration 2",
        f"metarl: diverged at iteration 2: value_loss is nan; last good checkpoint: {good}"]
    assert [p.name for p in (fork / "checkpoints").iterdir()] == [good.name]  # no iter 3
    assert good.read_bytes() == before
    loaded = load(fork)
    assert loaded.iteration == 2 and finite_weights(loaded.agent.state_dict())
    rows = progress_rows(fork)
    assert [r["iteration"] for r in rows] == ["0", "1", "2"]
    assert math.isnan(float(rows[2]["value_loss"]))


# ------------------------------------------------------------------- in the Trainer
class _Agent:
    """A stand-in agent whose iteration ``bad_at`` makes ``what`` non-finite."""

    uses_sampler = False

    def __init__(self, bad_at: int, what: str):
        self.net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
        self.bad_at, self.what, self.done = bad_at, what, 0

    def train_iteration(self, sampler, rng) -> dict[str, float]:
        loss = self.net(torch.ones(2, 3)).pow(2).mean()
        self.net.zero_grad()
        loss.backward()
        metrics = {"loss": float(loss.detach()), "env_steps": 4.0}
        if self.done == self.bad_at:
            with torch.no_grad():
                if self.what == "metric":
                    metrics["loss"] = math.inf
                elif self.what == "gradient":
                    self.net[1].weight.grad[0, 2] = math.nan
                else:
                    self.net[0].bias[1] = -math.inf
        self.done += 1
        return metrics

    def state_dict(self) -> dict:
        return {"net": self.net.state_dict(), "done": self.done}


@pytest.mark.parametrize(("what", "quantity"), [
    ("metric", "loss is inf"), ("gradient", "gradient of net.1.weight is not finite"),
    ("parameter", "parameter net.0.bias is not finite")])
def test_the_trainer_checks_metrics_gradients_and_parameters(tmp_path, what, quantity):
    from metarl.checkpoints import load_checkpoint
    from metarl.runs import build_run_config
    from metarl.stopping import TrainingDiverged
    from metarl.training import Trainer

    config, env = build_run_config({"agent": "rl2", "env": "bandit", "checkpoint_every": 1,
                                    "keep_checkpoints": 0, "iterations": 6})
    trainer = Trainer(tmp_path / "run", config, _Agent(3, what), env, None)
    with pytest.raises(TrainingDiverged) as raised:
        trainer.train(progress=False)
    good = tmp_path / "run" / "checkpoints" / "iter_000003.pt"
    assert str(raised.value) == (f"diverged at iteration 3: {quantity}; last good "
                                 f"checkpoint: {good}")
    assert raised.value.iteration == 3 and raised.value.checkpoint == good
    assert sorted(p.name for p in good.parent.iterdir()) == [
        "iter_000001.pt", "iter_000002.pt", "iter_000003.pt"]  # none for the diverged one
    state = load_checkpoint(good)
    assert state["agent"]["done"] == 3 and finite_weights(state["agent"])


def test_nonfinite_quantity_finds_modules_in_containers_and_falls_back_to_state_dict():
    from metarl.training import nonfinite_metric, nonfinite_quantity

    class Agent:
        def __init__(self):
            self.parts = {"encoder": torch.nn.Linear(2, 2)}
            self.heads = [torch.nn.Linear(2, 1), torch.nn.BatchNorm1d(3)]

    agent = Agent()
    assert nonfinite_quantity(agent) is None
    agent.heads[1].running_var[2] = math.nan
    assert nonfinite_quantity(agent) == "heads.1.running_var is not finite"
    agent.heads[1].running_var[2] = 1.0
    with torch.no_grad():
        agent.parts["encoder"].weight[0, 0] = math.inf
    assert nonfinite_quantity(agent) == "parameter parts.encoder.weight is not finite"
    with torch.no_grad():
        agent.parts["encoder"].weight[0, 0] = -3e20  # finite, but blown up
    assert nonfinite_quantity(agent) == ("parameter parts.encoder.weight reached |x| = 3e+20 "
                                         "(beyond 1e+15)")
    with torch.no_grad():
        agent.parts["encoder"].weight[0, 0] = 1e15  # the bound itself is fine
    assert nonfinite_quantity(agent) is None

    class Plain:  # no module attributes: the tensors of its state_dict
        def state_dict(self):
            return {"w": torch.zeros(3), "opt": {"state": {0: {"m": torch.tensor([np.nan])}}},
                    "steps": 7}

    assert nonfinite_quantity(Plain()) == "opt.state.0.m is not finite"
    assert nonfinite_metric({"a": 1, "b": np.float32(2.0), "flag": True}) is None
    assert nonfinite_metric({"a": 1.0, "b": np.float64(-np.inf)}) == "b is -inf"
