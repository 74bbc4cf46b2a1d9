"""Image classification datasets for few-shot learning: Omniglot (from its zips) and any folder of
class sub-folders. Both give a :class:`~metarl.fewshot.data.ClassDataset` per split.

**Omniglot** is read directly from ``images_background_small1.zip`` and
``images_background_small2.zip`` (``<zip>/<Alphabet>/characterNN/*.png``, 105x105, black
strokes on white, 20 drawings per character). Nothing is copied or downloaded. The directory
is, in order: the ``data_dir`` argument (used alone when given); ``$METARL_OMNIGLOT_DIR``;
``$METARL_DATA_DIR/omniglot``. The first holding all the zips is used; a run stores
the directory it used (``env.data_dir`` in its ``config.yaml``). Images are decoded in
memory with Pillow, resized to
``image_size`` (28, LANCZOS) and inverted so strokes are 1 and background 0 (float32 in
[0, 1]). The decoded uint8 array is cached in ``$METARL_CACHE_DIR`` (default
``~/.cache/metarl``), keyed by the zips' names, sizes and mtimes and the image size.

The two zips share two alphabets (Greek and Latin are byte-identical in both), so there are 8
distinct alphabets and 242 characters (4840 images); duplicates (same
``<Alphabet>/<character>/<file>``) are read once. A class is a character; with
``rotations=True`` each character gives four classes (0/90/180/270 degrees, ``np.rot90``
counter-clockwise), all in the split of the character.

Splits (disjoint classes, seeded by ``seed``):

* ``split_by="alphabet"`` (default): the sorted alphabets are permuted with
  ``np.random.default_rng(seed)`` and cut into train/val/test. Counts are ``alphabet_counts``
  or, by default, from ``fractions=(0.6, 0.2, 0.2)``: val and test get ``round(0.2 n)``
  alphabets each (at least one), train the rest: 6/2/2 for 10 alphabets, 4/2/2 for the 8
  here. With seed 0 the real data splits as

  - train: Greek, Japanese_(katakana), Korean, Sanskrit (153 characters, 612 classes)
  - val: Balinese, Latin (50 characters, 200 classes)
  - test: Early_Aramaic, Tagalog (39 characters, 156 classes)

* ``split_by="character"``: all characters pooled, permuted with the seed and cut by
  ``fractions`` (60/20/20%: 146/48/48 characters of the real data).

**Image folders** ``root/<class>/<image files>`` (png/jpg/jpeg/bmp/gif) load grayscale
(``channels=1``) or RGB (``channels=3``), resized to ``image_size``; the sorted classes are
permuted with the seed and cut by ``fractions`` like the Omniglot characters.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from metarl.fewshot.data import SPLITS, ClassDataset, check_split

OMNIGLOT_FILES = ("images_background_small1.zip", "images_background_small2.zip")
OMNIGLOT_ENV = "METARL_OMNIGLOT_DIR"
DATA_ENV = "METARL_DATA_DIR"
CACHE_ENV = "METARL_CACHE_DIR"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
_CACHE_VERSION = 1
_RESAMPLE = {
    "lanczos": Image.Resampling.LANCZOS,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "nearest": Image.Resampling.NEAREST,
}


# ------------------------------------------------------------------------------ paths, cache


def omniglot_candidates(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The directories searched for the Omniglot zips, in order (see the module docstring)."""
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    out = []
    if os.environ.get(OMNIGLOT_ENV):
        out.append(Path(os.environ[OMNIGLOT_ENV]).expanduser())
    if os.environ.get(DATA_ENV):
        out.append(Path(os.environ[DATA_ENV]).expanduser() / "omniglot")
    return out


def find_omniglot(data_dir: str | os.PathLike | None = None,
                  files: Sequence[str] = OMNIGLOT_FILES) -> Path:
    """The first candidate directory holding all ``files``, else FileNotFoundError."""
    tried = omniglot_candidates(data_dir)
    for path in tried:
        if all((path / f).is_file() for f in files):
            return path
    raise FileNotFoundError(
        f"Omniglot zips ({', '.join(files)}) not found in: {', '.join(map(str, tried))}; "
        f"pass data_dir or set {OMNIGLOT_ENV} (or {DATA_ENV}, which holds omniglot/)")


def cache_dir() -> Path:
    """``$METARL_CACHE_DIR`` or ``~/.cache/metarl``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "metarl").expanduser()


def _cached(kind: str, key: Any, build: Callable[[], dict[str, np.ndarray]],
            use_cache: bool = True) -> tuple[dict[str, np.ndarray], bool]:
    """``build()``'s arrays, through an .npz cache keyed by ``key`` (JSON); also whether they
    came from the cache. The file is written atomically; an unwritable cache only warns."""
    digest = hashlib.sha1(json.dumps([_CACHE_VERSION, key], sort_keys=True).encode())
    path = cache_dir() / f"{kind}-{digest.hexdigest()[:20]}.npz"
    if use_cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}, True
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            warnings.warn(f"ignoring unreadable cache {path}: {e}", stacklevel=3)
    arrays = build()
    if use_cache:
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.",
                                             suffix=".tmp", delete=False) as f:
                tmp = f.name
                np.savez(f, **arrays)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except OSError as e:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
            warnings.warn(f"could not write cache {path}: {e}", stacklevel=3)
    return arrays, False


def _file_key(path: Path) -> list[Any]:
    st = path.stat()
    return [path.name, st.st_size, st.st_mtime_ns]


def _resample(name: str) -> Image.Resampling:
    if name not in _RESAMPLE:
        raise ValueError(f"unknown resample {name!r}; valid: {', '.join(_RESAMPLE)}")
    return _RESAMPLE[name]


def _size(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``(H, W)`` from an int or a pair."""
    hw = (image_size, image_size) if isinstance(image_size, (int, np.integer)) else image_size
    hw = tuple(int(v) for v in hw)
    if len(hw) != 2 or min(hw) < 1:
        raise ValueError(f"image_size must be a positive int or (H, W), got {image_size!r}")
    return hw  # type: ignore[return-value]


def _decode(data: bytes, mode: str, hw: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        im = im.convert(mode)
        if im.size != (hw[1], hw[0]):
            im = im.resize((hw[1], hw[0]), resample)
        return np.asarray(im, dtype=np.uint8)


# ---------------------------------------------------------------------------------- splits


def split_counts(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """Train/val/test sizes for ``n`` items: val and test get ``round(f * n)`` (at least one
    when their fraction is positive), train the rest."""
    f = tuple(float(v) for v in fractions)
    if len(f) != 3 or min(f) < 0 or not math.isclose(sum(f), 1.0, abs_tol=1e-6):
        raise ValueError(f"fractions must be 3 non-negative numbers summing to 1, got {fractions}")
    val, test = (max(int(math.floor(v * n + 0.5)), int(v > 0)) for v in f[1:])
    if n - val - test < int(f[0] > 0):
        raise ValueError(f"cannot split {n} items by fractions {f}: too few items")
    return n - val - test, val, test


def _cut(names: Sequence[str], counts: Sequence[int], seed: int) -> dict[str, list[int]]:
    """Indices of the sorted ``names`` per split after a seeded permutation."""
    order = np.argsort(np.asarray(names, dtype=str), kind="stable")
    perm = order[np.random.default_rng(seed).permutation(len(names))]
    bounds = np.cumsum([0, *counts])
    return {s: sorted(perm[bounds[i]:bounds[i + 1]].tolist()) for i, s in enumerate(SPLITS)}


def _class_dataset(images: np.ndarray, image_class: np.ndarray, classes: Sequence[int],
                   names: Sequence[str], rotations: bool) -> ClassDataset:
    """A ClassDataset of ``classes`` (indices into ``names``) from uint8 [N, C, H, W] images;
    with ``rotations`` every class becomes four (``np.rot90`` by k = 0..3, name ``.../rotK``)."""
    classes = np.asarray(classes, dtype=np.int64)
    remap = np.full(len(names), -1, dtype=np.int64)
    remap[classes] = np.arange(len(classes))
    keep = np.flatnonzero(remap[image_class] >= 0)
    x = images[keep].astype(np.float32) / np.float32(255)
    labels = remap[image_class[keep]]
    class_names = [names[c] for c in classes]
    if rotations:
        if x.shape[-1] != x.shape[-2]:
            raise ValueError(f"rotations need square images, got {x.shape[-2:]}")
        x = np.stack([np.rot90(x, k, axes=(-2, -1)) for k in range(4)], axis=1)
        x = x.reshape(-1, *x.shape[2:])
        labels = (labels[:, None] * 4 + np.arange(4)).reshape(-1)
        class_names = [f"{n}/rot{90 * k}" for n in class_names for k in range(4)]
    return ClassDataset(np.ascontiguousarray(x), labels, class_names)


# --------------------------------------------------------------------------------- Omniglot


def _decode_omniglot(paths: Sequence[Path], image_size: int,
                     resample: str = "lanczos") -> dict[str, np.ndarray]:
    """All distinct drawings of the zips as uint8 [N, S, S] (strokes 255), their class index
    and per class its alphabet and character names (classes sorted by name)."""
    found: dict[tuple[str, str, str], tuple[int, str, int]] = {}
    conflicts = 0
    zips = [zipfile.ZipFile(p) for p in paths]
    try:
        for z, zf in enumerate(zips):
            for info in zf.infolist():
                parts = info.filename.split("/")
                if info.is_dir() or not parts[-1].lower().endswith(".png") or len(parts) < 3:
                    continue
                key = (parts[-3], parts[-2], parts[-1])
                if key in found:
                    conflicts += found[key][2] != info.CRC
                    continue
                found[key] = (z, info.filename, info.CRC)
        if conflicts:
            warnings.warn(f"{conflicts} Omniglot files appear in several zips with different "
                          "contents; the first zip's copy is used", stacklevel=2)
        keys = sorted(found)
        chars = sorted({k[:2] for k in keys})
        index = {c: i for i, c in enumerate(chars)}
        rs = _resample(resample)
        hw = (image_size, image_size)
        images = np.empty((len(keys), image_size, image_size), dtype=np.uint8)
        for i, k in enumerate(keys):
            z, name, _ = found[k]
            images[i] = 255 - _decode(zips[z].read(name), "L", hw, rs)
    finally:
        for zf in zips:
            zf.close()
    return {
        "images": images,
        "image_class": np.array([index[k[:2]] for k in keys], dtype=np.int64),
        "alphabets": np.array([c[0] for c in chars], dtype=str),
        "characters": np.array([c[1] for c in chars], dtype=str),
    }


class Omniglot:
    """Omniglot characters from the zips, split by alphabet or character (module docstring).

    Attributes: ``data_dir``; ``class_names`` (``"Alphabet/characterNN"``, before rotation);
    ``alphabets`` (sorted); ``split_classes[split]`` (indices into ``class_names``);
    ``split_alphabets[split]`` (alphabet splits only); ``from_cache`` and ``load_seconds``.
    """

    def __init__(self, data_dir: str | os.PathLike | None = None, image_size: int = 28,
                 rotations: bool = True, split_by: str = "alphabet", seed: int = 0,
                 fractions: Sequence[float] = (0.6, 0.2, 0.2),
                 alphabet_counts: Sequence[int] | None = None,
                 files: Sequence[str] = OMNIGLOT_FILES, resample: str = "lanczos",
                 cache: bool = True):
        if split_by not in ("alphabet", "character"):
            raise ValueError(f"split_by must be 'alphabet' or 'character', got {split_by!r}")
        size = _size(image_size)
        if size[0] != size[1]:
            raise ValueError(f"Omniglot image_size must be square, got {image_size!r}")
        _resample(resample)
        self.data_dir = find_omniglot(data_dir, files)
        self.image_size, self.rotations = size[0], rotations
        self.split_by, self.seed = split_by, seed
        paths = [self.data_dir / f for f in files]
        key = {"files": [_file_key(p) for p in paths], "size": size[0], "resample": resample}
        start = time.perf_counter()
        arrays, self.from_cache = _cached(
            "omniglot", key, lambda: _decode_omniglot(paths, size[0], resample), cache)
        self.load_seconds = time.perf_counter() - start
        self.images: np.ndarray = arrays["images"]  # uint8 [N, S, S], strokes 255
        self.image_class: np.ndarray = arrays["image_class"].astype(np.int64)
        class_alphabet = arrays["alphabets"].tolist()
        characters = arrays["characters"].tolist()
        self.class_names = [f"{a}/{c}" for a, c in zip(class_alphabet, characters, strict=True)]
        self.alphabets = sorted(set(class_alphabet))
        if split_by == "character":
            n = len(self.class_names)
            self.split_classes = _cut(self.class_names, split_counts(n, fractions), seed)
            self.split_alphabets: dict[str, list[str]] | None = None
        else:
            n = len(self.alphabets)
            if alphabet_counts is None:
                counts = split_counts(n, fractions)
            else:
                counts = tuple(int(c) for c in alphabet_counts)
                if len(counts) != 3 or min(counts) < 0 or sum(counts) != n:
                    raise ValueError(f"alphabet_counts must be 3 non-negative ints summing to "
                                     f"the {n} alphabets, got {alphabet_counts!r}")
            cut = _cut(self.alphabets, counts, seed)
            self.split_alphabets = {s: [self.alphabets[i] for i in v] for s, v in cut.items()}
            self.split_classes = {
                s: [c for c, a in enumerate(class_alphabet) if a in set(self.split_alphabets[s])]
                for s in SPLITS}

    def split(self, name: str) -> ClassDataset:
        """The classes of split ``name`` (train/val/test) as a ClassDataset [n, 1, S, S]."""
        return _class_dataset(self.images[:, None], self.image_class,
                              self.split_classes[check_split(name)], self.class_names,
                              self.rotations)


# ------------------------------------------------------------------------------ image folder


def _decode_folder(root: Path, files: Sequence[tuple[str, str]], hw: tuple[int, int],
                   channels: int, resample: str) -> dict[str, np.ndarray]:
    mode = {1: "L", 3: "RGB"}[channels]
    rs = _resample(resample)
    images = np.empty((len(files), channels, *hw), dtype=np.uint8)
    for i, (cls, name) in enumerate(files):
        a = _decode((root / cls / name).read_bytes(), mode, hw, rs)
        images[i] = a[None] if channels == 1 else a.transpose(2, 0, 1)
    return {"images": images}


class ImageFolder:
    """Images in ``root/<class>/<file>``, classes split by a seeded permutation.

    ``channels``: 1 (grayscale) or 3 (RGB); ``invert`` maps ``v -> 1 - v`` (dark strokes on a
    light background become 1); ``rotations`` adds 90/180/270-degree classes (square images).
    Attributes: ``class_names`` (sorted folder names), ``split_classes[split]``.
    """

    def __init__(self, root: str | os.PathLike, image_size: int | Sequence[int] = 28,
                 channels: int = 1, fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0,
                 invert: bool = False, rotations: bool = False, resample: str = "lanczos",
                 extensions: Sequence[str] = IMAGE_EXTENSIONS, cache: bool = True):
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist")
        hw = _size(image_size)
        _resample(resample)
        exts = tuple(e.lower() for e in extensions)
        self.class_names = sorted(d.name for d in self.root.iterdir()
                                  if d.is_dir() and not d.name.startswith("."))
        files, image_class, key = [], [], []
        for c, cls in enumerate(self.class_names):
            for p in sorted((self.root / cls).iterdir()):
                if p.is_file() and p.suffix.lower() in exts and not p.name.startswith("."):
                    files.append((cls, p.name))
                    image_class.append(c)
                    key.append([cls, *_file_key(p)])
        if not files:
            raise ValueError(f"no images ({', '.join(exts)}) in class folders of {self.root}")
        self.image_class = np.array(image_class, dtype=np.int64)
        self.invert, self.rotations = invert, rotations
        cache_key = {"root": str(self.root.resolve()), "files": key, "size": hw,
                     "channels": channels, "resample": resample}
        arrays, self.from_cache = _cached(
            "folder", cache_key,
            lambda: _decode_folder(self.root, files, hw, channels, resample), cache)
        self.images: np.ndarray = arrays["images"]  # uint8 [N, C, H, W]
        if invert:
            self.images = 255 - self.images
        counts = split_counts(len(self.class_names), fractions)
        self.split_classes = _cut(self.class_names, counts, seed)

    def split(self, name: str) -> ClassDataset:
        """The classes of split ``name`` (train/val/test) as a ClassDataset [n, C, H, W]."""
        return _class_dataset(self.images, self.image_class, self.split_classes[check_split(name)],
                              self.class_names, self.rotations)
