"""Validate `emodistill plan` against measured steps on this CPU: predicted vs measured peak memory of one step.

    OMP_NUM_THREADS=1 python scripts/plan_bench.py                       # tiny, tiny-bf16, mid
    OMP_NUM_THREADS=1 python scripts/plan_bench.py --only real           # the real-size teacher (~10 GB RAM)
    OMP_NUM_THREADS=1 python scripts/plan_bench.py --json-out bench.json

For each configuration the same recipe is built twice: under FakeTensorMode, traced (the plan's figure for the
step on this CPU: CPU autocast rules, no CUDA context, no allocator margin), and for real with random weights,
run once and measured with the torch profiler's memory view (every allocation and free of the step, summed in
order, on top of what is held before it: parameters, buffers, optimizer state, the batch). Not RSS. Nothing is
downloaded: the real-size teacher is the published configs with random weights (`pretrained=False`).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time

CONFIGS = {
    # name: (recipe, overrides, per-GPU batch)
    "tiny": ("tiny_synth", [], 16),
    "tiny-bf16": ("tiny_synth", ["train.mixed_precision=bf16"], 16),  # CPU autocast
    # a 230M-parameter teacher of the real classes (4 SigLIP2 layers, 4 Parakeet layers, 2 LFM2 layers), full
    # fine-tune, no checkpointing: the activations, not the optimizer step, make its peak
    "mid": ("lfm2_700m_ravdess", ["model.overrides.vision={num_hidden_layers: 4}",
                                  "model.overrides.audio={num_hidden_layers: 4}", "model.overrides.num_layers=2",
                                  "model.overrides.gradient_checkpointing=false"], 2),
    "real": ("lfm2_700m_ravdess", ["model.overrides.freeze_vision=true", "model.overrides.freeze_audio=true"], 1),
}
DEFAULT = ["tiny", "tiny-bf16", "mid"]
TARGET = 0.15


def bench(name: str) -> dict:
    from emodistill.app.plan import Planner

    recipe, overrides, batch = CONFIGS[name]
    t0 = time.perf_counter()
    fake = Planner(recipe, overrides)
    precision = fake.resolve_precision(None)
    est = fake.per_gpu(batch, None)
    predicted = est["step_bytes"]
    parameters = fake.parameters()
    t1 = time.perf_counter()
    del fake
    gc.collect()
    real = Planner(recipe, overrides, fake=False)
    measured = real.measure(batch, precision)
    t2 = time.perf_counter()
    del real
    gc.collect()
    return {"config": name, "recipe": recipe, "overrides": overrides, "batch": batch, "precision": precision,
            "trainable": parameters["trainable"], "frozen": parameters["frozen"], "predicted_bytes": predicted,
            "measured_bytes": measured, "error": predicted / measured - 1, "peak_phase": est["peak_phase"],
            "activations_bytes": est["parts"]["activations"], "plan_seconds": round(t1 - t0, 1),
            "measure_seconds": round(t2 - t1, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", choices=list(CONFIGS), default=None,
                   help="configurations to run (default: tiny tiny-bf16 mid; real only when named)")
    p.add_argument("--json-out", metavar="FILE", help="also write the rows as JSON")
    args = p.parse_args(argv)
    rows = [bench(n) for n in (args.only or DEFAULT)]
    print("| config | recipe, overrides | batch | precision | params (trainable / frozen) | plan: peak at, "
          "activations MB | predicted MB | measured MB | error % |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        over = "; ".join(r["overrides"]) or "-"
        print(f"| {r['config']} | {r['recipe']}, {over} | {r['batch']} | {r['precision']} | "
              f"{r['trainable'] / 1e6:.1f}M / {r['frozen'] / 1e6:.1f}M | {r['peak_phase']}, "
              f"{r['activations_bytes'] / 2**20:,.1f} | {r['predicted_bytes'] / 2**20:,.1f} | "
              f"{r['measured_bytes'] / 2**20:,.1f} | {100 * r['error']:+.1f} |")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(rows, f, indent=1)
    worst = max(abs(r["error"]) for r in rows)
    seconds = ", ".join(f"{r['config']} plan {r['plan_seconds']} / measure {r['measure_seconds']}" for r in rows)
    print(f"worst error {100 * worst:.1f} % (target {100 * TARGET:.0f} %); MB = 2^20 bytes; seconds: {seconds}")
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
