"""Bad values are refused up front: exit code 2, one line naming the key, the value and what
is allowed, and nothing created on disk. Covers the declared ranges of every config field
(metarl/config.py ``setting``), the memory estimate (each agent's ``memory_needs``,
metarl/memory.py) and unwritable ``--out`` paths."""

import dataclasses
import json
import typing
from pathlib import Path

import pytest

from metarl import agents
from metarl.cli import main
from metarl.config import TrainerConfig, setting_rules
from metarl.memory import format_bytes, physical_memory

#: an env each agent trains on (the few-shot metric learners classify; their ranges are
#: checked before any data is read)
AGENT_ENV = {"rl2": "bandit", "maml-trpo": "point-nav", "promp": "point-nav",
             "pearl": "point-nav", "maml": "sinusoid", "fomaml": "sinusoid",
             "meta-sgd": "sinusoid", "anil": "sinusoid", "reptile": "sinusoid",
             "protonet": "omniglot", "matchingnet": "omniglot", "cnp": "sinusoid",
             "grbal": "cheetah-crippled", "rebal": "cheetah-crippled",
             "mb-mpc": "cheetah-crippled", "dream": "dream-bus", "sb3-sac": "point-nav",
             "sb3-ppo": "bandit", "sb3-recurrent-ppo": "bandit"}
TINY = ["--set", "tasks_per_iteration=4", "episodes_per_trial=2", "eval_tasks=2",
        "hidden_size=8", "threads=1"]
NUMERIC = (int, float, int | None, float | None)


def listing(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with a file's bytes (None for a directory)."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(root.rglob("*"))}


def refused(argv: list[str], capsys) -> str:
    """Run ``metarl ARGV`` in-process; it must exit 2 with one line on stderr (returned
    without the ``metarl: error: `` prefix)."""
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.endswith("\n") and captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith("metarl: error: "), captured.err
    return captured.err.removeprefix("metarl: error: ").removesuffix("\n")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty working directory (so a default ``runs/...`` would show up too)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---------------------------------------------------------------------- named bad values
@pytest.mark.parametrize(("args", "line"), [
    (["--sampler", "ray", "--workers", "0"], "--workers must be >= 1, got 0"),
    (["--sampler", "nope"], "unknown sampler 'nope'; valid samplers: local, ray"),
    (["--seed", "-1"], "seed must be in [0, 9223372036854775807], got -1"),
    (["--iterations", "-1"], "iterations must be >= 0, got -1"),
    (["--set", "threads=-1"], "threads must be >= 0, got -1"),
    (["--set", "eval_tasks=0"], "eval_tasks must be >= 1, got 0"),
    (["--set", "eval_every=-1"], "eval_every must be >= 0, got -1"),
    (["--set", "checkpoint_every=0"], "checkpoint_every must be >= 1, got 0"),
    (["--set", "keep_checkpoints=-2"], "keep_checkpoints must be >= 0, got -2"),
    (["--set", "lr=-1"], "lr must be > 0, got -1.0"),
    (["--set", "lr=.nan"], "lr must be > 0, got nan"),
    (["--set", "gae_lambda=2"], "gae_lambda must be in [0, 1], got 2.0"),
    (["--set", "clip=0"], "clip must be in (0, 1], got 0.0"),
    (["--set", "value_target_lambda=-0.5"], "value_target_lambda must be in [0, 1], got -0.5"),
    (["--set", "minibatches=8", "tasks_per_iteration=4"],
     "minibatches (8) must not exceed tasks_per_iteration (4)"),
])
def test_a_bad_value_is_one_line_and_nothing_is_created(args, line, workdir, capsys):
    run = workdir / "run"
    assert refused(["train", "rl2", "bandit", "--run-dir", str(run), *args], capsys) == line
    assert listing(workdir) == {}


def test_an_unreachable_ray_head_is_one_line_within_seconds(workdir, capsys):
    """Ray's own connection attempt waits minutes; the CLI checks the port first."""
    import socket
    import time

    with socket.socket() as s:  # a port nothing listens on once the socket is closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tick = time.monotonic()
    line = refused(["train", "rl2", "bandit", "--sampler", "ray", "--ray-address",
                    f"127.0.0.1:{port}", "--run-dir", str(workdir / "run")], capsys)
    assert line.startswith(f"cannot reach a Ray head at --ray-address '127.0.0.1:{port}': "
                           f"nothing answers at 127.0.0.1:{port}")
    assert time.monotonic() - tick < 30 and listing(workdir) == {}
    assert refused(["train", "rl2", "bandit", "--sampler", "ray", "--ray-address", "nohost"],
                   capsys) == ("cannot reach a Ray head at --ray-address 'nohost': 'nohost' is "
                               "not host:port; start one with `ray start --head` or pass its "
                               "address")


# ---------------------------------------------------------------------------- sweeps
SWEEP = ["sweep", "rl2", "bandit", "--storage", "sweeps"]


@pytest.mark.parametrize(("args", "line"), [
    (["--grid", "lr"], "--grid 'lr' is not of the form key=value1,value2,..."),
    (["--grid", "lr=1e-3,"], "--grid 'lr=1e-3,' is not of the form key=value1,value2,..."),
    (["--grid", "seed=1,2"], "--grid seed=... is not a setting to sweep; use --seeds"),
    (["--grid", "lr=1e-3", "lr=1e-2"], "--grid lr is given twice"),
    (["--grid", "lrr=1,2"], "unknown config key 'lrr'"),
    (["--grid", "lr=1e-3,fast"], "config key 'lr' expects float, got 'fast'"),
    (["--grid", "env.arms=5,1"], "env 'bandit': arms must be >= 2, got 1"),
    (["--seeds", "0", "-1"], "--seeds must be in [0, 9223372036854775807], got -1"),
    (["--seeds", "1", "1"], "--seeds has a seed twice: [1, 1]"),
    (["--cpus", "0"], "--cpus must be > 0, got 0.0"),
    (["--max-failures", "-1"], "--max-failures must be >= 0, got -1"),
    (["--max-concurrent", "0"], "--max-concurrent must be >= 1, got 0"),
    (["--sampler", "ray", "--workers", "0"], "--workers must be >= 1, got 0"),
    (["--resume"], "--resume needs --name NAME of the sweep under --storage"),
    (["--resume", "--name", "none"], "no sweep 'none' under --storage 'sweeps' to resume"),
])
def test_a_bad_sweep_is_one_line_and_nothing_is_created(args, line, workdir, capsys):
    """Every trial's config is checked before Ray starts or anything is written."""
    assert refused([*SWEEP, *args], capsys).startswith(line)
    assert listing(workdir) == {}


def test_a_sweep_setting_that_cannot_fit_in_memory_is_refused(workdir, capsys):
    line = refused([*SWEEP, "--grid", "eval_tasks=4,1000000000"], capsys)
    assert "an evaluation's rollouts" in line and "eval_tasks" in line
    assert listing(workdir) == {}


def test_a_sweep_that_exists_is_not_mixed_with_a_new_one(workdir, capsys):
    (workdir / "sweeps" / "rl2-bandit").mkdir(parents=True)
    (workdir / "sweeps" / "rl2-bandit" / "sweep.json").write_text("{}")
    before = listing(workdir)
    assert refused(SWEEP, capsys) == (
        f"{str(workdir / 'sweeps' / 'rl2-bandit')!r} already holds a sweep; continue it with "
        f"--resume --name rl2-bandit or choose another --name")
    (workdir / "file").write_text("")
    assert refused([*SWEEP[:3], "--storage", "file"], capsys) == (
        "--storage 'file' is not a directory")
    assert listing(workdir) == {**before, "file": b""}


def test_a_sweep_with_an_unreachable_ray_head_is_one_line(workdir, capsys):
    assert refused([*SWEEP, "--ray-address", "nohost"], capsys).startswith(
        "cannot reach a Ray head at --ray-address 'nohost': 'nohost' is not host:port")
    assert listing(workdir) == {}


@pytest.mark.parametrize("agent", [name for name, spec in agents.REGISTRY.items()
                                   if "discount" in {f.name for f in dataclasses.fields(
                                       spec.load()[1])}])
def test_discount_above_1_is_refused_for_every_agent_with_a_discount(agent, workdir, capsys):
    assert refused(["train", agent, AGENT_ENV[agent], "--set", "discount=5"],
                   capsys) == "discount must be in [0, 1], got 5.0"
    assert listing(workdir) == {}


def test_every_agent_with_a_discount_was_checked():
    with_discount = {name for name, spec in agents.REGISTRY.items()
                     if "discount" in {f.name for f in dataclasses.fields(spec.load()[1])}}
    assert with_discount == {"rl2", "maml-trpo", "promp", "pearl", "grbal", "rebal", "mb-mpc",
                             "dream", "sb3-sac", "sb3-ppo", "sb3-recurrent-ppo"}


# ---------------------------------------------------------------------- sweep of all fields
def _bad_values(rule: dict, integer: bool) -> list:
    """Values just outside the declared range, on each bounded side ("clearly" out: 1 past
    the bound)."""
    allowed = rule["range"]
    bad = []
    if allowed.low is not None:
        bad.append(allowed.low - 1)
    if allowed.high is not None:
        bad.append(allowed.high + 1)
    return [int(v) if integer else float(v) for v in bad]


def _sweep(config_cls: type, agent: str, workdir: Path, capsys) -> int:
    hints = typing.get_type_hints(config_cls)
    checked = 0
    for name, rule in setting_rules(config_cls).items():
        tp = hints[name]
        if tp in NUMERIC:
            assert rule.get("range") is not None, f"{config_cls.__name__}.{name} has no range"
            bad_values = _bad_values(rule, tp in (int, int | None))
            assert bad_values, f"{config_cls.__name__}.{name}: a range without bounds"
            expected = [f"{name} must be {rule['range']}, got {bad!r}" for bad in bad_values]
        elif tp is str and name != "device":
            assert rule.get("choices"), f"{config_cls.__name__}.{name} declares no choices"
            bad_values = ["nonsense"]
            expected = [f"unknown {name} 'nonsense'; valid: {', '.join(rule['choices'])}"]
        else:
            continue
        for bad, line in zip(bad_values, expected, strict=True):
            argv = ["train", agent, AGENT_ENV[agent], "--run-dir", str(workdir / "run"),
                    "--set", f"{name}={bad!r}" if isinstance(bad, str) else f"{name}={bad}"]
            assert refused(argv, capsys) == line, (agent, name, bad)
            checked += 1
    assert listing(workdir) == {}
    return checked


@pytest.mark.parametrize("agent", sorted(agents.REGISTRY))
def test_every_numeric_field_of_every_agent_refuses_an_out_of_range_value(agent, workdir,
                                                                          capsys):
    """Catches a field added without a declared range (or choices, for a string)."""
    _, config_cls = agents.REGISTRY[agent].load()
    assert _sweep(config_cls, agent, workdir, capsys) >= 5


def test_every_trainer_field_refuses_an_out_of_range_value(workdir, capsys):
    assert _sweep(TrainerConfig, "rl2", workdir, capsys) == 8  # seed has two bounds
    assert refused(["train", "rl2", "bandit", "--device", "tpu"], capsys) == (
        "unknown device 'tpu'; valid devices: cpu, cuda")


# ----------------------------------------------------------------------- memory estimates
def _too_big(estimate: int) -> str:
    memory = physical_memory()
    if memory is None or estimate <= memory:
        pytest.skip(f"this machine has {memory} bytes of memory")
    return format_bytes(memory)


@pytest.mark.parametrize(("argv", "what", "sizes", "row_bytes", "key"), [
    # tabular-mdp: 10 one-hot states, 1 action index: 8 x (2 x 10 + 1 + 8) = 232 bytes a step
    (["rl2", "tabular-mdp", "--set", "env.horizon=1000000000"], "an iteration's rollouts",
     (250, 1, 10, 10**9), 232, "env.horizon"),
    (["rl2", "tabular-mdp", "--set", "tasks_per_iteration=10000000"],
     "an iteration's rollouts", (10**7, 1, 10, 10), 232, "tasks_per_iteration"),
    # point-nav: 2-D position and action: 8 x (2 x 2 + 2 + 8) = 112 bytes a step
    (["maml-trpo", "point-nav", "--set", "meta_batch=10000000"], "an iteration's rollouts",
     (10**7, 20, 2, 100), 112, "meta_batch"),
    (["promp", "point-nav", "--set", "meta_batch=10000000"], "an iteration's rollouts",
     (10**7, 20, 2, 100), 112, "meta_batch"),
    (["rl2", "bandit", "--set", "eval_tasks=1000000000"], "an evaluation's rollouts",
     (10**9, 1, 10, 1), 8 * (2 + 1 + 8), "eval_tasks"),
])
def test_a_batch_that_cannot_fit_in_memory_is_refused(argv, what, sizes, row_bytes, key,
                                                      workdir, capsys):
    estimate = row_bytes
    for n in sizes:
        estimate *= n
    memory = _too_big(estimate)
    tasks, trials, episodes, steps = sizes
    trial_word = "trial" if trials == 1 else "trials"
    step_word = "step" if steps == 1 else "steps"
    assert refused(["train", *argv, "--run-dir", "run"], capsys) == (
        f"{what} would need ~{format_bytes(estimate)} ({tasks} tasks x {trials} {trial_word} "
        f"x {episodes} episodes x {steps} {step_word} x {row_bytes} bytes), more than this "
        f"machine's {memory} of memory; lower {key}")
    assert listing(workdir) == {}


def test_pearls_replay_buffers_are_estimated(workdir, capsys):
    # 100 train tasks, each a FIFO of at most replay_capacity transitions (here reached: 10^9
    # iterations x 5 of 100 tasks a visit) plus its encoder buffer (the initial 2000 steps);
    # float32 rows of obs, action, reward, next obs, done: 4 x (2 + 2 + 1 + 2 + 1) = 32 bytes
    capacity = 10**8
    estimate = 100 * (capacity + 2000) * 32
    memory = _too_big(estimate)
    assert refused(["train", "pearl", "point-nav", "--iterations", "1000000000", "--set",
                    f"replay_capacity={capacity}"], capsys) == (
        f"PEARL's replay buffers would need ~{format_bytes(estimate)} (100 tasks x "
        f"{capacity + 2000} transitions x 32 bytes), more than this machine's {memory} of "
        f"memory; lower replay_capacity")
    assert listing(workdir) == {}


def test_sb3_sacs_replay_buffer_is_estimated(workdir, capsys):
    # the oracle on point-nav sees 2 + 2 numbers (position, goal), acts with 2; SB3 keeps obs,
    # next obs, action, reward, done and timeout: 8 x (2 x 4 + 2 + 3) = 104 bytes a row
    capacity = 10**10
    memory = _too_big(capacity * 104)
    assert refused(["train", "sb3-sac", "point-nav", "--set", "mode=task-in-obs",
                    f"replay_capacity={capacity}"], capsys) == (
        f"SB3's replay buffer would need ~{format_bytes(capacity * 104)} ({capacity} "
        f"transitions x 104 bytes), more than this machine's {memory} of memory; lower "
        f"replay_capacity")
    assert listing(workdir) == {}


def test_the_memory_estimate_of_a_preset_is_modest():
    """The shipped presets stay far below a small machine's memory (the estimate refuses
    only sizes that cannot fit)."""
    from metarl import agents
    from metarl.config import PRESETS_DIR, load_yaml
    from metarl.runs import build_run_config

    for path in sorted(PRESETS_DIR.rglob("*.yaml")):
        config, env = build_run_config(load_yaml(path))
        needs = agents.get(config.agent).load()[0].memory_needs(config, env)
        assert max(need.bytes for need in needs) < 4 * 2**30, path


def test_an_evaluation_that_cannot_fit_is_refused(tiny_run, tmp_path, capsys):
    estimate = 10**9 * 1 * 2 * 1 * 88  # bandit: 8 x (2 x 1 + 1 + 8) bytes a step
    memory = _too_big(estimate)
    assert refused(["eval", str(tiny_run), "--num-tasks", "1000000000"], capsys) == (
        f"the evaluation's rollouts would need ~{format_bytes(estimate)} (1000000000 tasks x "
        f"1 trial x 2 episodes x 1 step x 88 bytes), more than this machine's {memory} of "
        f"memory; lower --num-tasks")


# ---------------------------------------------------------------------------- subprocesses
def test_end_to_end_a_negative_seed_is_refused_and_leaves_no_run_dir(run_metarl, tmp_path):
    done = run_metarl("train", "rl2", "bandit", "--seed", "-1", *TINY, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == "metarl: error: seed must be in [0, 9223372036854775807], got -1\n"
    assert listing(tmp_path) == {}  # not even runs/rl2-bandit-seed-1


def test_end_to_end_a_horizon_that_cannot_fit_is_refused(run_metarl, tmp_path):
    estimate = 250 * 10 * 10**9 * 232
    memory = _too_big(estimate)
    done = run_metarl("train", "rl2", "tabular-mdp", "--set", "env.horizon=1000000000",
                      "--run-dir", "run", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == (
        f"metarl: error: an iteration's rollouts would need ~{format_bytes(estimate)} (250 "
        f"tasks x 1 trial x 10 episodes x 1000000000 steps x 232 bytes), more than this "
        f"machine's {memory} of memory; lower env.horizon\n")
    assert listing(tmp_path) == {}


# ------------------------------------------------------------------------- unwritable --out
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("tiny") / "run"
    assert main(["train", "rl2", "bandit", "--iterations", "1", "--run-dir", str(run),
                 *TINY]) == 0
    return run


@pytest.mark.parametrize(("command", "name"), [
    (["eval", "{run}", "--out"], "x.json"),
    (["render", "{run}", "--out"], "x.gif"),
    (["plot", "{run}", "--out"], "x.png"),
])
def test_an_output_below_a_regular_file_is_refused_up_front(command, name, tiny_run,
                                                            tmp_path, capsys):
    blocker = tmp_path / "FILE"  # a path below a regular file: unwritable even for root
    blocker.write_text("not a directory")
    out = f"{blocker}/{name}"
    before, run_before = listing(tmp_path), listing(tiny_run)
    argv = [arg.replace("{run}", str(tiny_run)) for arg in command] + [out]
    assert refused(argv, capsys) == (
        f"cannot write --out {out!r}: {str(blocker)!r} is not a directory")
    assert listing(tmp_path) == before and listing(tiny_run) == run_before


@pytest.mark.parametrize("command", ["eval", "render", "plot"])
def test_an_output_deeper_below_a_file_or_on_a_directory_is_refused(command, tiny_run,
                                                                    tmp_path, capsys):
    suffix = {"eval": ".json", "render": ".gif", "plot": ".png"}[command]
    (tmp_path / "FILE").write_text("")
    deep = f"{tmp_path}/FILE/sub/x{suffix}"  # missing directories are made, but not here
    before = listing(tmp_path)
    assert refused([command, str(tiny_run), "--out", deep], capsys) == (
        f"cannot write --out {deep!r}: {str(tmp_path / 'FILE')!r} is not a directory")
    assert refused([command, str(tiny_run), "--out", str(tmp_path)], capsys) == (
        f"cannot write --out {str(tmp_path)!r}: it is a directory")
    assert listing(tmp_path) == before


def test_eval_out_writes_the_json_result(tiny_run, tmp_path, capsys):
    out = tmp_path / "new" / "eval.json"  # a missing directory is made, as render and plot do
    assert main(["eval", str(tiny_run), "--num-tasks", "3", "--json", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == printed and printed["num_tasks"] == 3


@pytest.mark.parametrize("command", [["eval"], ["render", "--out", "x.gif"]])
def test_eval_and_render_refuse_a_negative_seed(command, tiny_run, workdir, capsys):
    argv = [command[0], str(tiny_run), *command[1:], "--seed", "-1"]
    assert refused(argv, capsys) == "--seed must be in [0, 9223372036854775807], got -1"
    assert listing(workdir) == {}
