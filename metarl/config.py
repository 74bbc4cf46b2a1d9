"""Typed run configuration: code defaults, YAML presets and ``key=value`` overrides.

A run is configured by one flat namespace of keys, the same in a YAML preset, on the
command line (``--set key=value``) and in a run directory's ``config.yaml``:

- ``agent``, ``env``: registry names;
- trainer keys (:class:`TrainerConfig`), e.g. ``iterations=200``, ``seed=3``;
- agent keys (the agent's config dataclass), e.g. ``lr=3e-4`` (or ``agent.lr=3e-4``);
- env keys, prefixed ``env.``, e.g. ``env.arms=10`` (the env constructor's arguments).

Every key and value is validated: an unknown key or a wrongly typed value raises
:class:`ConfigError` naming it and what would be valid.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: The presets shipped with the package (``metarl train --config rl2/bandit-k5-n10``).
PRESETS_DIR = Path(__file__).resolve().parent / "presets"


def preset_names() -> list[str]:
    """Every preset as ``family/name`` (the form ``--config`` takes)."""
    return sorted(p.relative_to(PRESETS_DIR).with_suffix("").as_posix()
                  for p in PRESETS_DIR.rglob("*.yaml"))


class ConfigError(ValueError):
    """Invalid configuration (unknown key, wrong type, bad value)."""


@dataclass
class TrainerConfig:
    """The outer loop, independent of the agent."""

    iterations: int = 100
    seed: int = 0
    checkpoint_every: int = 10
    keep_checkpoints: int = 3  # newest checkpoints kept on disk; 0 keeps all
    eval_every: int = 0  # 0: evaluate only at the end
    eval_tasks: int = 100
    device: str = "cpu"
    threads: int = 0  # torch intra-op and numpy BLAS threads; 0 = their defaults


@dataclass
class RunConfig:
    agent: str
    env: str
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    agent_config: Any = None
    env_kwargs: dict[str, Any] = field(default_factory=dict)

    def to_flat(self) -> dict[str, Any]:
        """The flat key namespace (what ``config.yaml`` holds)."""
        out: dict[str, Any] = {"agent": self.agent, "env": self.env}
        out.update({f"env.{k}": v for k, v in sorted(self.env_kwargs.items())})
        out.update(dataclasses.asdict(self.trainer))
        out.update(dataclasses.asdict(self.agent_config))
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def coerce(key: str, value: Any, tp: Any) -> Any:
    """``value`` checked (and losslessly converted) to the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(key, value, arg)
            except ConfigError:
                continue
        raise ConfigError(f"config key {key!r} expects {_type_name(tp)}, got {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r} expects a list, got {value!r}")
        inner = args[0] if args else Any
        return origin(coerce(key, v, inner) for v in value)
    if tp is Any or origin is dict:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise ConfigError(f"config key {key!r} expects {_type_name(tp)}, got {value!r}")


def parse_value(text: str) -> Any:
    """A command-line value, parsed as YAML (``3`` → int, ``1e-3`` → float, ``[1,2]``)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value) if any(c in value.lower() for c in "e.") else value
        except ValueError:
            return value
    return value


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["lr=1e-3", "env.arms=10"]`` → ``{"lr": 0.001, "env.arms": 10}``."""
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key=value")
        out[key.strip()] = parse_value(text.strip())
    return out


def load_yaml(path: str | Path, _inheriting: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The flat key: value mapping of a config file. ``base: FILE`` (relative to this file)
    inherits FILE's keys, which this file's own keys override."""
    path = Path(path)
    if path.resolve() in _inheriting:
        raise ConfigError(f"config file {str(path)!r} inherits from itself through 'base'")
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "parse error"
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {first}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of key: value")
    values = _flatten_sections(data)
    base = values.pop("base", None)
    if base is None:
        return values
    if not isinstance(base, str):
        raise ConfigError(f"'base' in {str(path)!r} must be a file name, got {base!r}")
    return {**load_yaml(path.parent / base, (*_inheriting, path.resolve())), **values}


def _flatten_sections(data: dict[str, Any]) -> dict[str, Any]:
    """Allow ``env: {name:..}``-free nested sections ``agent_config:``/``env_kwargs:``."""
    out = {}
    for key, value in data.items():
        if key in ("env_kwargs", "agent_config", "trainer") and isinstance(value, dict):
            prefix = "env." if key == "env_kwargs" else ""
            out.update({f"{prefix}{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def env_parameters(env_factory: Any) -> dict[str, inspect.Parameter]:
    params = inspect.signature(env_factory).parameters
    return {k: p for k, p in params.items()
            if k not in ("self", "render_mode") and p.kind is p.POSITIONAL_OR_KEYWORD}


def build_config(values: dict[str, Any], agent_config_cls: type, env_factory: Any,
                 agent_defaults: dict[str, Any] | None = None) -> RunConfig:
    """Validate the flat ``values`` (must include ``agent`` and ``env``) into a RunConfig;
    ``agent_defaults`` (the agent's settings for this env) apply before ``values``."""
    trainer_types = _field_types(TrainerConfig)
    agent_types = _field_types(agent_config_cls)
    env_params = env_parameters(env_factory)
    trainer, agent, env_kwargs = {}, {}, {}
    for key, value in values.items():
        if key in ("agent", "env"):
            continue
        if key.startswith("env."):
            name = key[4:]
            if name not in env_params:
                valid = ", ".join(f"env.{p}" for p in env_params) or "none"
                raise ConfigError(f"unknown env key {key!r} for env {values['env']!r}; "
                                  f"valid env keys: {valid}")
            default = env_params[name].default
            tp = type(default) if default is not inspect.Parameter.empty and default is not None \
                else Any
            env_kwargs[name] = coerce(key, value, float if tp is float else tp)
        elif key.removeprefix("agent.") in agent_types:
            name = key.removeprefix("agent.")
            agent[name] = coerce(key, value, agent_types[name])
        elif key in trainer_types:
            trainer[key] = coerce(key, value, trainer_types[key])
        elif key in (retired := getattr(agent_config_cls, "RETIRED_OPTIONS", {})):
            if value != retired[key]:  # an older run's config: fine where it was a no-op
                raise ConfigError(f"option {key}={value!r} was removed from agent "
                                  f"{values['agent']!r}; only {key}={retired[key]!r} (its "
                                  f"old default) is still accepted, and ignored")
        else:
            valid = sorted(trainer_types) + sorted(agent_types) + [f"env.{p}" for p in env_params]
            raise ConfigError(f"unknown config key {key!r} for agent {values['agent']!r}; "
                              f"valid keys: {', '.join(valid)}")
    agent = {**(agent_defaults or {}), **agent}
    try:
        agent_config = agent_config_cls(**agent)
        validate = getattr(agent_config, "validate", None)
        if validate:
            validate()
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    trainer_config = TrainerConfig(**trainer)
    if trainer_config.iterations < 0:
        raise ConfigError(f"iterations must be >= 0, got {trainer_config.iterations}")
    if trainer_config.device not in ("cpu", "cuda") and not trainer_config.device.startswith(
            "cuda:"):
        raise ConfigError(f"unknown device {trainer_config.device!r}; valid devices: cpu, cuda")
    if trainer_config.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"device {trainer_config.device!r} is not available on this "
                              "machine; valid devices: cpu")
    if trainer_config.checkpoint_every < 1:
        raise ConfigError(f"checkpoint_every must be >= 1, got {trainer_config.checkpoint_every}")
    return RunConfig(values["agent"], values["env"], trainer_config, agent_config, env_kwargs)


def dump_yaml(config: RunConfig, path: Path) -> None:
    from metarl.checkpoints import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config.to_flat(), sort_keys=False))
