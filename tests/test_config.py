"""Config validation, presets and save/load round trips."""


import numpy as np
import pytest
import torch

import metarl
from metarl.cli import main
from metarl.config import PRESETS_DIR, ConfigError, coerce, load_yaml, parse_overrides
from metarl.runs import build_run_config

PRESETS = sorted(PRESETS_DIR.rglob("*.yaml"))


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_preset_validates(path):
    config, env = build_run_config(load_yaml(path))
    assert config.agent == path.parent.name
    assert env.name == config.env


def test_a_preset_inherits_its_base_and_overrides_it(tmp_path):
    (tmp_path / "a.yaml").write_text("agent: rl2\nenv: bandit\nlr: 0.001\nhidden_size: 64\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\nlr: 0.0003\n")
    assert load_yaml(tmp_path / "b.yaml") == {"agent": "rl2", "env": "bandit", "lr": 0.0003,
                                              "hidden_size": 64}
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="inherits from itself"):
        load_yaml(tmp_path / "loop.yaml")
    (tmp_path / "bad.yaml").write_text("base: 3\n")
    with pytest.raises(ConfigError, match="must be a file name, got 3"):
        load_yaml(tmp_path / "bad.yaml")
    rl2 = PRESETS_DIR / "rl2"
    n10, n25 = load_yaml(rl2 / "tabular-mdp-n10.yaml"), load_yaml(rl2 / "tabular-mdp-n25.yaml")
    assert n25 == {**n10, "episodes_per_trial": 25, "tasks_per_iteration": 250}


def test_override_parsing_and_coercion():
    values = parse_overrides(["lr=1e-3", "hidden_size=64", "env.arms=10", "normalize_values=false"])
    assert values == {"lr": 0.001, "hidden_size": 64, "env.arms": 10, "normalize_values": False}
    assert coerce("lr", 1, float) == 1.0 and isinstance(coerce("lr", 1, float), float)
    with pytest.raises(ConfigError, match="expects int, got 1.5"):
        coerce("hidden_size", 1.5, int)
    with pytest.raises(ConfigError, match="expects bool"):
        coerce("flag", 1, bool)


def test_agent_prefix_and_flat_round_trip():
    config, _ = build_run_config({"agent": "rl2", "env": "bandit", "agent.lr": 0.01,
                                  "env.arms": 7, "seed": 3})
    flat = config.to_flat()
    assert flat["lr"] == 0.01 and flat["env.arms"] == 7 and flat["seed"] == 3
    again, _ = build_run_config(flat)
    assert again.to_flat() == flat


@pytest.mark.parametrize("variant", [[], ["layer_norm=true", "chrono_init=true"],
                                     ["layer_norm=true", "value_time_input=true",
                                      "value_target_lambda=1.0", "second_thread=true"]])
def test_load_round_trip_gives_identical_policy(tmp_path, capsys, variant):
    run = tmp_path / "run"
    assert main(["train", "rl2", "tabular-mdp", "--iterations", "1", "--run-dir", str(run),
                 "--set", "tasks_per_iteration=4", "hidden_size=8", "eval_tasks=3",
                 *variant]) == 0
    capsys.readouterr()
    first, second = metarl.load(run), metarl.load(run)
    assert first.iteration == 1 and first.config.env == "tabular-mdp"
    for a, b in zip(first.agent.state_dict()["policy_net"].values(),
                    second.agent.state_dict()["policy_net"].values(), strict=True):
        assert torch.equal(a, b)
    # a fresh (untrained) agent differs from the trained weights: the load did something
    from metarl.runs import make_agent

    fresh = make_agent(first.config, first.env).state_dict()["policy_opt"]
    assert fresh["state"] == {} and first.agent.state_dict()["policy_opt"]["state"]
    from metarl.sampling import LocalSampler

    tasks = first.env.split_tasks("test", 3)
    ra = LocalSampler(first.env).sample(first.agent.policy(), tasks, episodes=2, seed=1)
    rb = LocalSampler(second.env).sample(second.agent.policy(), tasks, episodes=2, seed=1)
    assert np.array_equal(ra.actions, rb.actions)


def test_declared_ranges_and_choices():
    from metarl.agents.promp.agent import ProMPConfig
    from metarl.agents.rl2.agent import RL2Config
    from metarl.config import (
        AT_LEAST_1,
        NON_NEGATIVE,
        POSITIVE,
        UNIT_INTERVAL,
        Range,
        between,
        check_settings,
        setting_rules,
    )

    assert [str(r) for r in (NON_NEGATIVE, AT_LEAST_1, POSITIVE, UNIT_INTERVAL,
                             between(0, 1, low_open=True), Range(high=0.5, high_open=True))] == [
        ">= 0", ">= 1", "> 0", "in [0, 1]", "in (0, 1]", "< 0.5"]
    assert 0 in UNIT_INTERVAL and 1 in UNIT_INTERVAL and 1.5 not in UNIT_INTERVAL
    assert 0.0 not in POSITIVE and float("nan") not in POSITIVE and float("inf") not in POSITIVE
    rules = setting_rules(ProMPConfig)  # redefined only for its default: keeps the base's range
    assert rules["meta_batch"]["range"] == AT_LEAST_1 and ProMPConfig().meta_batch == 40
    assert rules["inner_estimator"]["choices"] == ("vpg", "lvc", "dice")
    with pytest.raises(ConfigError, match=r"^discount must be in \[0, 1\], got 5$"):
        check_settings(RL2Config(discount=5))
    with pytest.raises(ConfigError, match=r"^unknown activation 'elu'; valid: relu, tanh$"):
        ProMPConfig(activation="elu").validate()


def test_check_memory_names_the_estimate_the_memory_and_the_largest_key():
    from metarl.memory import MemoryNeed, check_memory

    need = MemoryNeed("an iteration's rollouts", (("tasks", "tasks_per_iteration", 1000),
                                                  ("trials", None, 1),
                                                  ("episodes", "episodes_per_trial", 4),
                                                  ("steps", "env.horizon", 256)), 100)
    assert need.bytes == 102_400_000 and need.key_to_lower() == "tasks_per_iteration"
    check_memory([need], memory=need.bytes)  # fits exactly
    with pytest.raises(ConfigError) as refused:
        check_memory([need], memory=2**20)
    assert str(refused.value) == (
        "an iteration's rollouts would need ~97.7 MiB (1000 tasks x 1 trial x 4 episodes x "
        "256 steps x 100 bytes), more than this machine's 1.0 MiB of memory; lower "
        "tasks_per_iteration")
