"""Actor-disjoint splits: the 6-fold RAVDESS protocol and a fixed train/val/test split.

The actors present are sorted and cut into 6 contiguous groups of (near) equal size. With the full
RAVDESS set (actors 1..24) group g is actors 4g+1..4g+4, the protocol used by RAVDESS papers:
    fold k:  test = group k, val = group (k+1) mod 6, train = the other 4 groups.
    fixed:   train = groups 0-3, val = group 4, test = group 5
             (RAVDESS: train actors 1-16, val 17-20, test 21-24; 2 male + 2 female in val and test).
For another actor set (CREMA-D's 1001..1091, a subset, the small synthetic set) the same rule runs on
the actors present, and a warning says the groups are not the literal RAVDESS ones. Your own data's
speakers (or clips, where no speaker is given) are numbered actors the same way (`layouts.py`); a split
the data gives itself (a manifest's `split` column, train/ val/ test/ folders) is used as given.
"""

from __future__ import annotations

import logging
from typing import Iterable, Literal

logger = logging.getLogger(__name__)

NUM_FOLDS = 6
SPLITS = ("train", "val", "test")
_WARNED: set[tuple[int, ...]] = set()


def actor_groups(actors: Iterable[int], num_groups: int = NUM_FOLDS) -> list[list[int]]:
    """Sorted actors cut into `num_groups` contiguous groups; earlier groups get the remainder."""
    acts = sorted(set(int(a) for a in actors))
    if len(acts) < 3:
        raise ValueError(f"an actor-disjoint train/val/test split needs >= 3 actors, found {len(acts)}: {acts}")
    base, extra = divmod(len(acts), num_groups)
    groups, start = [], 0
    for g in range(num_groups):
        n = base + (1 if g < extra else 0)
        groups.append(acts[start:start + n])
        start += n
    return groups


def split_actors(actors: Iterable[int], split: Literal["fixed", "fold"] = "fixed", fold: int = 0,
                 format: str = "ravdess") -> dict[str, list[int]]:
    """{"train": [...], "val": [...], "test": [...]} actor ids; every actor in exactly one split."""
    acts = sorted(set(int(a) for a in actors))
    if format == "ravdess" and acts != list(range(1, 25)) and tuple(acts) not in _WARNED:
        _WARNED.add(tuple(acts))
        logger.warning("actors %s are not the full RAVDESS set 1..24: splits use 6 contiguous groups of the "
                       "actors present, not the literal RAVDESS fold actors", acts)
    n_groups = min(NUM_FOLDS, len(acts))
    groups = actor_groups(acts, n_groups)
    if split == "fold":
        if not 0 <= fold < NUM_FOLDS:
            raise ValueError(f"fold must be in 0..{NUM_FOLDS - 1}, got {fold}")
        if fold >= n_groups:
            raise ValueError(f"fold {fold} needs >= {fold + 1} actors, found {len(acts)}")
        test, val = fold, (fold + 1) % n_groups
        train = [g for g in range(n_groups) if g not in (test, val)]
        out = {"train": sum((groups[g] for g in train), []), "val": groups[val], "test": groups[test]}
    elif split == "fixed":
        out = {"train": sum(groups[:n_groups - 2], []), "val": groups[n_groups - 2], "test": groups[n_groups - 1]}
    else:
        raise ValueError(f"split must be 'fixed' or 'fold', got {split!r}")
    for name in SPLITS:
        if not out[name]:
            raise ValueError(f"split {name!r} has no actors (actors present: {acts})")
    return out


def assign_splits(actors: Iterable[int], split: Literal["fixed", "fold"] = "fixed", fold: int = 0,
                  format: str = "ravdess") -> dict[int, str]:
    """actor id -> split name."""
    return {a: name for name, acts in split_actors(actors, split, fold, format).items() for a in acts}


def clip_splits(clips: list, split: Literal["fixed", "fold"] = "fixed", fold: int = 0,
                format: str = "ravdess") -> tuple[list[str], dict[str, list[int]]]:
    """The split of every clip, and {split: actors}. Clips that carry a split (all or none of them) keep
    it; a speaker found in two given splits is a warning (the split is then not speaker-independent)."""
    if clips and all(getattr(c, "split", None) for c in clips):
        names = [c.split for c in clips]
        actors = {s: sorted({c.actor for c, n in zip(clips, names) if n == s}) for s in SPLITS}
        train = {c.speaker for c, n in zip(clips, names) if n == "train" and c.speaker}
        shared = sorted(train & {c.speaker for c, n in zip(clips, names) if n != "train"})
        if shared:
            logger.warning("speakers %s are in train and in val/test of the given split: it is not "
                           "speaker-independent", shared[:10])
        for s in SPLITS:
            if not actors[s]:
                raise ValueError(f"the data's own split gives no clips to {s!r}")
        return names, actors
    by_actor = assign_splits({c.actor for c in clips}, split, fold, format)
    return [by_actor[c.actor] for c in clips], \
        {s: sorted(a for a, n in by_actor.items() if n == s) for s in SPLITS}


__all__ = ["NUM_FOLDS", "SPLITS", "actor_groups", "split_actors", "assign_splits", "clip_splits"]
