"""The Agent protocol the Trainer and ``metarl eval`` drive, and the base of the meta-RL agents.

An agent says three things about itself, so that no caller guesses:

* what its "env" is: :meth:`Agent.env_factory` (whose signature lists the ``env.`` keys)
  and :meth:`Agent.make_env` (a task distribution for the meta-RL agents, a dataset for the
  few-shot learners);
* whether it needs an environment sampler (:attr:`Agent.uses_sampler`);
* how it is evaluated: :meth:`Agent.evaluate` returns a dict whose ``"summary"`` holds the
  headline figures (e.g. ``trial_return``, or ``accuracy`` and ``ci95``), and whose other
  keys are details (the adaptation curve ``returns_per_episode`` of an RL agent).

Meta-RL agents derive from :class:`MetaRLAgent`: their evaluation runs trials of
``self.policy()`` on held-out tasks (:func:`metarl.evaluation.evaluate_policy`) with the
agent's own trial shape, :attr:`MetaRLAgent.eval_episodes` x :meth:`MetaRLAgent.eval_trials`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from metarl.evaluation import EvalRequest, evaluate_policy
from metarl.memory import Factor, MemoryNeed, rollout_need, steps_key

if TYPE_CHECKING:
    from metarl.envs_api import MetaEnv
    from metarl.policy import Policy
    from metarl.sampling import Sampler


@runtime_checkable
class Agent(Protocol):
    """What the Trainer drives: an update rule, a data schedule and an evaluation."""

    #: whether :meth:`train_iteration` and :meth:`evaluate` take an environment sampler
    uses_sampler: ClassVar[bool]
    #: held-out tasks of an evaluation when the request does not say
    default_eval_tasks: ClassVar[int]

    @classmethod
    def env_factory(cls, env: str) -> Callable[..., Any]:
        """The constructor of ``env`` (its keyword arguments are the valid ``env.`` keys);
        raises ``ValueError`` naming the valid envs for an unknown one."""

    @classmethod
    def config_defaults(cls, env: str, config_cls: type) -> dict[str, Any]:
        """Settings of ``config_cls`` that differ by env (applied before the user's
        overrides)."""

    @classmethod
    def make_env(cls, env: str, env_kwargs: dict[str, Any], config: Any) -> Any:
        """The agent's "env" built from the validated settings."""

    @classmethod
    def memory_needs(cls, config: Any, env: Any) -> list[MemoryNeed]:
        """What a run with ``config`` (a :class:`~metarl.config.RunConfig`) allocates at
        once, each buffer on its own (:mod:`metarl.memory`; the CLI refuses a run whose
        largest need exceeds the machine's memory)."""

    def train_iteration(self, sampler: Sampler | None,
                        rng: np.random.Generator) -> dict[str, float]:
        """Collect data (with ``sampler`` where the agent uses one) and update; returns
        scalar metrics to log."""

    def evaluate(self, env: Any, sampler: Sampler | None,
                 request: EvalRequest) -> dict[str, Any]:
        """Held-out performance; ``result["summary"]`` holds the headline figures."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class MetaRLAgent:
    """Base of the meta-RL agents: env and evaluation defaults of the Agent protocol.

    Subclasses implement ``train_iteration``, ``policy``, ``state_dict`` and
    ``load_state_dict``, and set :attr:`eval_episodes` / override :meth:`eval_trials` when
    their trial differs from the default (3 episodes, one trial per task)."""

    uses_sampler: ClassVar[bool] = True
    default_eval_tasks: ClassVar[int] = 100
    #: episodes per evaluation trial (RL² overrides it with its trained trial length)
    eval_episodes: int = 3

    @classmethod
    def env_factory(cls, env: str) -> Callable[..., Any]:
        from metarl import envs

        spec = envs.REGISTRY.get(env)
        if spec is None:
            envs.make(env)  # raises UnknownEnvError with the valid names
        return spec.load()

    @classmethod
    def config_defaults(cls, env: str, config_cls: type) -> dict[str, Any]:
        return {}

    @classmethod
    def make_env(cls, env: str, env_kwargs: dict[str, Any], config: Any) -> MetaEnv:
        from metarl import envs

        return envs.make(env, **env_kwargs)

    @classmethod
    def memory_needs(cls, config: Any, env: MetaEnv) -> list[MemoryNeed]:
        """The default: an evaluation's rollouts (``eval_tasks`` x 1 x
        :attr:`eval_episodes`); agents add their iteration's buffers."""
        return [cls.rollouts(config, env, "an evaluation's rollouts",
                             ("tasks", "eval_tasks", config.trainer.eval_tasks),
                             ("trials", None, 1), ("episodes", None, cls.eval_episodes))]

    @classmethod
    def rollouts(cls, config: Any, env: MetaEnv, what: str, tasks: Factor, trials: Factor,
                 episodes: Factor) -> MemoryNeed:
        """A sampler's rollouts of tasks x trials x episodes of ``env``
        (:func:`metarl.memory.rollout_need`)."""
        return rollout_need(what, env, steps_key(cls.env_factory(config.env)), tasks, trials,
                            episodes)

    def eval_trials(self) -> int:
        """Trials per task in an evaluation (gradient-based agents adapt on all trials of a
        task together, so they are evaluated with as many as they train with)."""
        return 1

    def policy(self, deterministic: bool = False) -> Policy:
        raise NotImplementedError

    def evaluate(self, env: MetaEnv, sampler: Sampler, request: EvalRequest) -> dict[str, Any]:
        return evaluate_policy(self.policy(request.deterministic), env, sampler,
                               split=request.split,
                               num_tasks=request.num_tasks or self.default_eval_tasks,
                               episodes=request.episodes or self.eval_episodes,
                               trials=self.eval_trials(), seed=request.seed)
