"""Actor-only splits: the 6-fold protocol, the fixed split, and no actor in two splits."""

from __future__ import annotations

import pytest

from emodistill.core.data.splits import actor_groups, assign_splits, split_actors


def _disjoint_cover(splits: dict, actors) -> None:
    seen = [a for name in ("train", "val", "test") for a in splits[name]]
    assert len(seen) == len(set(seen)), f"an actor is in two splits: {splits}"
    assert set(seen) == set(actors)
    assert all(splits[name] for name in ("train", "val", "test"))


@pytest.mark.parametrize("fold", range(6))
def test_ravdess_fold_protocol(fold):
    s = split_actors(range(1, 25), "fold", fold)
    assert s["test"] == [4 * fold + i for i in range(1, 5)]
    nxt = (fold + 1) % 6
    assert s["val"] == [4 * nxt + i for i in range(1, 5)]
    _disjoint_cover(s, range(1, 25))


def test_ravdess_fixed_split():
    s = split_actors(range(1, 25), "fixed")
    assert s == {"train": list(range(1, 17)), "val": [17, 18, 19, 20], "test": [21, 22, 23, 24]}
    # each of val/test has 2 male (odd) and 2 female (even) actors
    assert sum(a % 2 for a in s["val"]) == 2 and sum(a % 2 for a in s["test"]) == 2


def test_each_actor_tested_exactly_once_over_folds():
    tested = [a for k in range(6) for a in split_actors(range(1, 25), "fold", k)["test"]]
    assert sorted(tested) == list(range(1, 25))


@pytest.mark.parametrize("actors", [range(1, 7), range(1, 13), range(1001, 1092), [3, 5, 9, 10, 11]])
@pytest.mark.parametrize("split,fold", [("fixed", 0), ("fold", 0), ("fold", 2)])
def test_other_actor_sets_are_disjoint(actors, split, fold):
    acts = list(actors)
    if split == "fold" and fold >= len(acts):
        pytest.skip("fold needs more actors")
    _disjoint_cover(split_actors(acts, split, fold, format="cremad"), acts)


def test_groups_are_contiguous_and_balanced():
    groups = actor_groups(range(1001, 1092))
    sizes = [len(g) for g in groups]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == 91
    assert [a for g in groups for a in g] == list(range(1001, 1092))


def test_too_few_actors_and_bad_args():
    with pytest.raises(ValueError, match=">= 3 actors"):
        split_actors([1, 2])
    with pytest.raises(ValueError, match="fold must be"):
        split_actors(range(1, 25), "fold", 6)
    with pytest.raises(ValueError, match="split must be"):
        split_actors(range(1, 25), "random")


def test_assign_splits_maps_every_actor():
    m = assign_splits(range(1, 25), "fold", 1)
    assert len(m) == 24 and m[5] == "test" and m[9] == "val" and m[1] == "train"
