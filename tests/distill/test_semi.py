"""The semi-supervised regime: the labelled/unlabelled split, what each arm sees, the label-efficiency sweep."""

import json
from collections import Counter

import pytest
import torch

from emodistill.distill.data import LabelledOnly, PartiallyLabeled, label_split, semi_supervised
from emodistill.distill.losses import IGNORE_LABEL
from emodistill.distill.toy import ToyDataConfig, toy_datasets
from emodistill.core.config import load_config

from .test_run import recipe


def _split_inputs(n=200, classes=8):
    labels = [(i * 7) % classes for i in range(n)]
    keys = [f"Actor_{i % 16:02d}/clip{i:04d}" for i in range(n)]
    return labels, keys


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
def test_label_split_deterministic_disjoint_stratified(fraction):
    labels, keys = _split_inputs()
    lab, unl = label_split(labels, keys, fraction, seed=0)
    assert (lab, unl) == label_split(labels, keys, fraction, seed=0)           # deterministic
    assert not set(lab) & set(unl) and sorted(lab + unl) == list(range(len(labels)))  # disjoint, complete
    per_class = Counter(labels)
    got = Counter(labels[i] for i in lab)
    assert got == {c: round(fraction * n) for c, n in per_class.items()}     # the fraction, in every class
    # the split follows the clips, not their order
    perm = list(reversed(range(len(labels))))
    lab_p, _ = label_split([labels[i] for i in perm], [keys[i] for i in perm], fraction, seed=0)
    assert sorted(keys[perm[i]] for i in lab_p) == sorted(keys[i] for i in lab)
    assert label_split(labels, keys, fraction, seed=1)[0] != lab              # another seed, other clips


def test_label_split_nested_and_edges():
    labels, keys = _split_inputs()
    small, _ = label_split(labels, keys, 0.1, 3)
    big, _ = label_split(labels, keys, 0.5, 3)
    assert set(small) < set(big)                      # more labels add clips, never swap them
    assert label_split(labels, keys, 1.0, 0) == (list(range(200)), [])
    assert label_split(labels, keys, 0.0, 0) == ([], list(range(200)))
    assert len(label_split(labels, keys, 0.001, 0)[0]) == 8  # at least one labelled clip per class
    with pytest.raises(ValueError, match="fraction"):
        label_split(labels, keys, 1.5, 0)


def test_arms_see_what_the_regime_says():
    train = toy_datasets(ToyDataConfig(train=80))["train"]
    true = train.labels
    assert true == [int(train[i]["label"]) for i in range(len(train))]  # labels without building items
    kd, kd_reg = semi_supervised(train, train, 0.25, seed=0, with_teacher=True)
    ce, ce_reg = semi_supervised(train, train, 0.25, seed=0, with_teacher=False)
    assert isinstance(kd, PartiallyLabeled) and isinstance(ce, LabelledOnly)
    assert kd_reg["labelled_clips"] == ce_reg["labelled_clips"] == 20
    assert kd_reg["unlabelled_clips"] == 60 and ce_reg["unlabelled_clips"] == 0
    kd_items = [kd[i] for i in range(len(kd))]
    labelled_keys = {it["key"] for it in kd_items if it["label"] != IGNORE_LABEL}
    assert len(kd_items) == 80 and len(labelled_keys) == 20
    # the CE-only arm: exactly the KD arm's labelled clips, with their true labels, and nothing else
    ce_items = [ce[i] for i in range(len(ce))]
    assert {it["key"] for it in ce_items} == labelled_keys and len(ce_items) == 20
    assert all(int(it["label"]) == true[int(it["key"].rsplit("-", 1)[1])] for it in ce_items)
    matched, reg = semi_supervised(train, train, 0.25, seed=0, with_teacher=False, matched_steps=True)
    assert reg["repeats"] == 4 and len(matched) == 80 and {matched[i]["key"] for i in range(80)} == labelled_keys


def test_ce_only_arm_never_loads_unlabelled_clips(tmp_path, monkeypatch):
    """End to end on the toy set: every train item the CE-only arm draws is a labelled clip."""
    from emodistill.distill.config import DistillConfig
    from emodistill.distill.run import train
    from emodistill.distill.toy import ToyClips

    seen: dict[str, set] = {"train": set()}
    real = ToyClips.load

    def spy(self, i, view=0):
        item = real(self, i, view)
        if self.split == "train":
            seen["train"].add(item["key"])
        return item

    monkeypatch.setattr(ToyClips, "load", spy)
    overrides = ["distill.label_fraction=0.25", "train.epochs=2", "distill.kd=false"]
    m = train(load_config(DistillConfig, recipe(tmp_path, "ce"), overrides))
    ds = toy_datasets(ToyDataConfig(train=64, val=23, test=21))["train"]
    labelled, _ = label_split(ds.labels, [ds.key_of(i) for i in range(len(ds))], 0.25, 0)
    assert seen["train"] == {ds.key_of(i) for i in labelled}
    assert m["regime"] == {"label_fraction": 0.25, "labelled_clips": len(labelled),
                           "unlabelled_available": 64 - len(labelled), "unlabelled_clips": 0, "repeats": 1}
    assert len(m["history"]) == 2 and m["history"][0]["step"] == len(labelled) // 8  # labelled clips only
    meta = json.loads((tmp_path / "ce" / "best" / "checkpoint.json").read_text())
    assert meta["distill"]["regime"]["unlabelled_clips"] == 0 and meta["distill"]["kd"] is False


def test_sweep_command_on_the_toy_set(tmp_path, capsys):
    from emodistill.distill.seeds import main

    cfg = recipe(tmp_path, "sweep", train={"epochs": 1, "batch_size": 8, "eval_batch_size": 8, "lr": 0.01,
                                           "threads": 1, "eval_teacher": True, "eval_missing": False})
    out = tmp_path / "sweep_out"
    assert main(["--config", str(cfg), "--label-fractions", "0.5", "1.0", "--seeds", "0", "1",
                 "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert set(s["fractions"]) == {"f0.5", "f1"}
    half = s["fractions"]["f0.5"]
    assert half["regime"]["kd"]["labelled_clips"] == half["regime"]["ce"]["labelled_clips"] == 32
    assert half["regime"]["kd"]["unlabelled_clips"] == 32 and half["regime"]["ce"]["unlabelled_clips"] == 0
    assert half["gain_points"]["pairs"] == 2 and len(half["kd"]["runs"]) == 2
    g = half["gain_points"]
    assert g["per_seed"] == pytest.approx([100 * (k["test_accuracy"] - c["test_accuracy"])
                                           for k, c in zip(half["kd"]["runs"], half["ce"]["runs"])])
    assert half["teacher_test_accuracy"] is not None
    table = (out / "table.md").read_text()
    assert table.count("\n| 0.5 |") == 1 and "| 1 | 64 / 0 |" in table and "Teacher" in table
    assert (out / "label_efficiency.png").stat().st_size > 1000
    assert (out / "f0.5" / "kd_seed1" / "metrics.json").exists()
    # a rerun reuses finished runs (no training): same summary
    mtime = (out / "f1" / "ce_seed0" / "metrics.json").stat().st_mtime
    assert main(["--config", str(cfg), "--label-fractions", "0.5", "1.0", "--seeds", "0", "1",
                 "--out", str(out)]) == 0
    assert (out / "f1" / "ce_seed0" / "metrics.json").stat().st_mtime == mtime
    assert "| 0.5 | 32 / 32 |" in capsys.readouterr().out
    # --existing-only: a partial table from what exists, nothing trained
    assert main(["--config", str(cfg), "--label-fractions", "0.25", "0.5", "--seeds", "0", "5", "--out", str(out),
                 "--existing-only"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert set(s["fractions"]) == {"f0.5"} and s["fractions"]["f0.5"]["gain_points"]["pairs"] == 1
    assert not (out / "f0.25").exists() and not (out / "f0.5" / "kd_seed5").exists()
