"""build_datasets / ClipDataset: item contract, actor-disjoint splits, deterministic views and augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emodistill.core.config import ConfigError, load_config
from emodistill.core.contract import CREMAD_CLASSES, RAVDESS_CLASSES, Preprocess
from emodistill.core.data import DataConfig, build_datasets
from emodistill.core.data.cache import read_entry
from emodistill.core.data.dataset import CLEAN_VIEW
from emodistill.core.data.splits import split_actors

DEMO = Preprocess(num_frames=8, image_size=64, clip_seconds=2.0, face_crop="center")


@pytest.fixture(scope="session")
def small_ds(synth_small, tmp_path_factory):
    cfg = DataConfig(root=str(synth_small), cache_dir=str(tmp_path_factory.mktemp("cache")), preprocess=DEMO,
                     num_views=4, seed=0, workers=0)
    return cfg, build_datasets(cfg, progress=False)


def test_item_contract(small_ds):
    cfg, ds = small_ds
    assert set(ds) == {"train", "val", "test"}
    item = ds["train"][0]
    assert item["video"].shape == (8, 3, 64, 64) and item["video"].dtype == torch.float32
    assert 0.0 <= item["video"].min() and item["video"].max() <= 1.0
    assert item["audio"].shape == (32000,) and item["audio"].dtype == torch.float32
    assert item["label"].dtype == torch.int64 and item["label"].ndim == 0
    assert isinstance(item["actor"], int) and isinstance(item["path"], str) and isinstance(item["key"], str)
    assert 0 <= item["view"] < cfg.num_views
    assert ds["train"].class_names == RAVDESS_CLASSES and ds["train"].num_classes == 8


def test_splits_are_actor_disjoint_and_complete(small_ds):
    _, ds = small_ds
    actors = {name: set(d.actors) for name, d in ds.items()}
    assert not (actors["train"] & actors["val"]) and not (actors["train"] & actors["test"])
    assert not (actors["val"] & actors["test"])
    assert {n: sorted(a) for n, a in actors.items()} == split_actors(range(1, 7), "fixed")
    assert sum(len(d) for d in ds.values()) == 96
    for d in ds.values():  # every class in every split
        assert set(d.labels) == set(range(8))


def test_views_and_augmentation_are_deterministic(small_ds):
    _, ds = small_ds
    train = ds["train"]
    a, b = train.load(3, view=2), train.load(3, view=2)
    assert torch.equal(a["video"], b["video"]) and torch.equal(a["audio"], b["audio"])
    c = train.load(3, view=1)
    assert not torch.equal(a["video"], c["video"])
    views0 = [train.view_of(i, epoch=0) for i in range(len(train))]
    assert views0 == [train.view_of(i, epoch=0) for i in range(len(train))]
    assert views0 != [train.view_of(i, epoch=1) for i in range(len(train))]
    assert set(views0) == set(range(4))
    train.set_epoch(1)
    item = train[5]
    assert item["view"] == train.view_of(5, epoch=1)
    assert torch.equal(item["video"], train.load(5, item["view"])["video"])
    train.set_epoch(0)


def test_augmentation_depends_on_seed_and_changes_content(small_ds, tmp_path):
    cfg, ds = small_ds
    other = build_datasets(cfg.model_copy(update={"seed": 1}), progress=False)["train"]
    a, b = ds["train"].load(0, 0), other.load(0, 0)
    assert a["key"] == b["key"]  # the key is content + preprocessing, not the seed
    assert not torch.equal(a["video"], b["video"])
    raw, pcm = read_entry(ds["train"].entries[0].path)
    plain = torch.from_numpy(raw).permute(0, 3, 1, 2).float() / 255
    assert a["video"].shape == plain.shape and not torch.allclose(a["video"], plain)


def test_clean_view_is_the_unaugmented_clip(small_ds):
    _, ds = small_ds
    train = ds["train"]
    item = train.load(2, CLEAN_VIEW)
    raw, pcm = read_entry(train.entries[2].path)
    assert item["view"] == CLEAN_VIEW  # its own cache key: never mistaken for augmented view 0
    np.testing.assert_allclose(item["video"].numpy(), raw.transpose(0, 3, 1, 2) / 255, atol=1e-6)
    np.testing.assert_allclose(item["audio"].numpy(), pcm / 32768, atol=1e-6)
    assert not torch.equal(item["video"], train.load(2, 0)["video"])


def test_eval_splits_are_not_augmented(small_ds):
    _, ds = small_ds
    for name in ("val", "test"):
        d = ds[name]
        assert not d.augment and d.num_views == 1
        item = d[0]
        raw, pcm = read_entry(d.entries[0].path)
        assert item["view"] == 0
        np.testing.assert_allclose(item["video"].numpy(), raw.transpose(0, 3, 1, 2) / 255, atol=1e-6)
        np.testing.assert_allclose(item["audio"].numpy(), pcm / 32768, atol=1e-6)


def test_no_augment_config(small_ds):
    cfg, _ = small_ds
    train = build_datasets(cfg.model_copy(update={"augment": False}), progress=False)["train"]
    assert not train.augment and train.num_views == 1 and train[0]["view"] == 0


def test_default_collate(small_ds):
    _, ds = small_ds
    batch = next(iter(torch.utils.data.DataLoader(ds["train"], batch_size=4, shuffle=False)))
    assert batch["video"].shape == (4, 8, 3, 64, 64) and batch["audio"].shape == (4, 32000)
    assert batch["label"].shape == (4,) and len(batch["path"]) == 4 and len(batch["key"]) == 4


def test_vocal_channel_filter(small_ds):
    cfg, _ = small_ds
    with pytest.raises(ValueError, match="no song clips"):
        build_datasets(cfg.model_copy(update={"vocal_channel": "song"}), progress=False)
    assert sum(len(d) for d in build_datasets(cfg.model_copy(update={"vocal_channel": "all"}),
                                              progress=False).values()) == 96


def test_fold_split(small_ds):
    cfg, _ = small_ds
    ds = build_datasets(cfg.model_copy(update={"split": "fold", "fold": 2}), progress=False)
    assert set(ds["test"].actors) == {3} and set(ds["val"].actors) == {4}


def test_cremad_through_the_same_interface(tmp_path, media):
    for actor in (1001, 1002, 1003):
        for emo in ("ANG", "HAP"):
            media.write_clip(tmp_path / "VideoFlash" / f"{actor}_DFA_{emo}_XX.mp4", frames=6, seed=actor)
    ds = build_datasets(DataConfig(root=str(tmp_path), format="cremad", preprocess=DEMO, workers=0),
                        progress=False)
    assert ds["train"].class_names == CREMAD_CLASSES and ds["train"].num_classes == 6
    assert {len(d) for d in ds.values()} == {2}
    assert sorted(ds["test"].labels) == sorted([CREMAD_CLASSES.index("happy"), CREMAD_CLASSES.index("angry")])
    assert set(ds["test"].actors) == {1003}


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'shuffle'"):
        load_config(DataConfig, None, ["root=x", "shuffle=true"])
    with pytest.raises(ConfigError, match="split"):
        load_config(DataConfig, None, ["root=x", "split=random"])
    with pytest.raises(FileNotFoundError):
        build_datasets(DataConfig(root=str(tmp_path / "missing")))


def test_shipped_configs_load():
    demo = load_config(DataConfig, "configs/data/synth_demo.yaml")
    assert (demo.preprocess.num_frames, demo.preprocess.image_size, demo.preprocess.clip_seconds) == (8, 64, 2.0)
    assert demo.preprocess.face_crop in ("center", "none")
    real = load_config(DataConfig, "configs/data/ravdess.yaml")
    assert (real.preprocess.num_frames, real.preprocess.image_size, real.preprocess.face_crop) == (16, 112, "haar")


def test_dataloader_workers_match_single_process(small_ds):
    _, ds = small_ds
    train = ds["train"]
    train.set_epoch(3)
    single = next(iter(torch.utils.data.DataLoader(train, batch_size=8)))
    multi = next(iter(torch.utils.data.DataLoader(train, batch_size=8, num_workers=2)))
    assert torch.equal(single["video"], multi["video"]) and torch.equal(single["audio"], multi["audio"])
    assert single["view"].tolist() == multi["view"].tolist()
    train.set_epoch(0)
