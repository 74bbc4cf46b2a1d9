"""The memory probe's exact-posterior bound (experiments/memory_probe.py) on a hand-built trial."""

import numpy as np
import pytest
from helpers import load_experiment

from metarl.types import TrialSequences


@pytest.fixture(scope="module")
def probe():
    return load_experiment("memory_probe")


def _sequences(states, actions, mask, num_states=3):
    states, actions, mask = (np.asarray(v) for v in (states, actions, mask))
    zeros = np.zeros(mask.shape)
    return TrialSequences(
        observations=np.eye(num_states)[states], actions=actions, rewards=zeros,
        terminated=zeros.astype(bool), truncated=zeros.astype(bool), episode=zeros.astype(int),
        episode_start=zeros.astype(bool), mask=mask, extras={},
        order=np.tile(np.arange(mask.shape[1]), (mask.shape[0], 1)))


def test_bayes_bound_counts_earlier_pulls_of_the_same_pair_within_a_trial(probe):
    # row 0: pairs (0,1) (0,1) (2,0) (0,1) -> earlier pulls 0, 1, 0, 2
    # row 1: pairs (0,1) (1,1) and two padding steps -> 0, 0 (row 0 is another trial)
    seq = _sequences(states=[[0, 0, 2, 0], [0, 1, 0, 0]], actions=[[1, 1, 0, 1], [1, 1, 1, 1]],
                     mask=[[True] * 4, [True, True, False, False]])
    expected = np.mean([1 + 1 / 1, 1 + 1 / 2, 1 + 1 / 1, 1 + 1 / 3, 1 + 1 / 1, 1 + 1 / 1])
    assert probe.bayes_squared_error(seq, num_actions=2) == pytest.approx(expected)


def test_bayes_bound_is_the_no_memory_error_when_no_pair_repeats(probe):
    seq = _sequences(states=[[0, 1, 2]], actions=[[0, 0, 0]], mask=[[True] * 3])
    assert probe.bayes_squared_error(seq, num_actions=1) == pytest.approx(2.0)
