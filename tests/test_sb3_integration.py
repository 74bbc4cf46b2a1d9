"""SB3 models as metarl policies (metarl.integrations.sb3): the observations SB3Policy builds
for a batch are the adapter's, step for step; an SB3 PPO trained 2,000 steps in trial mode is
evaluated by metarl's own evaluator."""

import numpy as np
import pytest

from metarl.envs import make
from metarl.evaluation import evaluate_policy
from metarl.integrations import TaskEnv
from metarl.integrations.sb3 import SB3Policy
from metarl.sampling import LocalSampler


class Recorder:
    """A stand-in for an SB3 model: records what ``predict`` sees, acts with a fixed action."""

    def __init__(self, action):
        self.action, self.seen = np.asarray(action), []

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        self.seen.append(observation.copy())
        return np.repeat(self.action[None], len(observation), axis=0), state


@pytest.mark.parametrize("mode", ["task-in-obs", "resample", "trial"])
def test_the_policy_sees_what_the_adapter_shows(mode):
    env = make("point-nav")  # deterministic: the same actions give the same observations
    tasks = env.split_tasks("test", 2)
    action = np.array([0.07, -0.03], dtype=np.float32)
    model = Recorder(action)
    LocalSampler(env).sample(SB3Policy(model, env, mode), tasks, trials=1, episodes=2, seed=0)
    seen = np.stack(model.seen)  # [steps, envs, obs]
    for i, task in enumerate(tasks):
        adapter = TaskEnv("point-nav", mode=mode, tasks=[task], episodes_per_trial=2)
        obs, _ = adapter.reset(seed=0)
        shown = [obs]
        for _ in range(len(seen) - 1):
            obs, _, terminated, truncated, _ = adapter.step(action)
            if mode != "trial" and (terminated or truncated):  # the next gymnasium episode
                obs, _ = adapter.reset(seed=0)
            shown.append(obs)
        assert np.allclose(seen[:, i], np.stack(shown), atol=1e-6), mode


def test_sb3_ppo_trains_in_trial_mode_and_is_evaluated_by_metarl():
    sb3 = pytest.importorskip("stable_baselines3")
    adapter = TaskEnv("bandit", mode="trial", episodes_per_trial=10)
    model = sb3.PPO("MlpPolicy", adapter, n_steps=500, batch_size=100, n_epochs=2, seed=0,
                    device="cpu").learn(2000)
    assert model.num_timesteps == 2000
    env = make("bandit")
    result = evaluate_policy(SB3Policy(model, env, "trial"), env, LocalSampler(env),
                             split="test", num_tasks=50, episodes=10, trials=1, seed=0)
    assert result["num_tasks"] == 50 and len(result["returns_per_episode"]) == 10
    assert result["env_steps"] == 50 * 10  # ten one-pull episodes a task, through SB3Policy
    assert 0.0 <= result["trial_return"] <= 10.0


def test_a_recurrent_model_keeps_its_state_through_the_trial_as_on_the_adapter():
    """sb3-contrib's RecurrentPPO (an independent RL²): its actions through SB3Policy in
    metarl's sampler equal its actions on the adapter, with the LSTM state carried across
    the trial's episodes and reset at the trial's start."""
    contrib = pytest.importorskip("sb3_contrib")
    env = make("point-nav", horizon=5)
    tasks = env.split_tasks("test", 2)
    adapter = TaskEnv(make("point-nav", horizon=5), mode="trial", episodes_per_trial=3)
    model = contrib.RecurrentPPO("MlpLstmPolicy", adapter, n_steps=16, seed=0, device="cpu")
    rollouts = LocalSampler(env).sample(SB3Policy(model, env, "trial"), tasks, trials=1,
                                        episodes=3, seed=0)
    for i, task in enumerate(tasks):
        adapter.tasks = [task]
        obs, _ = adapter.reset(seed=0)
        hidden, start, actions = None, np.ones(1, dtype=bool), []
        for _ in range(15):
            action, hidden = model.predict(obs[None], state=hidden, episode_start=start,
                                           deterministic=True)
            start = np.zeros(1, dtype=bool)
            actions.append(action[0])
            obs, *_ = adapter.step(action[0])
        assert np.allclose(rollouts.actions[i, 0].reshape(15, -1), np.stack(actions),
                           atol=1e-6)
