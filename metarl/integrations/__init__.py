"""metarl's task distributions in other libraries: :mod:`metarl.integrations.adapters` makes
any of them a plain single-agent ``gymnasium.Env`` (oracle, multi-task and RL²-trial modes)."""

from metarl.integrations.adapters import MODES, TaskEnv, previous_step_features, task_vector

__all__ = ["MODES", "TaskEnv", "previous_step_features", "task_vector"]
