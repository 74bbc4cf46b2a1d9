"""The model-based controllers: MPC on a learned dynamics model that adapts online, and the
uniformly random policy of the first data collection.

:class:`MPCPolicy` implements the :class:`~metarl.policy.Policy` hooks so that adaptation
happens at every step, inside the trial, exactly as GrBAL's sampler does it::

    observe:  append the real transition (s, a, s') to the environment's last-M window
    act:      GrBAL / dynamic evaluation: θ' = θ − α ∇ L(θ; last M transitions), per env
              ReBAL: the hidden state of the recurrent model run from zero over them
              plan on the adapted model with the env's known reward; execute the first action

ReBAL's state is recomputed over the last M transitions at every step rather than carried
through the episode: the model is trained on windows started from the zero state, so a
state carried over hundreds of steps is one it has never seen. The window restarts with
every episode (the reference's running paths do), so a change of dynamics within an
episode is tracked within M steps. All randomness
comes from the per-environment streams of the sampler's :class:`~metarl.random.BatchRNG`: a
``torch.Generator`` per environment is seeded from its stream at ``reset``, so a trial's
actions do not depend on how environments are batched or sharded (up to float32 rounding).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from metarl.meta import InnerLoop, Params
from metarl.meta.dynamics import adapt_online
from metarl.mpc import Planner, make_score, per_env_generators
from metarl.nn.dynamics import DeltaMLP, RecurrentDelta
from metarl.policy import StatelessPolicy
from metarl.random import BatchRNG
from metarl.types import Rollouts, Task, Transition

#: the env's known reward of predicted transitions: ``reward(obs, act, next_obs) -> [B, C]``
#: for ``B`` environments (in the order of the trial) x ``C`` candidates
RewardFn = Callable[[Tensor, Tensor, Tensor, Sequence[Task]], Tensor]


class UniformRandomPolicy(StatelessPolicy):
    """Actions uniform in the box ``[low, high]`` (the first iteration's data)."""

    def __init__(self, low: np.ndarray, high: np.ndarray):
        self.low, self.high = np.asarray(low), np.asarray(high)

    def act(self, obs: Tensor, state: BatchRNG) -> tuple[Tensor, BatchRNG, dict]:
        u = state.random((state.size, *self.low.shape))
        return torch.as_tensor(self.low + u * (self.high - self.low)), state, {}


@dataclass
class _Trial:
    """A trial's adaptation state: the last ``M`` real transitions of every environment
    (oldest first; ``valid`` marks the filled slots)."""

    tasks: tuple[Task, ...]  # per environment
    generators: list[torch.Generator]  # per environment, for the planner's candidates
    obs: Tensor  # [B, M, d]
    actions: Tensor  # [B, M, a]
    next_obs: Tensor  # [B, M, d]
    valid: Tensor  # bool [B, M]
    plan: Any = None  # the planner's warm start (CEM, MPPI), None at an episode's start


class MPCPolicy:
    """MPC on ``model`` with ``planner`` and the env's known ``reward``; ``adaptation`` is
    ``"none"`` (θ as trained), ``"gradient"`` (GrBAL's inner step, or dynamic evaluation on a
    model trained without meta-learning) or ``"recurrent"`` (ReBAL). See the module
    docstring."""

    def __init__(self, model: DeltaMLP | RecurrentDelta, planner: Planner, reward: RewardFn,
                 low: np.ndarray, high: np.ndarray, *, adaptation: str, window: int,
                 inner: InnerLoop | None = None, step_sizes: Params | None = None,
                 discount: float = 1.0):
        if adaptation not in ("none", "gradient", "recurrent"):
            raise ValueError(f"unknown adaptation {adaptation!r}")
        if (adaptation == "recurrent") != isinstance(model, RecurrentDelta):
            raise ValueError("the recurrent adaptation needs a recurrent model and vice versa")
        self.model, self.planner, self.reward = model, planner, reward
        self.adaptation, self.window, self.inner = adaptation, window, inner
        self.step_sizes, self.discount = step_sizes, discount
        self.device = next(model.parameters()).device
        self.low = torch.as_tensor(np.asarray(low), dtype=torch.float32, device=self.device)
        self.high = torch.as_tensor(np.asarray(high), dtype=torch.float32, device=self.device)

    # ------------------------------------------------------------------ hooks
    def reset(self, tasks: Sequence[Task], trials: int, rng: BatchRNG) -> _Trial:
        per_env = tuple(task for task in tasks for _ in range(trials))
        return self._empty(per_env, per_env_generators(rng.child("mpc").seeds()))

    def _empty(self, tasks: tuple[Task, ...], generators: list[torch.Generator]) -> _Trial:
        b, m = len(tasks), self.window
        obs_dim = self.model.obs_dim
        zeros = torch.zeros
        return _Trial(tasks, generators, zeros(b, m, obs_dim, device=self.device),
                      zeros(b, m, self.model.act_dim, device=self.device),
                      zeros(b, m, obs_dim, device=self.device),
                      zeros(b, m, dtype=torch.bool, device=self.device))

    @torch.no_grad()
    def observe(self, state: _Trial, step: Transition) -> _Trial:
        """Append the real transition of every environment still in its episode."""
        keep = torch.as_tensor(step.valid, device=self.device)
        new = [torch.as_tensor(x, dtype=torch.float32, device=self.device)
               for x in (step.observations, step.actions, step.next_observations)]
        for name, value in zip(("obs", "actions", "next_obs"), new, strict=True):
            window = getattr(state, name)
            shifted = torch.cat([window[:, 1:], value[:, None]], 1)
            setattr(state, name, torch.where(keep[:, None, None], shifted, window))
        shifted = torch.cat([state.valid[:, 1:], keep[:, None]], 1)
        state.valid = torch.where(keep[:, None], shifted, state.valid)
        return state

    def end_episode(self, state: _Trial, episode: Rollouts) -> _Trial:
        """A new episode starts a new window, as in GrBAL's sampler."""
        return self._empty(state.tasks, state.generators)

    def act(self, obs: Tensor, state: _Trial) -> tuple[Tensor, _Trial, dict[str, Tensor]]:
        obs = obs.to(self.device, torch.float32).reshape(obs.shape[0], -1)
        step, carry, per_env = self.adapted_model(state)
        tasks = state.tasks
        # per-environment models are batched matmuls of one environment's rows each: those
        # need all of an environment's candidates in one block to run at full speed
        score = make_score(step, lambda s, a, s2: self.reward(s, a, s2, tasks), obs,
                           carry=carry, discount=self.discount,
                           block_rows=0 if per_env else None)
        action, info = self.planner.plan(score, obs.shape[0], self.low, self.high,
                                         state.generators, state=state.plan)
        state.plan = info["state"]
        return action, state, {}

    # ------------------------------------------------------------------ model
    def adapted_model(self, state: _Trial) -> tuple[Callable, Tensor | None, bool]:
        """The planner's model ``step(obs[B, C, d], act[B, C, a], carry)`` after this step's
        adaptation, its initial carry, and whether each environment has its own parameters."""
        model = self.model
        if self.adaptation == "recurrent":
            def recurrent(s: Tensor, a: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
                h, s_next = model.step(h, s, a)
                return s_next, h
            with torch.no_grad():
                hidden = model.window_state(state.obs, state.actions, state.valid)
            return recurrent, hidden, False
        if self.adaptation == "gradient" and bool(state.valid.any()):
            params = adapt_online(model, dict(model.named_parameters()), self.inner,
                                  (state.obs, state.actions, state.next_obs), state.valid,
                                  step_sizes=self.step_sizes)
            return (lambda s, a, _: (model.predict_per_env(params, s, a), None)), None, True
        return (lambda s, a, _: (model.predict(s, a), None)), None, False
