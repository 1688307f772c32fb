"""Teacher-output cache: equals the live teacher, misses on every key change, compact storage."""

import pytest
import torch
from torch.utils.data import DataLoader, default_collate

from emodistill.distill.cache import CacheMiss, TeacherCache, WithTeacherOutputs, fill_for_epochs, teacher_fingerprint
from emodistill.distill.core import Distiller
from emodistill.distill.data import CLEAN_VIEW, CleanTeacherView, clean_teacher_inputs
from emodistill.distill.losses import create_loss
from emodistill.distill.toy import ToyDataConfig, create_toy, toy_datasets

FEATURES = ["pooled", "features", "audio_features", "visual_features"]


@pytest.fixture()
def setup(tmp_path):
    cfg = ToyDataConfig(train=20, val=4, test=4, num_views=3)
    train = toy_datasets(cfg)["train"]
    teacher = create_toy("toy_teacher").eval()
    ctx = {"preprocess": {"frames": cfg.frames, "image_size": cfg.image_size}, "augment": {"views": 3, "seed": 0}}
    return tmp_path, train, teacher, ctx


def batches(ds, epochs=(0,), batch_size=8):
    for e in epochs:
        ds.set_epoch(e)
        yield from DataLoader(ds, batch_size=batch_size)


def test_cached_outputs_equal_live_teacher(setup):
    root, train, teacher, ctx = setup
    cache = TeacherCache(root, teacher_fingerprint(model=teacher), ctx, features=FEATURES)
    added = cache.fill(teacher, batches(train, epochs=(0, 1, 2)))
    assert added == len(cache) and len(cache) > len(train)          # several views per sample
    assert cache.fill(teacher, batches(train, epochs=(0, 1, 2))) == 0  # second pass: all hits
    reopened = TeacherCache(root, teacher_fingerprint(model=teacher), ctx, features=FEATURES)
    assert len(reopened) == len(cache)
    for e in (0, 2):
        train.set_epoch(e)
        batch = next(iter(DataLoader(train, batch_size=8)))
        with torch.no_grad():
            live = teacher(batch["video"], batch["audio"])
        got = reopened.lookup_batch(batch["key"], batch["view"])
        for f in ["logits"] + FEATURES:
            assert got[f].dtype == torch.float16
            torch.testing.assert_close(got[f].float(), live[f], rtol=1e-3, atol=1e-3)  # fp16 rounding
        one = reopened.lookup(batch["key"][3], int(batch["view"][3]))
        torch.testing.assert_close(one["logits"], got["logits"][3])


def test_every_key_change_misses(setup):
    root, train, teacher, ctx = setup
    h = teacher_fingerprint(model=teacher)
    cache = TeacherCache(root, h, ctx)
    cache.fill(teacher, batches(train, epochs=(0,)))       # one view per sample
    assert len(cache) == len(train)
    item = train[0]
    key, view = item["key"], item["view"]
    assert (key, view) in cache
    # another sample (changed content -> the data layer gives it another key)
    changed = toy_datasets(ToyDataConfig(train=20, val=4, test=4, num_views=3, seed=1))["train"][0]
    assert changed["key"] != key and (changed["key"], changed["view"]) not in cache
    # another augmentation view of the same sample is never served
    other_view = (view + 1) % 3
    assert (key, other_view) not in cache
    with pytest.raises(CacheMiss, match="view"):
        cache.lookup(key, other_view)
    # other preprocessing or augmentation settings: a different store, empty
    ctx2 = {**ctx, "preprocess": {**ctx["preprocess"], "image_size": ctx["preprocess"]["image_size"] * 2}}
    assert (key, view) not in TeacherCache(root, h, ctx2)
    assert (key, view) not in TeacherCache(root, h, {**ctx, "augment": {"views": 4, "seed": 0}})
    # another teacher (different weights -> different hash)
    t2 = create_toy("toy_teacher").eval()
    with torch.no_grad():
        t2.head.bias.add_(1.0)
    h2 = teacher_fingerprint(model=t2)
    assert h2 != h and (key, view) not in TeacherCache(root, h2, ctx)
    # the original store is untouched by the others
    assert (key, view) in TeacherCache(root, h, ctx)


def test_collate_serves_the_drawn_view_and_refuses_others(setup):
    root, train, teacher, ctx = setup
    cache = TeacherCache(root, teacher_fingerprint(model=teacher), ctx)
    cache.fill(teacher, batches(train, epochs=(0,)))
    loader = DataLoader(train, batch_size=8, collate_fn=WithTeacherOutputs(cache))
    train.set_epoch(0)
    batch = next(iter(loader))
    assert batch["teacher"]["logits"].shape == (8, 4)
    with torch.no_grad():
        live = teacher(batch["video"], batch["audio"])["logits"]
    torch.testing.assert_close(batch["teacher"]["logits"].float(), live, rtol=1e-3, atol=1e-3)
    # an epoch in which some sample is drawn with a view that was not cached: a miss, never another view
    e = next(e for e in range(1, 50) if any(train.view_of(i, e) != train.view_of(i, 0) for i in range(8)))
    train.set_epoch(e)
    with pytest.raises(CacheMiss):
        next(iter(loader))


def test_clean_view_one_entry_per_clip_served_whatever_view_is_drawn(setup):
    root, train, teacher, ctx = setup
    cache = TeacherCache(root, teacher_fingerprint(model=teacher), ctx)
    assert fill_for_epochs(cache, teacher, train, epochs=3, view=CLEAN_VIEW) == len(train) == len(cache)
    assert fill_for_epochs(cache, teacher, train, epochs=3, view=CLEAN_VIEW) == 0
    loader = DataLoader(train, batch_size=8, collate_fn=WithTeacherOutputs(cache, view=CLEAN_VIEW))
    clean = default_collate([train.load(i, CLEAN_VIEW) for i in range(8)])
    with torch.no_grad():
        want = teacher(clean["video"], clean["audio"])["logits"]
    for e in (0, 2):
        train.set_epoch(e)
        batch = next(iter(loader))
        assert (batch["view"] > 0).any()  # some rows are augmented views: the student's input is not clean
        torch.testing.assert_close(batch["teacher"]["logits"].float(), want, rtol=1e-3, atol=1e-3)
    # the per-view collate never serves the clean entry for a drawn view
    with pytest.raises(CacheMiss):
        next(iter(DataLoader(train, batch_size=8, collate_fn=WithTeacherOutputs(cache))))
    train.set_epoch(0)


def test_live_clean_view_equals_cached_clean_view(setup):
    root, train, teacher, ctx = setup
    cache = TeacherCache(root, teacher_fingerprint(model=teacher), ctx)
    fill_for_epochs(cache, teacher, train, epochs=1, view=CLEAN_VIEW)
    student = create_toy("toy_student").eval()
    live = Distiller(student, teacher, [("kd", 1.0, create_loss("kd"))], teacher_inputs=clean_teacher_inputs)
    cached = Distiller(student, None, [("kd", 1.0, create_loss("kd"))])
    train.set_epoch(1)
    a = live(next(iter(DataLoader(CleanTeacherView(train), batch_size=8))))["kd"]
    b = cached(next(iter(DataLoader(train, batch_size=8, collate_fn=WithTeacherOutputs(cache, view=CLEAN_VIEW)))))
    assert a.item() > 0 and b["kd"].item() == pytest.approx(a.item(), rel=1e-2)  # fp16 cache rounding
    train.set_epoch(0)


def test_teacher_fingerprint_from_checkpoint(tmp_path):
    from emodistill.core.checkpoint import CheckpointError, save_checkpoint
    from emodistill.core.contract import Preprocess

    t = create_toy("toy_teacher")
    save_checkpoint(tmp_path / "a", t, preprocess=Preprocess(), class_names=["a", "b", "c", "d"])
    import json
    sha = json.loads((tmp_path / "a" / "checkpoint.json").read_text())["weights_sha256"]
    assert teacher_fingerprint(tmp_path / "a") == sha
    assert teacher_fingerprint(tmp_path / "a" / "model.safetensors") == sha
    with pytest.raises(CheckpointError):
        teacher_fingerprint(tmp_path / "missing")


def test_topk_storage(setup):
    root, train, teacher, ctx = setup
    cache = TeacherCache(root, teacher_fingerprint(model=teacher), ctx, topk=2)
    cache.fill(teacher, batches(train, epochs=(0,)))
    train.set_epoch(0)
    batch = next(iter(DataLoader(train, batch_size=4)))
    got = cache.lookup_batch(batch["key"], batch["view"])
    assert set(got) == {"logits_topk_values", "logits_topk_indices"}
    with torch.no_grad():
        top = teacher(batch["video"], batch["audio"])["logits"].topk(2)
    torch.testing.assert_close(got["logits_topk_values"].float(), top.values, rtol=1e-3, atol=1e-3)
    assert torch.equal(got["logits_topk_indices"], top.indices)
    files = sorted(p.name for p in cache.dir.iterdir())
    assert "meta.json" in files and not any("logits.v" in f for f in files)
