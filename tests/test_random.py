"""The random streams of `metarl.random.BatchRNG` are frozen.

Every seed must give the same draws in the same order, whatever caching or prefetching the
implementation does: published results and the checkpoint regression tests replay them. The
digests below were recorded from the implementation before the draw caches were reworked
(issue 36 item 11); a change of any value, order or counter use changes a digest.

Uniform, integer, categorical and seed draws are exact integer/float arithmetic, so their
digests hold on any machine. Normal draws go through numpy's ``log1p``/``cos``/``sin``, whose
last bit may in principle differ on another CPU or numpy build; those cases are separate
(``*-normal`` and ``mixed-*``) so a failure says which kind moved.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from metarl.random import BatchRNG


def _digest(draws: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for x in draws:
        x = np.ascontiguousarray(x)
        h.update(f"{x.dtype.str}{x.shape}".encode())
        h.update(x.tobytes())
    return h.hexdigest()[:24]


def _op(rng: BatchRNG, kind: str, width: int) -> np.ndarray:
    b = rng.size
    if kind == "normal":
        return rng.standard_normal(b if width == 0 else (b, width))
    if kind == "normal2d":
        return rng.standard_normal((b, width or 1, 2))
    if kind == "loc_scale":
        return rng.normal(1.0, 0.5, (b, width or 1))
    if kind == "random":
        return rng.random(b if width == 0 else (b, width))
    if kind == "uniform":
        return rng.uniform(-1.0, 2.0, (b, width or 1))
    if kind == "integers":
        return rng.integers(0, 7, (b, width or 1))
    if kind == "integers1":
        return rng.integers(5, size=b)
    if kind == "categorical":
        return rng.categorical(np.arange(1.0, 2.0 + width)[None].repeat(b, 0))
    if kind == "seeds":
        return rng.seeds()
    raise AssertionError(kind)


def _run(rng: BatchRNG, plan: list[tuple[str, int]]) -> list[np.ndarray]:
    return [_op(rng, kind, width) for kind, width in plan]


EXACT_KINDS = ["random", "uniform", "integers", "integers1", "categorical", "seeds"]
NORMAL_KINDS = ["normal", "normal2d", "loc_scale"]


def _random_plan(seed: int, kinds: list[str], length: int) -> list[tuple[str, int]]:
    gen = np.random.default_rng(seed)
    return [(kinds[gen.integers(len(kinds))], int(gen.integers(0, 4))) for _ in range(length)]


# the tabular MDP's step: a normal then a uniform on one stream
TABULAR = [("normal", 0), ("random", 0)] * 60
# a Gaussian policy: the same normal size again and again (the block computed ahead) with a
# uniform draw now and then, size changes and an odd width
POLICY = ([("normal", 3)] * 40 + [("random", 2), ("normal", 3), ("normal", 3)]
          + [("normal", 3)] * 37 + [("normal", 1)] * 5 + [("normal2d", 3)] * 5
          + [("normal", 3), ("integers", 2)] * 20)
# two normals and a uniform per step; a normal of width 2 then 1 then a seed
TRIPLE = [("normal", 2), ("normal", 0), ("random", 1)] * 30 + [
    ("normal", 0), ("seeds", 0), ("normal", 0), ("normal", 2)] * 15
EXACT = _random_plan(1, EXACT_KINDS, 200)
MIXED = _random_plan(2, EXACT_KINDS + NORMAL_KINDS * 2, 300)

SEEDS = [0, 1, 2**40 + 7, -3]
STREAMS = {"b1": ([0], ""), "b5": (np.arange(5), "env"), "b64": (np.arange(64), "policy"),
           "keys": ([17, 3, 900, 4], "x/y")}
PLANS = {"exact": EXACT, "tabular-normal": TABULAR, "policy-normal": POLICY,
         "triple-normal": TRIPLE, "mixed": MIXED}

# recorded from the implementation before the rework (see the module docstring)
EXPECTED = {
    'exact/b1': '10291b08cb03b07792996cc3',
    'exact/b5': '0548e8f4a55415dfde0afc30',
    'exact/b64': 'bd78ad2b76191bbd9f84016f',
    'exact/keys': '9dd5bda8e37810d3ea5fe209',
    'mixed/b1': 'a658b8bb6925b3fa9ae4c0d5',
    'mixed/b5': 'e615d716e53e5f5d98b9647f',
    'mixed/b64': '51b130c4a266a44bda3e9995',
    'mixed/keys': '58aac0d4f7cd54e1cfb3e4d2',
    'policy-normal/b1': 'f8abfa07f479ea982f587463',
    'policy-normal/b5': '0177dd0cd6d8be14290f37a1',
    'policy-normal/b64': '8e2bf14118aed68a7095a65c',
    'policy-normal/keys': '74502f9c90d6edc717049347',
    'tabular-normal/b1': '727dc4bdfd428ee0fd9ed57f',
    'tabular-normal/b5': '6b872fed7a933016433a617f',
    'tabular-normal/b64': '9ce18aff81dc1cebcecc673b',
    'tabular-normal/keys': 'a21ff5d4dd24c76ccff14e75',
    'triple-normal/b1': '65eaff2ab29968543b8fec68',
    'triple-normal/b5': '467ddd9b5ab7315fefadb6df',
    'triple-normal/b64': '21551d0702ab2591534d502e',
    'triple-normal/keys': 'fbc3632a283053b6b12dbd5f',
    'children-subsets': '4146fdb78703fe182715d917',
    'first-normal': ['-0x1.e247d108691cfp+0', '-0x1.c14033d8878d9p-2'],
    'first-random': ['0x1.b117462002500p-6', '0x1.8c6a4553eeafcp-2'],
    'first-integers': [970, 656],
    'first-seeds': [228377781, 1692063496],
    'tabular-1024': '284f26c67f1c8e5526da164b',
}


def _case(plan_name: str, stream: str) -> str:
    keys, tag = STREAMS[stream]
    draws = []
    for seed in SEEDS:
        draws += _run(BatchRNG(seed, keys, tag), PLANS[plan_name])
    return _digest(draws)


@pytest.mark.parametrize("stream", sorted(STREAMS))
@pytest.mark.parametrize("plan_name", sorted(PLANS))
def test_stream_digest_is_frozen(plan_name, stream):
    assert _case(plan_name, stream) == EXPECTED[f"{plan_name}/{stream}"]


def _children_and_subsets() -> list[np.ndarray]:
    """Child streams and subsets taken mid-stream (with a normal block in flight), drawn
    interleaved with their parent."""
    draws = []
    for seed in SEEDS:
        parent = BatchRNG(seed, np.arange(6), "env")
        child = parent.child("latent")
        grandchild = child.child("a")
        draws += _run(parent, TABULAR[:10]) + _run(child, POLICY[:12])
        part = parent.subset(slice(1, 4))
        pick = child.subset(np.array([5, 0, 2]))
        for step in range(40):
            for rng in (parent, part, child, pick, grandchild):
                kind = ("normal", "random", "normal", "integers")[(step + rng.size) % 4]
                draws.append(_op(rng, kind, step % 3))
        draws += _run(part, MIXED[:50]) + _run(pick, EXACT[:50])
    return draws


def test_child_and_subset_streams_are_frozen():
    assert _digest(_children_and_subsets()) == EXPECTED["children-subsets"]


def test_first_values_are_frozen():
    """A few literal values, readable in a diff (float.hex is exact)."""
    rng = BatchRNG(0, [0, 1])
    assert [float(x).hex() for x in rng.standard_normal(2)] == EXPECTED["first-normal"]
    assert [float(x).hex() for x in rng.random(2)] == EXPECTED["first-random"]
    assert rng.integers(1000, size=2).tolist() == EXPECTED["first-integers"]
    assert rng.seeds().tolist() == EXPECTED["first-seeds"]


def test_large_batch_tabular_stream_is_frozen():
    """The size the environment benchmark and training use: 1024 streams, 50 steps."""
    draws = _run(BatchRNG(123, np.arange(1024), "env"), TABULAR[:100])
    assert _digest(draws) == EXPECTED["tabular-1024"]


def test_draws_are_fresh_arrays():
    """Draws served from a block computed ahead are copies: writing to one leaves the next
    draws alone."""
    fast, slow = BatchRNG(4, np.arange(3)), BatchRNG(4, np.arange(3))
    for _ in range(40):
        a, b = fast.standard_normal((3, 2)), fast.random(3)
        assert np.array_equal(a, slow.standard_normal((3, 2)))
        assert np.array_equal(b, slow.random(3))
        a[:] = 7.0
        b[:] = 7.0


def test_zero_size_draws_use_no_counter():
    rng, ref = BatchRNG(0, np.arange(2)), BatchRNG(0, np.arange(2))
    for _ in range(3):
        assert rng.standard_normal((2, 0)).shape == (2, 0)
        assert rng.random((2, 0, 3)).shape == (2, 0, 3)
    assert np.array_equal(rng.standard_normal(2), ref.standard_normal(2))


@pytest.mark.parametrize("plan", [TABULAR, POLICY[:80], TRIPLE[:90]], ids=["tabular", "policy",
                                                                             "triple"])
def test_interleaved_draws_are_computed_in_blocks(plan, monkeypatch):
    """The speed of the tabular MDP's vector env (issue 36 item 11): a step drawing a
    normal then a uniform on one stream is served from blocks computed ahead, not one
    Box-Muller transform per draw."""
    computed = []
    compute = BatchRNG._compute

    def counting(self, normal, per_env, first, step, count, width):
        computed.append(count)
        return compute(self, normal, per_env, first, step, count, width)

    monkeypatch.setattr(BatchRNG, "_compute", counting)
    _run(BatchRNG(0, np.arange(8)), plan)
    assert len(computed) <= len(plan) // 8, computed


if __name__ == "__main__":  # print the table above from the current implementation
    table = {f"{p}/{s}": _case(p, s) for p in sorted(PLANS) for s in sorted(STREAMS)}
    table["children-subsets"] = _digest(_children_and_subsets())
    rng = BatchRNG(0, [0, 1])
    table["first-normal"] = [float(x).hex() for x in rng.standard_normal(2)]
    table["first-random"] = [float(x).hex() for x in rng.random(2)]
    table["first-integers"] = rng.integers(1000, size=2).tolist()
    table["first-seeds"] = rng.seeds().tolist()
    table["tabular-1024"] = _digest(_run(BatchRNG(123, np.arange(1024), "env"), TABULAR[:100]))
    for key, value in table.items():
        print(f"    {key!r}: {value!r},")
