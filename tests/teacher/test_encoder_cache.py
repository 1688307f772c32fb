"""The frozen-encoder cache (teacher/encoder_cache.py), LoRA / partial unfreezing of the LFM2 layers, the 8 GB
recipe."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from emodistill.core.config import ConfigError, load_config
from emodistill.core.contract import Preprocess
from emodistill.core.data import DataConfig
from emodistill.core.data.cache import clip_key
from emodistill.core.data.names import Clip
from emodistill.teacher import create_teacher, model_from_config
from emodistill.teacher.encoder_cache import (EncodedClips, EncoderCache, EncoderCacheMiss, encoder_fingerprint,
                                              encoder_identity)
from emodistill.teacher.train import TeacherTrainConfig

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "teacher" / "tiny_synth.yaml"
RECIPE = REPO / "configs" / "teacher" / "lfm2_700m_rtx3050_8gb.yaml"
FROZEN = {"freeze_vision": True, "freeze_audio": True}


def _store(root, model, data: DataConfig, precision="no"):
    return EncoderCache(root, encoder_fingerprint(model), encoder_identity(model, data, precision, "cpu"))


def test_keys_change_with_content_preprocessing_view_and_weights(tmp_path, small):
    video = tmp_path / "a.mp4"
    video.write_bytes(b"\0" * 1000)
    clip = Clip(str(video), None, 0, "neutral", 1, "a")
    pre = Preprocess(num_frames=4, image_size=40, clip_seconds=0.5, face_crop="none")
    key = clip_key(clip, pre)
    assert clip_key(clip, pre) == key  # same clip, same preprocessing: same key
    assert clip_key(clip, pre.model_copy(update={"image_size": 48})) != key  # preprocessing is in the clip key
    video.write_bytes(b"\1" + b"\0" * 999)
    assert clip_key(clip, pre) != key  # content, not the name

    torch.manual_seed(0)
    model, data = small(**FROZEN), DataConfig(root="x", preprocess=pre)
    cache = _store(tmp_path / "c", model, data)
    enc = {"visual": torch.randn(1, 4, model.vision.dim), "audio": torch.randn(1, 4, model.audio.dim)}
    cache.add([key], [2], enc)
    cache.flush()
    same = _store(tmp_path / "c", model, data)
    assert same.dir == cache.dir and (key, 2) in same  # same everything: the same store and row, from disk
    torch.testing.assert_close(same.lookup(key, 2)["visual"], enc["visual"][0], rtol=0, atol=0)
    assert (key, 1) not in same and ("other", 2) not in same  # another view / clip: another row
    changed = {"preprocessing": (model, DataConfig(root="x", preprocess=pre.model_copy(update={"num_frames": 8}))),
               "augmentation seed": (model, DataConfig(root="x", preprocess=pre, seed=1)),
               "augmentation views": (model, DataConfig(root="x", preprocess=pre, num_views=2))}
    other = small(**FROZEN)  # other random encoder weights
    assert encoder_fingerprint(other) != encoder_fingerprint(model)
    changed["encoder weights"] = (other, data)
    for what, (m, d) in changed.items():
        c = _store(tmp_path / "c", m, d)
        assert c.dir != cache.dir and (key, 2) not in c, what
    assert _store(tmp_path / "c", model, data, precision="bf16").dir != cache.dir  # the precision it ran in
    # the fusion is not an encoder: its weights do not change the key
    with torch.no_grad():
        model.head[-1].weight.add_(1.0)
    assert _store(tmp_path / "c", model, data).dir == cache.dir


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from emodistill.core.data.synth import generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, size="small", seed=0, workers=0, progress=False)
    return root


def _cfg(root, out, *extra):
    return load_config(TeacherTrainConfig, TINY, [
        f"data.root={root}", f"output_dir={out}", "data.workers=0", "train.epochs=1", "train.batch_size=8",
        "model.overrides.num_layers=2", "train.modality_dropout=0.2", "train.eval_missing=false",
        "model.overrides.freeze_vision=true", "model.overrides.freeze_audio=true", *extra])


def test_a_miss_is_an_error_naming_the_clip_and_key(synth, tmp_path):
    from emodistill.teacher.train import train

    with pytest.raises(EncoderCacheMiss, match=r"no entry for clip .*Actor_\d+.*\.mp4 \(key=[0-9a-f]+, view=\d\)"):
        train(_cfg(synth, tmp_path / "r", "encoder_cache.enabled=true", "encoder_cache.fill=false",
                   f"encoder_cache.dir={tmp_path / 'empty'}"))
    from emodistill.core.data import build_datasets

    ds = build_datasets(_cfg(synth, tmp_path).data, progress=False)["train"]
    model = create_teacher("teacher_tiny", **FROZEN, num_classes=ds.num_classes)
    items = EncodedClips(ds, _store(tmp_path / "c", model, _cfg(synth, tmp_path).data))
    with pytest.raises(EncoderCacheMiss, match=f"key={ds.entries[3].key}, view={ds.view_of(3)}"):
        items[3]
    with pytest.raises(ConfigError, match="freeze_vision=true"):  # a training encoder cannot be cached
        train(_cfg(synth, tmp_path / "r2", "encoder_cache.enabled=true", "model.overrides.freeze_vision=false"))


def test_cached_training_gives_the_live_losses(synth, tmp_path):
    """Same seed, same views: the fusion trained on the stored encoder outputs sees what it sees live."""
    from emodistill.teacher.train import train

    live = train(_cfg(synth, tmp_path / "live"))
    store = tmp_path / "store"
    cached = train(_cfg(synth, tmp_path / "cached", "encoder_cache.enabled=true", f"encoder_cache.dir={store}"))
    info = cached["encoder_cache"]
    assert info["added"] == info["entries"] == info["pairs"] > 0 and "encoder_cache" not in live
    again = train(_cfg(synth, tmp_path / "again", "encoder_cache.enabled=true", f"encoder_cache.dir={store}",
                       "encoder_cache.fill=false"))  # every (clip, view) stored: nothing computed, no miss
    assert again["encoder_cache"]["added"] == 0
    for run in (cached, again):
        for a, b in zip(live["history"], run["history"]):
            assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
            assert b["val_accuracy"] == a["val_accuracy"]
        assert run["test"]["accuracy"] == live["test"]["accuracy"]
    shutil.rmtree(store)


def test_lora_trains_only_the_adapters_fusion_and_head(small):
    model = small(**FROZEN, dtype="bfloat16", lora={"rank": 4, "layers": [0, -1]})
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    lora = {n for n in trainable if ".lora_" in n}
    assert lora and all(n.startswith("backbone.layers.0.") or n.startswith("backbone.layers.2.") for n in lora)
    ids = {id(p) for part in ("fusion", "head") for p in model.parts()[part]}
    rest = {n for n, p in model.named_parameters() if id(p) in ids}
    assert trainable == lora | rest
    n_lora = sum(p.numel() for n, p in model.named_parameters() if n in lora)
    counts = model.count_parameters()
    assert counts["trainable"] == n_lora + counts["fusion"] + counts["head"]
    assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if n in lora)  # fp32 adapters
    # partial unfreezing: the listed layers and the final norm
    part = small(backbone_trainable_layers=[-1])
    names = [n for n, p in part.backbone.named_parameters() if p.requires_grad]
    assert names and all(n.startswith(("layers.2.", "embedding_norm.")) for n in names)
    for bad, match in (({"lora": {"rank": 4}, "freeze_backbone": True}, "freeze_backbone"),
                       ({"lora": {"rank": 4}, "backbone_trainable_layers": [0]}, "give one"),
                       ({"backbone_trainable_layers": [5]}, "out of range")):
        with pytest.raises(ValueError, match=match):
            small(**bad)
    with pytest.raises(ConfigError, match="teacher.lora"):  # typed settings: an unknown key fails
        small(lora={"rnak": 4})


def test_lora_teacher_loads_pretrained_weights_and_its_checkpoint(hf_dirs, clip, small):
    src = {"vision_source": str(hf_dirs["vision"]), "audio_source": str(hf_dirs["audio"]),
           "lfm2_source": str(hf_dirs["lfm2"])}
    torch.manual_seed(0)
    plain = small(**src).eval()
    torch.manual_seed(0)  # the adapters are made last: the fusion and head get the same init
    adapted = small(**src, lora={"rank": 4}).eval()
    assert set(adapted.load_reports["lfm2"].read) == set(plain.load_reports["lfm2"].read)  # into the base layers
    with torch.no_grad():  # lora_B starts at zero: the adapted teacher is the pretrained one
        a, b = adapted(*clip), plain(*clip)
    torch.testing.assert_close(a["logits"], b["logits"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(adapted.encode(*clip)["audio"], a["audio_features"])  # (through replace_missing)
    rebuilt = model_from_config(json.loads(json.dumps(adapted.get_config())))  # checkpoint.json round trip
    rebuilt.load_state_dict(adapted.state_dict())  # the same keys, the adapters included
    assert rebuilt.get_config()["lora"]["rank"] == 4 and any(".lora_" in k for k in rebuilt.state_dict())


def test_the_8gb_recipe_parses():
    first = RECIPE.read_text().splitlines()[0]
    assert first == "# emodistill teacher train --config configs/teacher/lfm2_700m_rtx3050_8gb.yaml"
    cfg = load_config(TeacherTrainConfig, "lfm2_700m_rtx3050_8gb")
    o = cfg.model.overrides
    assert cfg.model.name == "teacher_lfm2_700m" and o["freeze_vision"] and o["freeze_audio"] and o["lora"]["rank"]
    assert cfg.encoder_cache.enabled and cfg.train.mixed_precision == "bf16" and o["dtype"] == "bfloat16"
    assert cfg.train.batch_size * cfg.train.grad_accum == 32
    with pytest.raises(ConfigError, match="encoder_cache"):
        load_config(TeacherTrainConfig, RECIPE, ["encoder_cache.enabeld=true"])
    with torch.device("meta"):  # the real-size architecture, no weights read
        model = create_teacher(cfg.model.name, **{**o, "pretrained": False})
    counts = model.count_parameters()
    lora = sum(p.numel() for n, p in model.named_parameters() if ".lora_" in n)
    assert counts["trainable"] == lora + counts["fusion"] + counts["head"]
    assert counts["trainable"] < 0.02 * counts["total"]


@pytest.mark.slow
def test_the_plan_says_the_8gb_recipe_fits():
    from emodistill.app.plan import plan

    p = plan("lfm2_700m_rtx3050_8gb", "rtx3050-desktop-8gb", batch_size=4)
    assert p["fits"] and p["max_batch_per_gpu"] >= 4
