"""`metarl bench rl2-libraries`: each library's record is consistent (steps per second from the
iteration's time), the speed-ups are the ratios of those times, and bad sizes are refused."""

import pytest

from metarl.benchmarks import rl2_libraries


def test_the_record_is_consistent(ray_local):
    pytest.importorskip("sb3_contrib")
    pytest.importorskip("ray.rllib")
    result = rl2_libraries.run(tasks=20, episodes=5, repeats=1, epochs=1)
    assert result["env_steps_per_iteration"] == 100
    for name in rl2_libraries.LIBRARIES:
        record = result[name]
        assert record["env_steps"] == 100  # each library's iteration sampled the same steps
        assert record["env_steps_per_s"] == pytest.approx(
            100 / record["iteration_ms"] * 1000, rel=0.01, abs=1)
    for name in rl2_libraries.LIBRARIES[1:]:
        assert result[f"speedup_over_{name}"] == pytest.approx(
            result[name]["iteration_ms"] / result["metarl"]["iteration_ms"], abs=0.01)
    assert result["bare_env_steps_per_s"] > result["metarl"]["env_steps_per_s"]


def test_sizes_that_do_not_split_are_refused():
    with pytest.raises(ValueError, match="--tasks 21 --episodes 5"):
        rl2_libraries.run(tasks=21, episodes=5)
