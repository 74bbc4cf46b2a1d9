"""Gradient-based few-shot learners (MAML, FOMAML, Meta-SGD, ANIL, Reptile) and the few-shot
training/evaluation contract through the CLI."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from metarl.cli import main
from metarl.fewshot import make_task_source
from metarl.fewshot.maml import GradientLearner, MAMLConfig, Reptile, ReptileConfig


def _rows(run_dir):
    with open(run_dir / "progress.csv") as handle:
        return list(csv.DictReader(handle))


def _sinusoid_batch(batch=4, shots=10, seed=0):
    source = make_task_source("sinusoid", shots=shots, queries=10)
    return source.sample(batch, np.random.default_rng(seed))


@pytest.mark.parametrize("variant", [{}, {"first_order": True}, {"meta_sgd": True},
                                     {"anil": True}, {"vmap_tasks": False}])
def test_batched_prediction_equals_per_task_prediction(variant):
    torch.manual_seed(0)
    learner = GradientLearner("regression", (1,), None,
                              MAMLConfig(hidden=16, inner_lr=0.05, **variant))
    batch = _sinusoid_batch()
    together = learner.predict(batch.support_x, batch.support_y, batch.query_x)
    for i in range(len(batch)):
        one = batch.task(i)
        alone = learner.predict(one.support_x, one.support_y, one.query_x)
        torch.testing.assert_close(together[i:i + 1], alone, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("vmap_tasks", [True, False])
def test_image_classifier_adapts_each_task_with_its_own_batch_statistics(vmap_tasks):
    torch.manual_seed(0)
    learner = GradientLearner("classification", (1, 28, 28), 3,
                              MAMLConfig(hidden=8, vmap_tasks=vmap_tasks))
    support_x, query_x = torch.rand(2, 6, 1, 28, 28), torch.rand(2, 3, 1, 28, 28)
    support_y = torch.tensor([[0, 0, 1, 1, 2, 2]] * 2)
    together = learner.predict(support_x, support_y, query_x)
    alone = learner.predict(support_x[1:], support_y[1:], query_x[1:])
    assert together.shape == (2, 3, 3)
    torch.testing.assert_close(together[1:], alone, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant", [{}, {"first_order": True}, {"anil": True},
                                     {"meta_sgd": True}])
def test_maml_family_learns_sinusoids(variant):
    torch.manual_seed(0)
    config = MAMLConfig(hidden=40, inner_lr=0.01, eval_inner_steps=1, **variant)
    learner = GradientLearner("regression", (1,), None, config)
    optimizer = learner.make_optimizer(1e-3)
    held_out = _sinusoid_batch(batch=100, seed=123)

    def test_mse():
        learner.eval()
        with torch.no_grad():
            out = learner.predict(held_out.support_x, held_out.support_y, held_out.query_x)
        learner.train()
        return float((out - held_out.query_y).square().mean())

    before = test_mse()
    rng = np.random.default_rng(0)
    source = make_task_source("sinusoid", shots=10, queries=10)
    for _ in range(600):
        learner.train_step(source.sample(25, rng), optimizer)
    assert test_mse() < 0.7 * before  # (at 600 iterations: 0.41-0.62 x, Meta-SGD 0.12 x)


def test_reptile_learns_sinusoids():
    torch.manual_seed(0)
    learner = Reptile("regression", (1,), None,
                      ReptileConfig(hidden=40, inner_steps=16, eval_inner_steps=16))
    optimizer = learner.make_optimizer(1.0)  # ε = 1: Reptile's (initial) outer step size
    held_out = _sinusoid_batch(batch=100, seed=7)

    def test_mse():
        learner.eval()
        with torch.no_grad():
            out = learner.predict(held_out.support_x, held_out.support_y, held_out.query_x)
        return float((out - held_out.query_y).square().mean())

    before = test_mse()
    rng = np.random.default_rng(0)
    source = make_task_source("sinusoid", shots=10, queries=10)
    learner.train()
    for _ in range(50):
        learner.train_step(source.sample(10, rng), optimizer)
    assert test_mse() < 0.5 * before  # measured 0.22 x


# ------------------------------------------------------------------------ CLI contract
@pytest.mark.parametrize("agent", ["maml", "fomaml", "meta-sgd", "anil", "reptile", "cnp"])
def test_sinusoid_smoke_run_and_eval(agent, tmp_path, capsys):
    run = tmp_path / agent
    assert main(["train", agent, "sinusoid", "--iterations", "2", "--run-dir", str(run),
                 "--set", "eval_tasks=20", "meta_batch=4", "hidden=8"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "eval_mse" in summary and summary["eval_mse"] > 0
    assert main(["eval", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["agent"] == agent and result["metric"] == "mse"
    assert result["num_tasks"] == 600 and result["ci95"] > 0


def _image_folder(root, classes=6, per_class=4, size=12):
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = (rng.random((size, size)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / f"class{c}" / f"{i}.png")
    return root


def test_image_classification_smoke_run_resumes_exactly(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("METARL_CACHE_DIR", str(tmp_path / "cache"))
    root = _image_folder(tmp_path / "images")
    common = ["--set", f"env.root={root}", "env.image_size=16", "env.fractions=[0.5,0.25,0.25]",
              "ways=2", "shots=1", "queries=2", "meta_batch=2", "hidden=4", "checkpoint_every=2",
              "eval_tasks=10"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(["train", "maml", "image-folder", "--iterations", "4", "--run-dir", str(full),
                 *common]) == 0
    assert main(["train", "maml", "image-folder", "--iterations", "2", "--run-dir", str(cut),
                 *common]) == 0
    assert main(["train", "--resume", "--run-dir", str(cut), "--iterations", "4"]) == 0
    for a, b in zip(_rows(full), _rows(cut), strict=True):
        assert {k: v for k, v in a.items() if k != "time_s"} == \
            {k: v for k, v in b.items() if k != "time_s"}
    capsys.readouterr()
    assert main(["eval", str(full), "--json", "--num-tasks", "10"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["metric"] == "accuracy" and 0 <= result["accuracy"] <= 1


@pytest.mark.parametrize("agent", ["fomaml", "meta-sgd", "anil", "reptile", "protonet",
                                   "matchingnet", "cnp"])
def test_image_classification_smoke_runs(agent, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("METARL_CACHE_DIR", str(tmp_path / "cache"))
    root = _image_folder(tmp_path / "images")
    run = tmp_path / agent
    assert main(["train", agent, "image-folder", "--iterations", "2", "--run-dir", str(run),
                 "--set", f"env.root={root}", "env.image_size=16",
                 "env.fractions=[0.5,0.25,0.25]", "ways=2", "shots=1", "queries=2",
                 "meta_batch=2", "hidden=4", "eval_tasks=6"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 <= summary["eval_accuracy"] <= 1


@pytest.mark.parametrize(("argv", "needle"), [
    (["train", "protonet", "sinusoid"], "agent 'protonet' does not learn regression datasets "
                                        "such as 'sinusoid'; valid datasets: omniglot, "
                                        "image-folder"),
    (["train", "maml", "bandit"], "agent 'maml' learns from datasets, and 'bandit' is not "
                                  "one; valid datasets: sinusoid, omniglot, image-folder"),
    (["train", "maml", "omniglot", "--set", "env.data_dir=/nonexistent"], "env 'omniglot':"),
    (["train", "maml", "sinusoid", "--set", "env.arms=3"], "unknown env key 'env.arms'"),
    (["train", "maml", "sinusoid", "--set", "shots=0"], "shots must be >= 1, got 0"),
])
def test_bad_few_shot_input_is_one_line_exit_2(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_agents_list_shows_few_shot_learners(capsys):
    assert main(["list", "agents"]) == 0
    out = capsys.readouterr().out
    for name in ("maml", "fomaml", "meta-sgd", "anil", "reptile", "protonet", "matchingnet",
                 "cnp"):
        assert f"{name}" in out
    assert "[few-shot]" in out


def test_reptile_leaves_diverged_tasks_out_of_the_outer_step():
    torch.manual_seed(0)
    learner = Reptile("regression", (1,), None, ReptileConfig(hidden=8, inner_steps=5,
                                                              inner_lr=0.5))
    batch = _sinusoid_batch(batch=3)
    batch.support_y[0] *= 1e30  # task 0's SGD steps overflow
    metrics = learner.train_step(batch, learner.make_optimizer(0.1))
    assert metrics["diverged_tasks"] >= 1
    assert all(p.isfinite().all() for p in learner.parameters())
