"""Agents, installed as ``metarl.agents``, and their registry.

Each registry entry names the agent class and its config dataclass; the class is built as
``Agent(env, config, device=...)`` and implements :class:`metarl.agent.Agent`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AgentSpec:
    name: str
    module: str  # under metarl.agents
    agent_class: str
    config_class: str
    description: str
    kind: str = "meta-rl"  # or "few-shot", "baseline"
    envs: tuple[str, ...] = ()  # env families it supports; empty = any

    def load(self) -> tuple[type, type]:
        module = importlib.import_module(f"metarl.agents.{self.module}")
        return getattr(module, self.agent_class), getattr(module, self.config_class)


REGISTRY: dict[str, AgentSpec] = {
    "rl2": AgentSpec("rl2", "rl2", "RL2Agent", "RL2Config",
                     "RL2: GRU policy over (obs, prev action, prev reward, done), PPO outer loop"),
    "maml-trpo": AgentSpec("maml-trpo", "maml_trpo", "MAMLTRPOAgent", "MAMLTRPOConfig",
                           "MAML with a TRPO outer step (Gaussian MLP; continuous actions)"),
    "promp": AgentSpec("promp", "promp", "ProMPAgent", "ProMPConfig",
                       "ProMP: clipped meta-objective, LVC inner estimator (continuous)"),
    "pearl": AgentSpec("pearl", "pearl", "PEARLAgent", "PEARLConfig",
                       "PEARL: SAC with a probabilistic context encoder (continuous)"),
    "grbal": AgentSpec("grbal", "model_based", "ModelBasedAgent", "GrBALConfig",
                       "GrBAL: dynamics model meta-trained for a gradient step on the last M "
                       "steps, MPC", envs=("mujoco",)),
    "rebal": AgentSpec("rebal", "model_based", "ModelBasedAgent", "ReBALConfig",
                       "ReBAL: recurrent dynamics model adapting through its hidden state, MPC",
                       envs=("mujoco",)),
    "mb-mpc": AgentSpec("mb-mpc", "model_based", "ModelBasedAgent", "MBMPCConfig",
                        "one dynamics model for all tasks, MPC (optionally dynamic evaluation)",
                        envs=("mujoco",)),
    "dream": AgentSpec("dream", "dream", "DREAMAgent", "DREAMConfig",
                       "DREAM: exploration rewarded by information gain about the problem ID, "
                       "exploitation on its decoded embedding (recurrent double DQN)"),
    # Stable-Baselines3 baselines on metarl.integrations.TaskEnv (the sb3 extra)
    "sb3-sac": AgentSpec("sb3-sac", "sb3", "SB3Agent", "SB3SACConfig",
                         "SB3's SAC on a TaskEnv: the oracle (mode=task-in-obs) or the "
                         "multi-task policy (mode=resample)", "baseline"),
    "sb3-ppo": AgentSpec("sb3-ppo", "sb3", "SB3Agent", "SB3PPOConfig",
                         "SB3's PPO on a TaskEnv (task-in-obs, resample or trial)", "baseline"),
    "sb3-recurrent-ppo": AgentSpec("sb3-recurrent-ppo", "sb3", "SB3Agent",
                                   "SB3RecurrentPPOConfig",
                                   "sb3-contrib's RecurrentPPO (LSTM) on a TaskEnv; trial mode: "
                                   "an independent RL²", "baseline"),
    # few-shot learners (datasets: sinusoid, omniglot, image-folder)
    "maml": AgentSpec("maml", "fewshot", "MAMLAgent", "MAMLAgentConfig",
                      "MAML (second order) on the shared functional core", "few-shot"),
    "fomaml": AgentSpec("fomaml", "fewshot", "MAMLAgent", "FOMAMLAgentConfig",
                        "first-order MAML", "few-shot"),
    "meta-sgd": AgentSpec("meta-sgd", "fewshot", "MAMLAgent", "MetaSGDAgentConfig",
                          "Meta-SGD: MAML with learned per-weight step sizes", "few-shot"),
    "anil": AgentSpec("anil", "fewshot", "MAMLAgent", "ANILAgentConfig",
                      "ANIL: MAML adapting only the head", "few-shot"),
    "reptile": AgentSpec("reptile", "fewshot", "ReptileAgent", "ReptileAgentConfig",
                         "Reptile: first-order, move toward the adapted weights", "few-shot"),
    "protonet": AgentSpec("protonet", "fewshot", "ProtoNetAgent", "ProtoNetAgentConfig",
                          "Prototypical Networks (classification)", "few-shot"),
    "matchingnet": AgentSpec("matchingnet", "fewshot", "MatchingNetAgent",
                             "MatchingNetAgentConfig",
                             "Matching Networks, optional full context embeddings", "few-shot"),
    "cnp": AgentSpec("cnp", "fewshot", "CNPAgent", "CNPAgentConfig",
                     "conditional neural process (black-box; regression and classification)",
                     "few-shot"),
}


class UnknownAgentError(ValueError):
    pass


def get(name: str) -> AgentSpec:
    if name not in REGISTRY:
        raise UnknownAgentError(
            f"unknown agent {name!r}; valid agents: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def build(name: str, env: Any, config: Any, device: str = "cpu") -> Any:
    agent_cls, _ = get(name).load()
    return agent_cls(env, config, device=device)
