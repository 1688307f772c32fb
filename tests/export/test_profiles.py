"""Hardware profiles and budgets: shipped figures, user-added files, overrides and errors."""

import pytest
import yaml

from emodistill.core.config import ConfigError
from emodistill.export.profiles import HARDWARE_DIR, list_budgets, list_profiles, load_budget, load_profile

NAMES = ["rtx3050-desktop-8gb", "rtx3050-desktop-6gb", "rtx3050-laptop-4gb", "rtx3050-laptop-6gb"]


def test_shipped_profiles_load_with_sources_and_a_command_line():
    assert set(NAMES) <= set(list_profiles())
    for name in NAMES:
        p = load_profile(name)
        assert p.name == name
        assert len(p.sources) >= 3 and all(s.url.startswith("https://") for s in p.sources)
        first = (HARDWARE_DIR / f"{name}.yaml").read_text().splitlines()[0]
        assert first.startswith("# emodistill export")


@pytest.mark.parametrize("name, sms, bw, fp16, int8", [
    ("rtx3050-desktop-8gb", 20, 224.0, 36.4, 72.8),   # NVIDIA/TechPowerUp figures quoted in the issue
    ("rtx3050-desktop-6gb", 18, 168.0, 27.1, 54.2),
    ("rtx3050-laptop-4gb", 16, 192.0, 28.5, 57.0),
    ("rtx3050-laptop-6gb", 20, 144.0, 30.6, 61.1),
])
def test_derived_peaks_match_published_figures(name, sms, bw, fp16, int8):
    g = load_profile(name).gpu
    assert g.sm_count == sms
    assert g.memory_bandwidth_gbs == pytest.approx(bw)
    assert g.peak_fp16_tensor_flops / 1e12 == pytest.approx(fp16, rel=0.01)
    assert g.peak_int8_tensor_ops / 1e12 == pytest.approx(int8, rel=0.01)
    assert g.peak_fp16_tensor_fp32acc_flops == pytest.approx(g.peak_fp16_tensor_flops / 2)


def test_the_orin_profile_matches_its_published_figures():
    """Jetson AGX Orin 64GB: 16 SMs at 1.3 GHz, 5.3 FP32 TFLOPS and 170 sparse (85 dense) INT8 TOPS in the technical
    brief, 204.8 GB/s LPDDR5; FP16 tensor at half the INT8 rate."""
    g = load_profile("jetson-agx-orin").gpu
    assert g.compute_capability == "8.7" and g.sm_count == 16 and g.cuda_cores == 2048
    assert g.peak_fp32_flops / 1e12 == pytest.approx(5.3, rel=0.01)
    assert 2 * g.peak_int8_tensor_ops / 1e12 == pytest.approx(170, rel=0.01)
    assert g.peak_fp16_tensor_flops == pytest.approx(g.peak_int8_tensor_ops / 2)
    assert g.memory_bandwidth_gbs == pytest.approx(204.8)


def test_budget_files_and_profile_default_budgets():
    assert {"rtx3050-laptop-4gb-realtime", "rtx3050-desktop-8gb-batch16"} <= set(list_budgets())
    b, p = load_budget("rtx3050-laptop-4gb-realtime")
    assert (b.profile, p.name, b.batch_size, b.precision) == ("rtx3050-laptop-4gb", "rtx3050-laptop-4gb", 1, "int8")
    b, p = load_budget("rtx3050-desktop-6gb", ["max_p95_ms=12.5", "batch_size=4"])
    assert p.name == "rtx3050-desktop-6gb" and b.max_p95_ms == 12.5 and b.batch_size == 4
    assert b.max_vram_mb == p.default_budget.max_vram_mb


def test_user_profile_by_path_and_by_folder(tmp_path, monkeypatch):
    data = yaml.safe_load((HARDWARE_DIR / "rtx3050-desktop-8gb.yaml").read_text())
    data["name"] = "my-gpu"
    data["gpu"]["sm_count"] = 40
    path = tmp_path / "my-gpu.yaml"
    path.write_text("# emodistill export ... --budget my-gpu\n" + yaml.safe_dump(data))
    assert load_profile(path).gpu.sm_count == 40
    (tmp_path / "budgets").mkdir()
    (tmp_path / "budgets" / "mine.yaml").write_text("profile: my-gpu\nbatch_size: 2\nmax_p50_ms: 3\n")
    monkeypatch.setenv("EMODISTILL_HARDWARE_DIR", str(tmp_path))
    assert "my-gpu" in list_profiles()
    b, p = load_budget("mine")
    assert p.gpu.sm_count == 40 and b.batch_size == 2 and b.max_p50_ms == 3


def test_bad_names_and_keys_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="rtx3050-laptop-4gb"):  # lists what exists
        load_profile("rtx9999")
    with pytest.raises(ConfigError, match="max_p50"):
        load_budget("rtx3050-desktop-8gb", ["max_p50_mss=3"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("profile: rtx3050-desktop-8gb\nmax_vram_mb: -5\n")
    with pytest.raises(ConfigError, match="max_vram_mb"):
        load_budget(bad)
