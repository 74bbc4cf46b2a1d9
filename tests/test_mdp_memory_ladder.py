"""experiments/mdp_memory_ladder.py: episode blocks and the table's per-block columns."""

import sys
from pathlib import Path

import pytest
from helpers import load_experiment

EXPERIMENTS = str(Path(__file__).parents[1] / "experiments")


@pytest.fixture(scope="module")
def ladder():
    sys.path.insert(0, EXPERIMENTS)  # the script imports its sibling report_table
    try:
        yield load_experiment("mdp_memory_ladder")
    finally:
        sys.path.remove(EXPERIMENTS)


def test_block_ends_become_slices_of_the_episode_axis(ladder):
    assert ladder.episode_blocks([1, 5, 10], 10) == [(0, 1), (1, 5), (5, 10)]
    assert ladder.episode_blocks([], 10) == []
    assert [ladder.block_name(*b) for b in ladder.episode_blocks([1, 3], 3)] == [
        "episode 1", "episodes 2–3"]


@pytest.mark.parametrize("ends", [[3, 3], [2, 1], [0, 2], [4, 11]])
def test_bad_block_ends_are_refused_naming_them(ladder, ends):
    with pytest.raises(ValueError, match=r"--blocks .*1\.\.10"):
        ladder.episode_blocks(ends, 10)


def test_block_means_add_up_to_the_trial_return(ladder, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["mdp_memory_ladder.py", "--episodes", "3", "--tasks",
                                      "4", "--trials", "2", "--blocks", "1", "3"])
    ladder.main()
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines()[2:]]
    assert len(rows) == 6  # random ... oracle
    for row in rows:
        trial = float(row[1].split(" ± ")[0])
        first, block1, block2 = float(row[2]), float(row[4]), float(row[5].rstrip(" |"))
        assert block1 == first
        assert block1 + 2 * block2 == pytest.approx(trial, abs=0.02)
    oracle, random = rows[-1], rows[0]
    assert float(oracle[1].split(" ± ")[0]) > float(random[1].split(" ± ")[0])


def test_bad_blocks_exit_with_code_2(ladder, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["mdp_memory_ladder.py", "--episodes", "3", "--blocks",
                                      "2", "5"])
    with pytest.raises(SystemExit) as exit_info:
        ladder.main()
    assert exit_info.value.code == 2
    assert "--blocks [2, 5]" in capsys.readouterr().err
