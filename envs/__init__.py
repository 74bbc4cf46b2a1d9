"""Task-distribution environments and their registry.

``make(name, **kwargs)`` builds a task distribution by name; every one is also registered
with gymnasium as ``"metarl/<name>"`` (e.g. ``gymnasium.make("metarl/bandit", arms=10)``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium

from metarl.envs_api import MetaEnv


@dataclass(frozen=True)
class EnvSpec:
    name: str
    entry_point: str  # "module:Class", module relative to metarl.envs
    description: str
    family: str  # "numpy", "mujoco" or "metaworld"

    def load(self) -> Callable[..., MetaEnv]:
        module, cls = self.entry_point.split(":")
        return getattr(importlib.import_module(f"metarl.envs.{module}"), cls)


REGISTRY: dict[str, EnvSpec] = {}


def register(name: str, entry_point: str, description: str, family: str = "numpy") -> None:
    REGISTRY[name] = EnvSpec(name, entry_point, description, family)
    gym_id = f"metarl/{name}"
    if gym_id not in gymnasium.registry:
        gymnasium.register(id=gym_id, entry_point=f"metarl.envs.{entry_point}",
                           disable_env_checker=True)


register("bandit", "bandit:BanditEnv",
         "k-armed Bernoulli bandit, arm means ~U[0,1], one pull per episode (RL2 Table 1)")
register("tabular-mdp", "tabular_mdp:TabularMDPEnv",
         "random MDP, |S|=10 |A|=5, rewards N(N(1,1),1), Dirichlet(1) transitions, horizon 10")
register("maze", "maze:MazeEnv",
         "random 7x7 DFS maze, hidden goal far from the start, -0.04/step, +1 at goal (RL2)")
register("maze-sign", "maze:MazeSignEnv",
         "maze whose goal is a corner revealed only at a sign cell far from the start (DREAM)")
register("dream-bus", "dream_grid:DreamBusEnv",
         "DREAM's distracting bus: 9x9 grid, 4 bus routes + 4 useless buses, goal corner, "
         "exploration episode first, T=20")
register("dream-map", "dream_grid:DreamMapEnv",
         "DREAM's map grid: 9x9 grid, 4 bus routes revealed by a map tile, goal corner, "
         "exploration episode first, T=20")
register("point-nav", "point_nav:PointNavEnv",
         "2-D point to a goal ~U[-0.5,0.5]^2, actions clipped to 0.1, reward -distance, T=100")
register("cheetah-vel", "mujoco_tasks:CheetahVelEnv",
         "HalfCheetah-v5, target velocity ~U[0,3], reward -|v-v*| - 0.05|a|^2, T=200",
         family="mujoco")
register("cheetah-dir", "mujoco_tasks:CheetahDirEnv",
         "HalfCheetah-v5, direction d=+-1, reward d*v - 0.05|a|^2, T=200", family="mujoco")
register("cheetah-crippled", "mujoco_tasks:CheetahCrippledEnv",
         "HalfCheetah-v5, one joint's action zeroed per task, reward v - 0.05|a|^2, T=200 (GrBAL)",
         family="mujoco")
register("ant-dir", "mujoco_tasks:AntDirEnv",
         "Ant-v5, no termination, direction +-x (or random angle), reward u.v - 0.005|a|^2, T=200",
         family="mujoco")
register("ant-goal", "mujoco_tasks:AntGoalEnv",
         "Ant-v5, no termination, goal uniform in a disc r=3, reward -|p-g|_1 - 0.1|a|^2, T=200",
         family="mujoco")
register("ant-broken-leg", "mujoco_tasks:AntBrokenLegEnv",
         "Ant-v5, no termination, one leg's 2 actuators disabled, reward v - 0.005|a|^2, T=200",
         family="mujoco")
register("metaworld-ml1", "metaworld_adapter:MetaWorldML1Env",
         "Meta-World ML1 (task_name, default reach-v3): its 50 train / 50 test goal positions, "
         "T=500 (extra)", family="metaworld")
register("metaworld-ml10", "metaworld_adapter:MetaWorldML10Env",
         "Meta-World ML10: 10 train / 5 held-out test classes x 50 goal positions, T=500 (extra)",
         family="metaworld")


class UnknownEnvError(ValueError):
    pass


def make(name: str, **kwargs) -> MetaEnv:
    """Build the task distribution registered as ``name``."""
    if name not in REGISTRY:
        raise UnknownEnvError(f"unknown env {name!r}; valid envs: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name].load()(**kwargs)


__all__ = ["REGISTRY", "EnvSpec", "MetaEnv", "UnknownEnvError", "make", "register"]
