"""Typed run configuration: code defaults, YAML presets and ``key=value`` overrides.

A run is configured by one flat namespace of keys, the same in a YAML preset, on the
command line (``--set key=value``) and in a run directory's ``config.yaml``:

- ``agent``, ``env``: registry names;
- trainer keys (:class:`TrainerConfig`), e.g. ``iterations=200``, ``seed=3``;
- agent keys (the agent's config dataclass), e.g. ``lr=3e-4`` (or ``agent.lr=3e-4``);
- env keys, prefixed ``env.``, e.g. ``env.arms=10`` (the env constructor's arguments).

Every key and value is validated: an unknown key, a wrongly typed value or a value outside
the key's declared range raises :class:`ConfigError` naming it and what would be valid.

A setting's allowed values are declared next to its definition with :func:`setting`::

    discount: float = setting(0.99, UNIT_INTERVAL)             # in [0, 1]
    lr: float = setting(1e-3, POSITIVE)                         # > 0
    activation: str = setting("relu", choices=("relu", "tanh"))
    iterations: int = setting(100, NON_NEGATIVE, resumable=True)  # may change on --resume

:func:`check_settings` checks every field of a config against these declarations (a subclass
that only changes a default keeps its base's declaration); ``build_config`` runs it before
anything is created, and the configs' ``validate()`` methods run it too (they add the checks
that involve several fields).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
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


# ------------------------------------------------------------------ declared ranges
@dataclass(frozen=True)
class Range:
    """The allowed values of a numeric setting: ``low`` and ``high`` bounds (``None``:
    unbounded), inclusive unless ``low_open`` / ``high_open``. NaN and infinities are never
    in a range."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or not (
            value > self.high or (self.high_open and value == self.high))

    def __str__(self) -> str:  # as in "must be <str>": ">= 1", "> 0", "in [0, 1]"
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {_bound(self.low)}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {_bound(self.high)}"
        return (f"in {'(' if self.low_open else '['}{_bound(self.low)}, {_bound(self.high)}"
                f"{')' if self.high_open else ']'}")


def _bound(x: float | None) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def at_least(low: float) -> Range:
    return Range(low)


def between(low: float, high: float, *, low_open: bool = False,
            high_open: bool = False) -> Range:
    return Range(low, high, low_open, high_open)


NON_NEGATIVE = at_least(0)  # >= 0
AT_LEAST_1 = at_least(1)  # counts and sizes
POSITIVE = Range(0, low_open=True)  # > 0: learning rates, scales
UNIT_INTERVAL = between(0, 1)  # discounts, GAE lambdas
OPEN_UNIT_INTERVAL = between(0, 1, low_open=True, high_open=True)
SEEDS = between(0, 2**63 - 1)  # numpy, torch and the counter-based streams all take these


def setting(default: Any, allowed: Range | None = None, *, choices: tuple[str, ...] = (),
            resumable: bool = False) -> Any:
    """A config dataclass field with its allowed values: a numeric ``allowed`` :class:`Range`
    or string ``choices``; ``resumable`` settings may change when a run is resumed
    (``metarl train --resume --set KEY=VALUE``), every other one must equal the stored run's."""
    return field(default=default, metadata={"range": allowed, "choices": tuple(choices),
                                            "resumable": resumable})


def setting_rules(cls: type) -> dict[str, dict[str, Any]]:
    """Each field's declaration (``range``, ``choices``, ``resumable``; ``{}`` when
    undeclared). A subclass that redefines a field only to change its default keeps the
    declaration of the nearest base that made one."""
    rules = {}
    for f in dataclasses.fields(cls):
        rules[f.name] = {}
        for klass in cls.__mro__:
            declared = getattr(klass, "__dataclass_fields__", {}).get(f.name)
            if declared is not None and declared.metadata:
                rules[f.name] = dict(declared.metadata)
                break
    return rules


def check_settings(config: Any) -> None:
    """Every field of the dataclass ``config`` against its declared range or choices; the
    first bad one is a :class:`ConfigError` naming the key, the value and what is allowed."""
    for name, rule in setting_rules(type(config)).items():
        value = getattr(config, name)
        if value is None or isinstance(value, bool):
            continue
        allowed, choices = rule.get("range"), rule.get("choices")
        if allowed is not None and isinstance(value, (int, float)) and value not in allowed:
            raise ConfigError(f"{name} must be {allowed}, got {value!r}")
        if choices and value not in choices:
            raise ConfigError(f"unknown {name} {value!r}; valid: {', '.join(choices)}")


@dataclass
class TrainerConfig:
    """The outer loop, independent of the agent. ``resumable`` keys may change when a run
    is resumed: how long it runs, how often it evaluates and saves, and where it computes
    (which the run's ``segments.jsonl`` records per stretch); what it computes may not."""

    iterations: int = setting(100, NON_NEGATIVE, resumable=True)
    seed: int = setting(0, SEEDS)
    checkpoint_every: int = setting(10, AT_LEAST_1, resumable=True)
    # newest checkpoints kept on disk; 0 keeps all
    keep_checkpoints: int = setting(3, NON_NEGATIVE, resumable=True)
    eval_every: int = setting(0, NON_NEGATIVE, resumable=True)  # 0: evaluate only at the end
    eval_tasks: int = setting(100, AT_LEAST_1)
    device: str = setting("cpu", resumable=True)  # cpu, cuda or cuda:N (checked in build_config)
    # torch intra-op and numpy BLAS threads; 0 = the libraries' defaults (one per core). 1:
    # a little slower than 0 on an idle machine for the small policies, several times
    # faster when other jobs hold the cores (docs/training.md, "Threads and devices")
    threads: int = setting(1, NON_NEGATIVE, resumable=True)


#: env keys that may change on resume besides the resumable fields: where data lives, not
#: what it is (as ``metarl eval --set env.data_dir=DIR``)
RESUMABLE_ENV_KEYS = frozenset({"env.data_dir"})


def resumable_keys(agent_config_cls: type) -> list[str]:
    """The keys a resume may change: resumable trainer and agent fields, and
    :data:`RESUMABLE_ENV_KEYS`."""
    return [name for cls in (TrainerConfig, agent_config_cls)
            for name, rule in setting_rules(cls).items() if rule.get("resumable")] + sorted(
        RESUMABLE_ENV_KEYS)


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
    trainer_config = TrainerConfig(**trainer)
    check_settings(trainer_config)
    agent = {**(agent_defaults or {}), **agent}
    try:
        agent_config = agent_config_cls(**agent)
        check_settings(agent_config)
        validate = getattr(agent_config, "validate", None)
        if validate:
            validate()
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc).strip().splitlines()[0]) from None
    if trainer_config.device not in ("cpu", "cuda") and not trainer_config.device.startswith(
            "cuda:"):
        raise ConfigError(f"unknown device {trainer_config.device!r}; valid devices: cpu, cuda")
    if trainer_config.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"device {trainer_config.device!r} is not available on this "
                              "machine; valid devices: cpu")
    return RunConfig(values["agent"], values["env"], trainer_config, agent_config, env_kwargs)


def dump_yaml(config: RunConfig, path: Path) -> None:
    from metarl.checkpoints import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config.to_flat(), sort_keys=False))
