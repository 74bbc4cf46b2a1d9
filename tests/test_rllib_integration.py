"""RLlib on metarl's task distributions (metarl.integrations.rllib, the rllib extra): every env
registers with Tune; RLlib's PPO with an LSTM (new API stack) builds on a registered env and
runs a train() step that changes its weights; its module acts through metarl's sampler as on
the adapter, with the LSTM state carried through the trial."""

import numpy as np
import pytest

pytest.importorskip("ray.rllib", reason="the rllib extra is not installed")

import torch  # noqa: E402

from metarl import envs  # noqa: E402
from metarl.envs import make  # noqa: E402
from metarl.evaluation import evaluate_policy  # noqa: E402
from metarl.integrations import TaskEnv  # noqa: E402
from metarl.integrations.rllib import (  # noqa: E402
    ENV_PREFIX,
    RLlibPolicy,
    make_task_env,
    register_envs,
    rl2_ppo_config,
)
from metarl.sampling import LocalSampler  # noqa: E402


def test_every_env_registers_and_builds_its_adapter_from_an_env_config():
    from ray.tune.registry import ENV_CREATOR, _global_registry

    names = register_envs()
    assert names == [ENV_PREFIX + name for name in sorted(envs.REGISTRY)]
    assert all(_global_registry.contains(ENV_CREATOR, name) for name in names)
    creator = _global_registry.get(ENV_CREATOR, ENV_PREFIX + "bandit")
    env = creator({"mode": "trial", "episodes_per_trial": 4, "env_kwargs": {"arms": 3}})
    assert isinstance(env, TaskEnv) and env.episodes_per_trial == 4
    assert env.observation_space.shape == (1 + 3 + 2,)  # obs, one-hot action, reward, flag
    with pytest.raises(ValueError, match=r"unknown env_config keys \['arm'\]"):
        make_task_env("bandit", {"arm": 3})


@pytest.fixture(scope="module")
def algo(ray_local):
    config = rl2_ppo_config("bandit", episodes_per_trial=5, env_kwargs={"arms": 3},
                            lstm_size=16, train_batch_size=100, minibatch_size=50, num_envs=1,
                            num_epochs=1, seed=0)
    algo = config.build_algo()
    yield algo
    algo.stop()


def _weights(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_rllib_ppo_with_an_lstm_runs_a_train_step_on_a_registered_metarl_env(algo):
    module = algo.get_module()
    assert module.is_stateful()  # the LSTM
    before = _weights(module)
    result = algo.train()
    assert result["env_runners"]["num_env_steps_sampled_lifetime"] >= 100
    returns = result["env_runners"]["episode_return_mean"]  # a trial of 5 Bernoulli pulls
    assert 0.0 <= returns <= 5.0
    after = _weights(algo.get_module())
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it learned something


class Recording:
    """The module, recording the action-distribution inputs of each forward pass."""

    def __init__(self, module):
        self.module, self.seen = module, []

    def __getattr__(self, name):
        return getattr(self.module, name)

    def forward_inference(self, batch):
        from ray.rllib.core.columns import Columns

        out = self.module.forward_inference(batch)
        self.seen.append(out[Columns.ACTION_DIST_INPUTS][:, 0].clone())
        return out


def test_the_module_acts_through_metarls_sampler_as_on_the_adapter(ray_local):
    """On a deterministic env, logits and actions equal the module's on the adapter step by
    step through a 3-episode trial; the test fails when the LSTM state is dropped between
    steps."""
    from ray.rllib.core.columns import Columns

    algo = rl2_ppo_config("point-nav", episodes_per_trial=3, env_kwargs={"horizon": 5},
                          lstm_size=16, train_batch_size=30, minibatch_size=15, num_epochs=1,
                          num_envs=1, seed=0).build_algo()
    module = algo.get_module()
    env = make("point-nav", horizon=5)
    tasks = env.split_tasks("test", 2)
    recording = Recording(module)
    rollouts = LocalSampler(env).sample(RLlibPolicy(recording, env, "trial"), tasks, trials=1,
                                        episodes=3, seed=0)
    seen = torch.stack(recording.seen)  # [steps, tasks, action inputs]
    dist_cls = module.get_inference_action_dist_cls()
    for i, task in enumerate(tasks):
        adapter = TaskEnv(make("point-nav", horizon=5), mode="trial", tasks=[task],
                          episodes_per_trial=3)
        obs, _ = adapter.reset(seed=0)
        state = {k: {n: torch.as_tensor(v)[None] for n, v in part.items()}
                 for k, part in module.get_initial_state().items()}
        actions = []
        for step in range(15):
            with torch.no_grad():
                out = module.forward_inference({Columns.OBS: torch.as_tensor(obs)[None, None],
                                                Columns.STATE_IN: state})
            state = out[Columns.STATE_OUT]
            logits = out[Columns.ACTION_DIST_INPUTS][:, 0]
            assert torch.allclose(seen[step, i], logits[0], atol=1e-5), (i, step)
            actions.append(dist_cls.from_logits(logits).to_deterministic().sample()[0].numpy())
            obs, *_ = adapter.step(actions[-1])
        assert np.allclose(rollouts.actions[i, 0].reshape(15, -1), np.stack(actions),
                           atol=1e-5)
    result = evaluate_policy(RLlibPolicy(module, env, "trial"), env, LocalSampler(env),
                             split="test", num_tasks=4, episodes=3, trials=1, seed=0)
    assert result["env_steps"] == 4 * 3 * 5  # the module acted through whole trials
    assert len(result["returns_per_episode"]) == 3
    algo.stop()
