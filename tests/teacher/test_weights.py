"""Weight resolution: local folders, the local HF cache, and a clear error (never random weights)."""

import json
import shutil

import huggingface_hub
import pytest
import torch

from emodistill.teacher import MissingWeightsError, create_teacher
from emodistill.teacher.weights import load_selected, resolve_sources


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_missing_real_weights_error_names_each_and_the_fetch_command(empty_cache):
    with pytest.raises(MissingWeightsError) as e:
        create_teacher("teacher_lfm2_700m")
    msg = str(e.value)
    for repo in ("google/siglip2-base-patch16-224", "nvidia/parakeet-ctc-0.6b", "LiquidAI/LFM2-700M"):
        assert repo in msg
        assert f"hf download {repo}" in msg
    assert "random" in msg  # says there is no fallback


def test_missing_local_folder_is_named(tmp_path, empty_cache):
    with pytest.raises(MissingWeightsError, match="does-not-exist"):
        create_teacher("teacher_lfm2_700m", lfm2_source=str(tmp_path / "does-not-exist"))


def _fake_cache_entry(cache, repo_id, src):
    """Lay out `src` as the HF cache does: models--org--name/{refs/main, snapshots/<sha>/...}."""
    entry = cache / f"models--{repo_id.replace('/', '--')}"
    sha = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(src, entry / "snapshots" / sha)
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text(sha)


def test_weights_found_in_local_hf_cache(hf_dirs, empty_cache):
    _fake_cache_entry(empty_cache, "acme/tiny-lfm2", hf_dirs["lfm2"])
    folders = resolve_sources({"lfm2": "acme/tiny-lfm2"})
    assert folders["lfm2"].name == "0123456789abcdef0123456789abcdef01234567"
    with pytest.raises(MissingWeightsError, match="hf download acme/other"):
        resolve_sources({"lfm2": "acme/tiny-lfm2", "vision": "acme/other"})


def test_incomplete_sharded_folder_lists_missing_shards(hf_dirs, tmp_path):
    broken = tmp_path / "lfm2"
    shutil.copytree(hf_dirs["lfm2"], broken)
    shard = sorted(set(json.loads((broken / "model.safetensors.index.json").read_text())["weight_map"].values()))[-1]
    (broken / shard).unlink()
    with pytest.raises(MissingWeightsError, match=shard):
        resolve_sources({"lfm2": str(broken)})


def test_load_selected_reports_absent_and_misshaped_tensors(hf_dirs):
    with pytest.raises(MissingWeightsError, match="not in the checkpoint"):
        load_selected(torch.nn.Linear(3, 3), hf_dirs["lfm2"], ("model.",))

    class Wrong(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding_norm = torch.nn.Module()
            self.embedding_norm.weight = torch.nn.Parameter(torch.zeros(7))

    with pytest.raises(MissingWeightsError, match="shape"):
        load_selected(Wrong(), hf_dirs["lfm2"], ("model.",))
