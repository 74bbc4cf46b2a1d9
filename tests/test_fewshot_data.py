"""Few-shot data: sinusoid tasks, Omniglot from zips (synthetic and real), image folders, the
N-way K-shot episode sampler and the registry."""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metarl.fewshot import (
    DATASETS,
    ClassDataset,
    EpisodeSampler,
    FewShotBatch,
    ImageFolder,
    Omniglot,
    SinusoidTasks,
    fixed_batch,
    is_classification,
    make_task_source,
)
from metarl.fewshot import images as images_mod
from metarl.fewshot.images import find_omniglot

ZIP_ALPHABETS = (("Alpha", "Beta", "Shared"), ("Gamma", "Delta", "Shared"))


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """Each test caches in its own directory and sees no data-location variables."""
    monkeypatch.setenv("METARL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("METARL_OMNIGLOT_DIR", raising=False)
    monkeypatch.delenv("METARL_DATA_DIR", raising=False)


def _drawing(seed: int) -> Image.Image:
    """A 105x105 asymmetric black-on-white 'drawing' (mode '1', like Omniglot)."""
    rng = np.random.default_rng(seed)
    a = np.full((105, 105), 255, np.uint8)
    r, c = rng.integers(5, 50, size=2)
    a[r:r + 40, c:c + 12] = 0
    a[r:r + 10, c:c + 45] = 0
    return Image.fromarray(a).convert("1")


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def make_omniglot_zips(root: Path, chars: int = 4, drawings: int = 5) -> Path:
    """Two Omniglot-shaped zips (3 alphabets each, "Shared" byte-identical in both)."""
    root.mkdir(parents=True, exist_ok=True)
    for z, alphabets in enumerate(ZIP_ALPHABETS, start=1):
        top = f"images_background_small{z}"
        with zipfile.ZipFile(root / f"{top}.zip", "w") as zf:
            for alphabet in alphabets:
                for c in range(1, chars + 1):
                    for d in range(1, drawings + 1):
                        seed = sum(map(ord, alphabet)) * 1000 + c * 10 + d
                        name = f"{top}/{alphabet}/character{c:02d}/{c:04d}_{d:02d}.png"
                        zf.writestr(name, _png(_drawing(seed)))
    return root


@pytest.fixture
def omni_dir(tmp_path) -> Path:
    return make_omniglot_zips(tmp_path / "omniglot")


# ---------------------------------------------------------------------------------- sinusoid


def test_sinusoid_ranges_targets_and_seeding():
    tasks = SinusoidTasks()
    b = tasks.sample(64, 7, 11, np.random.default_rng(3))
    assert len(b) == 64
    assert b.support_x.shape == (64, 7, 1) and b.query_y.shape == (64, 11, 1)
    assert all(t.dtype == torch.float32 for t in (b.support_x, b.support_y, b.query_x, b.query_y))
    a, p = b.params["amplitude"], b.params["phase"]
    assert a.shape == p.shape == (64,)
    assert a.min() >= 0.1 and a.max() <= 5.0 and p.min() >= 0 and p.max() <= math.pi
    for x, y in ((b.support_x, b.support_y), (b.query_x, b.query_y)):
        assert x.min() >= -5 and x.max() <= 5
        expected = (a[:, None, None] * np.sin(x.numpy().astype(np.float64) - p[:, None, None]))
        np.testing.assert_array_equal(y.numpy(), expected.astype(np.float32))
    same = tasks.fixed(64, 7, 11, seed=3)
    for f in ("support_x", "support_y", "query_x", "query_y"):
        assert torch.equal(getattr(b, f), getattr(same, f))
    other = tasks.fixed(64, 7, 11, seed=4)
    assert not torch.equal(b.support_x, other.support_x)
    assert not np.array_equal(b.params["amplitude"], other.params["amplitude"])


def test_fewshot_batch_task_and_to():
    b = SinusoidTasks().sample(5, 3, 4, np.random.default_rng(0))
    t = b.task(2)
    assert len(t) == 1 and t.query_x.shape == (1, 4, 1)
    assert torch.equal(t.support_y[0], b.support_y[2])
    assert t.params["phase"][0] == b.params["phase"][2]
    assert torch.equal(b.task(-1).support_x, b.task(4).support_x)
    with pytest.raises(IndexError):
        b.task(5)
    moved = b.to("cpu")
    assert isinstance(moved, FewShotBatch) and torch.equal(moved.query_y, b.query_y)


# --------------------------------------------------------------------------------- Omniglot


def _manual(zip_path: Path, name: str, size: int, rotate: int = 0) -> np.ndarray:
    with zipfile.ZipFile(zip_path) as zf, Image.open(io.BytesIO(zf.read(name))) as im:
        im = im.convert("L").rotate(90 * rotate)
        return (255 - np.asarray(im.resize((size, size), Image.Resampling.LANCZOS))) / 255


def test_synthetic_omniglot_classes_images_and_rotations(omni_dir):
    plain = Omniglot(data_dir=omni_dir, rotations=False)
    # 6 alphabets in the zips, "Shared" twice (identical): 5 alphabets x 4 characters
    assert plain.alphabets == ["Alpha", "Beta", "Delta", "Gamma", "Shared"]
    assert len(plain.class_names) == 20 and plain.images.shape == (100, 28, 28)
    assert np.bincount(plain.image_class).tolist() == [5] * 20
    sizes = [plain.split(s).n_classes for s in ("train", "val", "test")]
    assert sizes == [12, 4, 4]  # alphabets 3/1/1
    rotated = Omniglot(data_dir=omni_dir)
    assert [rotated.split(s).n_classes for s in ("train", "val", "test")] == [48, 16, 16]

    train = rotated.split("train")
    assert train.images.shape == (48 * 5, 1, 28, 28) and train.images.dtype == np.float32
    assert train.images.min() >= 0 and train.images.max() <= 1
    name = train.class_names[0]
    alphabet, char, _ = name.split("/")
    assert name.endswith("/rot0")
    zip_path = omni_dir / "images_background_small1.zip"
    top = "images_background_small1" if alphabet in ZIP_ALPHABETS[0] else None
    if top is None:
        zip_path = omni_dir / "images_background_small2.zip"
        top = "images_background_small2"
    n = int(char[-2:])
    originals = train.images[train.class_indices[0], 0]
    for d in range(5):
        png = f"{top}/{alphabet}/{char}/{n:04d}_{d + 1:02d}.png"
        np.testing.assert_allclose(originals[d], _manual(zip_path, png, 28), atol=1e-6)
    for k in (1, 2, 3):
        assert train.class_names[k] == f"{alphabet}/{char}/rot{90 * k}"
        rot = train.images[train.class_indices[k], 0]
        np.testing.assert_array_equal(rot, np.rot90(originals, k, axes=(1, 2)))
        # ... and, up to resampling, the resized rotated drawing
        png = f"{top}/{alphabet}/{char}/{n:04d}_01.png"
        assert np.abs(rot[0] - _manual(zip_path, png, 28, rotate=k)).mean() < 0.02
    small = Omniglot(data_dir=omni_dir, image_size=14).split("val")
    assert small.image_shape == (1, 14, 14)


@pytest.mark.parametrize("split_by", ["alphabet", "character"])
def test_synthetic_omniglot_splits_disjoint_covering_seeded(omni_dir, split_by):
    omni = Omniglot(data_dir=omni_dir, split_by=split_by, rotations=False)
    parts = [set(omni.split_classes[s]) for s in ("train", "val", "test")]
    assert set.union(*parts) == set(range(len(omni.class_names)))
    assert sum(map(len, parts)) == len(omni.class_names)
    names = [set(omni.split(s).class_names) for s in ("train", "val", "test")]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    if split_by == "alphabet":
        alph = [set(n.split("/")[0] for n in ns) for ns in names]
        assert [len(a) for a in alph] == [3, 1, 1] and not (alph[0] & alph[1] | alph[0] & alph[2])
        assert set(omni.split_alphabets["val"]) == alph[1]
    else:
        assert [len(p) for p in parts] == [12, 4, 4]
    again = Omniglot(data_dir=omni_dir, split_by=split_by, rotations=False)
    assert again.split_classes == omni.split_classes
    seeds = [Omniglot(data_dir=omni_dir, split_by=split_by, seed=s).split_classes["test"]
             for s in range(1, 6)]
    assert any(s != omni.split_classes["test"] for s in seeds)


def test_omniglot_alphabet_counts_and_bad_arguments(omni_dir):
    omni = Omniglot(data_dir=omni_dir, alphabet_counts=(2, 2, 1))
    assert [len(omni.split_alphabets[s]) for s in ("train", "val", "test")] == [2, 2, 1]
    with pytest.raises(ValueError, match="alphabet_counts"):
        Omniglot(data_dir=omni_dir, alphabet_counts=(3, 3, 3))
    with pytest.raises(ValueError, match="split_by"):
        Omniglot(data_dir=omni_dir, split_by="drawer")
    with pytest.raises(ValueError, match="valid splits"):
        omni.split("validation")


def test_omniglot_cache_is_used_on_second_load(omni_dir, tmp_path, monkeypatch):
    first = Omniglot(data_dir=omni_dir)
    assert not first.from_cache
    cached = list((tmp_path / "cache").glob("omniglot-*.npz"))
    assert len(cached) == 1 and not list((tmp_path / "cache").glob(".*tmp"))

    def fail(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(images_mod, "_decode_omniglot", fail)
    second = Omniglot(data_dir=omni_dir)
    assert second.from_cache
    np.testing.assert_array_equal(second.images, first.images)
    assert second.class_names == first.class_names
    np.testing.assert_array_equal(second.split("test").images, first.split("test").images)
    with pytest.raises(AssertionError, match="decoded again"):  # another size: another key
        Omniglot(data_dir=omni_dir, image_size=20)
    with pytest.raises(AssertionError, match="decoded again"):
        Omniglot(data_dir=omni_dir, cache=False)


def test_omniglot_path_resolution(omni_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("METARL_OMNIGLOT_DIR", str(omni_dir))
    assert Omniglot(rotations=False).data_dir == omni_dir
    monkeypatch.delenv("METARL_OMNIGLOT_DIR")
    monkeypatch.setenv("METARL_DATA_DIR", str(omni_dir.parent))
    assert find_omniglot() == omni_dir
    # an explicit data_dir is the only place looked at
    with pytest.raises(FileNotFoundError, match="METARL_OMNIGLOT_DIR") as err:
        Omniglot(data_dir=tmp_path / "nowhere")
    assert "nowhere" in str(err.value) and "\n" not in str(err.value)
    # nothing anywhere: every candidate is named
    monkeypatch.delenv("METARL_DATA_DIR")
    monkeypatch.setenv("METARL_OMNIGLOT_DIR", str(tmp_path / "env-dir"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="METARL_OMNIGLOT_DIR") as err:
        find_omniglot()
    assert "env-dir" in str(err.value)
    # no default outside the places named: a folder beside the checkout is not searched
    make_omniglot_zips(tmp_path / "shared" / "data" / "omniglot", chars=1, drawings=1)
    with pytest.raises(FileNotFoundError):
        find_omniglot()


@pytest.fixture(scope="session")
def real_omniglot(tmp_path_factory):
    try:
        find_omniglot()
    except FileNotFoundError as e:
        pytest.skip(f"real Omniglot not available: {e}")
    mp = pytest.MonkeyPatch()
    mp.setenv("METARL_CACHE_DIR", str(tmp_path_factory.mktemp("real-cache")))
    try:
        yield Omniglot(rotations=False)
    finally:
        mp.undo()


def test_real_omniglot(real_omniglot):
    omni = real_omniglot
    # the two zips share Greek and Latin (identical), so 8 distinct alphabets, 242 characters
    assert omni.alphabets == ["Balinese", "Early_Aramaic", "Greek", "Japanese_(katakana)",
                              "Korean", "Latin", "Sanskrit", "Tagalog"]
    assert len(omni.class_names) == 242
    assert np.bincount(omni.image_class).tolist() == [20] * 242
    assert omni.images.shape == (4840, 28, 28)
    test = omni.split("test")
    assert test.image_shape == (1, 28, 28)
    assert test.images.min() >= 0 and test.images.max() <= 1
    assert (test.images < 0.05).mean() > 0.7 and test.images.mean() < 0.2  # strokes are 1
    assert (test.images.reshape(len(test), -1).max(1) > 0.9).all()
    assert omni.split_alphabets == {
        "train": ["Greek", "Japanese_(katakana)", "Korean", "Sanskrit"],
        "val": ["Balinese", "Latin"], "test": ["Early_Aramaic", "Tagalog"]}
    assert [len(omni.split_classes[s]) for s in ("train", "val", "test")] == [153, 50, 39]
    # rotations multiply the classes of every split by four
    assert omni.split("val").n_classes == 50
    omni.rotations = True
    assert omni.split("val").n_classes == 200


# ---------------------------------------------------------------------------- episode sampler


def _toy_dataset(counts=(6, 7, 8, 6, 9, 6, 7)) -> ClassDataset:
    """Image i is constant i (so images identify themselves); class c has counts[c] images."""
    labels = np.repeat(np.arange(len(counts)), counts)
    labels = labels[np.random.default_rng(0).permutation(len(labels))]  # interleaved classes
    images = np.arange(len(labels), dtype=np.float32)[:, None, None, None] * np.ones((1, 1, 2, 3))
    return ClassDataset(images, labels, [f"c{i}" for i in range(len(counts))])


def test_episode_sampler_shapes_labels_and_membership():
    data = _toy_dataset()
    sampler = EpisodeSampler(data, ways=3, shots=2, queries=4)
    b = sampler.sample(200, np.random.default_rng(1))
    assert b.support_x.shape == (200, 6, 1, 2, 3) and b.query_x.shape == (200, 12, 1, 2, 3)
    assert b.support_y.dtype == b.query_y.dtype == torch.int64
    assert b.support_y.shape == (200, 6) and b.query_y.shape == (200, 12)
    assert b.support_y.min() == 0 and b.support_y.max() == 2
    sidx = b.support_x[:, :, 0, 0, 0].long().numpy()  # image ids, from the pixels
    qidx = b.query_x[:, :, 0, 0, 0].long().numpy()
    np.testing.assert_array_equal(sidx, b.params["support_index"])
    np.testing.assert_array_equal(qidx, b.params["query_index"])
    classes = b.params["classes"]
    for t in range(200):
        assert len(set(classes[t])) == 3
        assert len(set(sidx[t]) | set(qidx[t])) == 18  # distinct, queries not in the support
        for label in range(3):
            imgs = np.concatenate([sidx[t][b.support_y[t].numpy() == label],
                                   qidx[t][b.query_y[t].numpy() == label]])
            assert len(imgs) == 6
            assert (data.labels[imgs] == classes[t, label]).all()
    # every class is used, in every label position, and every image eventually appears
    assert set(classes.ravel()) == set(range(7))
    assert all(len(set(classes[:, j])) == 7 for j in range(3))
    assert set(np.concatenate([sidx.ravel(), qidx.ravel()])) == set(range(len(data)))


def test_episode_sampler_seeding_shuffle_and_errors():
    data = _toy_dataset()
    sampler = EpisodeSampler(data, ways=5, shots=1, queries=5)
    a = sampler.sample(8, np.random.default_rng(7))
    b = fixed_batch(sampler, 8, seed=7)
    c = sampler.sample(8, np.random.default_rng(8))
    assert torch.equal(a.support_x, b.support_x) and torch.equal(a.query_x, b.query_x)
    assert not torch.equal(a.query_x, c.query_x)
    shuffled = EpisodeSampler(data, 5, 2, 3, shuffle=True).sample(50, np.random.default_rng(0))
    ids, y = shuffled.support_x[:, :, 0, 0, 0].long().numpy(), shuffled.support_y.numpy()
    assert not (np.diff(y, axis=1) >= 0).all()  # not grouped by label any more
    assert (np.sort(y, axis=1) == np.repeat(np.arange(5), 2)).all()
    cls = shuffled.params["classes"]
    assert (data.labels[ids] == np.take_along_axis(cls, y, 1)).all()

    with pytest.raises(ValueError, match="ways = 8 exceeds the 7 classes"):
        EpisodeSampler(data, ways=8, shots=1, queries=1)
    with pytest.raises(ValueError, match="shots \\+ queries = 10 exceeds"):
        EpisodeSampler(data, ways=2, shots=5, queries=5)
    for bad in ({"ways": 0}, {"shots": -1}, {"queries": 1.5}):
        kw = {"ways": 2, "shots": 1, "queries": 1, **bad}
        with pytest.raises(ValueError, match=f"{next(iter(bad))} must be a positive integer"):
            EpisodeSampler(data, **kw)
    with pytest.raises(ValueError, match="batch"):
        sampler.sample(0, np.random.default_rng(0))
    # classes smaller than shots + queries are left out (with a warning)
    with pytest.warns(UserWarning, match="3 classes have fewer"):
        partial = EpisodeSampler(data, ways=3, shots=3, queries=4)
    assert sorted(partial.classes.tolist()) == [1, 2, 4, 6]
    with pytest.raises(ValueError, match="ways = 5 exceeds the 4 classes"):
        EpisodeSampler(data, ways=5, shots=3, queries=4)


def test_episode_sampler_on_synthetic_omniglot(omni_dir):
    train = Omniglot(data_dir=omni_dir).split("train")
    sampler = EpisodeSampler(train, ways=20, shots=1, queries=4)
    b = sampler.sample(4, np.random.default_rng(0))
    assert b.support_x.shape == (4, 20, 1, 28, 28) and b.query_x.shape == (4, 80, 1, 28, 28)
    for t in range(4):
        s, q = b.params["support_index"][t], b.params["query_index"][t]
        assert not set(s) & set(q)
        np.testing.assert_array_equal(train.labels[s], b.params["classes"][t][b.support_y[t]])


# ------------------------------------------------------------------------------ image folder


def _make_folder(root: Path, classes: int = 5, per_class: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            a = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
            a[..., 0] = 40 * c  # the red channel identifies the class
            ext = "png" if i % 2 else "jpg"
            Image.fromarray(a).save(root / f"class{c}" / f"img{i}.{ext}", quality=95)
    (root / "class0" / "notes.txt").write_text("not an image")
    (root / "stray.png").write_bytes(b"")  # files at the top level are ignored
    return root


def test_image_folder(tmp_path):
    root = _make_folder(tmp_path / "folder")
    rgb = ImageFolder(root, image_size=(8, 10), channels=3)
    assert rgb.class_names == [f"class{c}" for c in range(5)]
    splits = {s: rgb.split(s) for s in ("train", "val", "test")}
    assert [d.n_classes for d in splits.values()] == [3, 1, 1]
    names = [n for d in splits.values() for n in d.class_names]
    assert sorted(names) == rgb.class_names
    train = splits["train"]
    assert train.images.shape == (12, 3, 8, 10) and train.images.dtype == np.float32
    for c, name in enumerate(train.class_names):
        red = train.images[train.class_indices[c], 0].mean()
        assert abs(red * 255 - 40 * int(name[-1])) < 3
    gray = ImageFolder(root, image_size=6, channels=1, invert=True, rotations=True, seed=1)
    d = gray.split("train")
    assert d.image_shape == (1, 6, 6) and d.n_classes == 12
    np.testing.assert_array_equal(d.images[d.class_indices[1]],
                                  np.rot90(d.images[d.class_indices[0]], 1, axes=(2, 3)))
    sampler = EpisodeSampler(d, ways=4, shots=2, queries=2)
    assert sampler.sample(3, np.random.default_rng(0)).support_x.shape == (3, 8, 1, 6, 6)
    assert ImageFolder(root, image_size=(8, 10), channels=3).from_cache
    with pytest.raises(ValueError, match="channels"):
        ImageFolder(root, channels=2)
    with pytest.raises(FileNotFoundError):
        ImageFolder(tmp_path / "missing")


# ---------------------------------------------------------------------------------- registry


def test_registry(omni_dir, tmp_path):
    assert set(DATASETS) == {"sinusoid", "omniglot", "image-folder"}
    assert not is_classification("sinusoid")
    assert is_classification("omniglot") and is_classification("image-folder")
    with pytest.raises(ValueError, match="valid: sinusoid, omniglot, image-folder"):
        is_classification("mnist")
    with pytest.raises(ValueError, match="valid: sinusoid"):
        make_task_source("mnist")
    rng = np.random.default_rng(0)

    sin = make_task_source("sinusoid", "test", shots=5, queries=7)
    assert not sin.classification and sin.output_dim == 1
    assert sin.sample(3, rng).query_y.shape == (3, 7, 1)
    with pytest.raises(ValueError, match="ways"):
        make_task_source("sinusoid", ways=5)
    with pytest.raises(ValueError, match="valid splits"):
        make_task_source("sinusoid", "dev")

    omni = make_task_source("omniglot", "val", ways=3, shots=2, queries=3, data_dir=omni_dir)
    assert omni.classification and omni.output_dim == 3 and omni.input_shape == (1, 28, 28)
    assert omni.sample(2, rng).query_x.shape == (2, 9, 1, 28, 28)

    root = _make_folder(tmp_path / "folder")
    folder = make_task_source("image-folder", "train", ways=2, shots=1, queries=1, root=root,
                              channels=3, image_size=8)
    assert folder.sample(2, rng).support_x.shape == (2, 2, 3, 8, 8)


def test_an_omniglot_run_stores_its_data_dir_and_eval_can_point_elsewhere(
        omni_dir, tmp_path, monkeypatch, capsys):
    import yaml

    from metarl.cli import main

    monkeypatch.setenv("METARL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("METARL_OMNIGLOT_DIR", str(omni_dir))
    run = tmp_path / "run"
    tiny = ["ways=2", "shots=1", "queries=1", "meta_batch=2", "eval_tasks=2", "env.rotations=false"]
    assert main(["train", "protonet", "omniglot", "--iterations", "1", "--run-dir", str(run),
                 "--set", *tiny]) == 0
    stored = yaml.safe_load((run / "config.yaml").read_text())
    assert stored["env.data_dir"] == str(omni_dir)  # resolved from the variable, then stored
    monkeypatch.delenv("METARL_OMNIGLOT_DIR")
    moved = omni_dir.rename(tmp_path / "moved")
    capsys.readouterr()
    assert main(["eval", str(run), "--num-tasks", "2", "--json"]) == 2
    assert str(omni_dir) in capsys.readouterr().err
    assert main(["eval", str(run), "--num-tasks", "2", "--json", "--set",
                 f"env.data_dir={moved}"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["metric"] == "accuracy" and 0 <= result["summary"]["accuracy"] <= 1
    assert main(["eval", str(run), "--set", "lr=1"]) == 2  # only env keys can change
    assert "env keys only" in capsys.readouterr().err
