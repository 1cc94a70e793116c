"""Subject-wise splits: deterministic, order-independent, disjoint, saved as files."""

from __future__ import annotations

import json

import pytest

from MRImputationLib.core.errors import InputError
from MRImputationLib.data.splits import Split, make_split

SUBJECTS = [f"IXI{i:03d}-Guys-{1000 + i}" for i in range(50)]


def test_split_is_deterministic_and_independent_of_input_order():
    a = make_split(SUBJECTS, seed=4)
    b = make_split(list(reversed(SUBJECTS)), seed=4)
    assert a == b
    assert make_split(SUBJECTS, seed=5) != a


def test_parts_are_disjoint_cover_every_subject_and_follow_the_fractions():
    split = make_split(SUBJECTS + SUBJECTS[:3], val_fraction=0.1, test_fraction=0.2)
    parts = [set(split.train), set(split.val), set(split.test)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set().union(*parts) == set(SUBJECTS)
    assert (len(split.train), len(split.val), len(split.test)) == (35, 5, 10)
    assert all(split.of(s) == "test" for s in split.test)


def test_adding_subjects_keeps_earlier_test_subjects_mostly_in_place():
    small, large = make_split(SUBJECTS[:40]), make_split(SUBJECTS)
    assert len(set(small.test) & set(large.test)) >= len(small.test) - 2


@pytest.mark.parametrize("n", [3, 4, 5, 7])
def test_every_part_is_non_empty_from_three_subjects(n):
    split = make_split(SUBJECTS[:n])
    assert split.train and split.val and split.test
    assert len(split.subjects) == n


def test_two_subjects_give_train_and_test_without_validation():
    split = make_split(["b", "a"])
    assert len(split.train) == 1 and len(split.test) == 1 and split.val == []


def test_refuses_one_subject_and_impossible_fractions():
    with pytest.raises(InputError, match="at least two subjects"):
        make_split(["only"])
    with pytest.raises(InputError, match="fractions"):
        make_split(SUBJECTS, val_fraction=0.5, test_fraction=0.5)


def test_save_and_load_round_trip(tmp_path):
    split = make_split(SUBJECTS, seed=2)
    path = split.save(tmp_path / "split.json")
    assert json.loads(path.read_text())["format"] == "mrimputation-split/1"
    assert Split.load(path) == split
    assert not list(tmp_path.glob(".*tmp*"))


def test_refuses_a_subject_in_two_parts_and_reports_unknown_subjects(tmp_path):
    with pytest.raises(InputError, match="both train and test"):
        Split(train=["a", "b"], val=[], test=["b"])
    with pytest.raises(KeyError, match="not in this split"):
        make_split(SUBJECTS).of("nobody")
    with pytest.raises(InputError, match="not found"):
        Split.load(tmp_path / "missing.json")
