"""Time per training epoch of a mid-size teacher on this CPU: frozen encoders run live vs read from the encoder cache.

    OMP_NUM_THREADS=1 python scripts/encoder_cache_bench.py                   # 3 epochs each, medians
    OMP_NUM_THREADS=1 python scripts/encoder_cache_bench.py --repeats 5 --json-out bench.json

The recipe is configs/teacher/lfm2_700m_rtx3050_8gb.yaml (frozen encoders, LoRA on the LFM2 layers) with a
mid-size teacher of the real classes and widths and random weights (nothing is downloaded): SigLIP2-B/16 with 4 of
its 12 layers at 112 px, the Parakeet-CTC-0.6B encoder with 4 of its 24 layers, 2 LFM2-700M layers; fp32 on the
CPU. The data is the small synthetic set (generated into a temporary folder). Both runs are the training loop of
teacher/train.py (`_prepare`, then `_train_one_epoch` timed per epoch: loading, augmenting, forward, backward,
optimiser); the cached run's one-off pre-pass (the encoders once per (clip, view)) is reported on its own.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

MID = ["model.overrides.vision_source=null", "model.overrides.audio_source=null", "model.overrides.lfm2_source=null",
       "model.overrides.vision={num_hidden_layers: 4, image_size: 112}", "model.overrides.audio={num_hidden_layers: 4}",
       "model.overrides.num_layers=2", "model.overrides.dtype=float32", "train.mixed_precision='no'",
       "data.format=ravdess", "data.preprocess.face_crop=center", "data.workers=0", "train.num_workers=0",
       "train.batch_size=8", "train.grad_accum=4"]


def epochs(cfg, repeats: int) -> dict:
    """Seconds of each training epoch (and the pre-pass of a cached run) of `cfg`, in a fresh run."""
    from emodistill.teacher import train as tt

    t0 = time.perf_counter()
    accelerator = tt._start(cfg, resume=False, force=False)
    run = tt._prepare(cfg, accelerator)
    prepare = time.perf_counter() - t0
    book, step, times = tt.new_book(), 0, []
    for epoch in range(repeats):
        t = time.perf_counter()
        step, *_ = tt._train_one_epoch(cfg, run, book, epoch, step, 0, {})
        times.append(time.perf_counter() - t)
    accelerator.end_training()
    return {"epoch_seconds": times, "median": statistics.median(times), "prepare_seconds": prepare,
            "clips_per_epoch": len(run.loader) * cfg.train.batch_size, "parameters": run.counts,
            "encoder_cache": run.encoder_cache}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="epochs timed per mode (the median is reported)")
    ap.add_argument("--data", default=None, help="a data folder (default: the small synthetic set, generated)")
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args(argv)

    import torch

    from emodistill.core.config import load_config
    from emodistill.core.data.synth import generate
    from emodistill.teacher.train import TeacherTrainConfig

    with tempfile.TemporaryDirectory(prefix="encoder_cache_bench-") as tmp:
        data = args.data or str(Path(tmp) / "synth")
        if args.data is None:
            generate(data, size="small", seed=0, workers=0, progress=False)
        base = [*MID, f"data.root={data}", f"data.cache_dir={Path(tmp) / 'data_cache'}",
                f"train.epochs={args.repeats}"]
        results = {}
        for mode, extra in (("live", ["encoder_cache.enabled=false"]),
                            ("cached", ["encoder_cache.enabled=true", f"encoder_cache.dir={Path(tmp) / 'enc'}"])):
            cfg = load_config(TeacherTrainConfig, "lfm2_700m_rtx3050_8gb",
                              [*base, *extra, f"output_dir={Path(tmp) / mode}"])
            results[mode] = epochs(cfg, args.repeats)
            r = results[mode]
            print(f"{mode:>6}: epoch {r['median']:.2f} s median of {args.repeats} "
                  f"({', '.join(f'{s:.2f}' for s in r['epoch_seconds'])}), {r['clips_per_epoch']} clips"
                  + (f"; pre-pass {r['encoder_cache']['fill_seconds']:.1f} s for {r['encoder_cache']['pairs']} "
                     f"(clip, view) pairs" if r["encoder_cache"] else ""), flush=True)
    live, cached = results["live"]["median"], results["cached"]["median"]
    c = results["live"]["parameters"]
    print(f"mid-size teacher: {c['total'] / 1e6:.1f}M parameters ({c['trainable'] / 1e6:.2f}M trainable), "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print(f"live {live:.2f} s / cached {cached:.2f} s per epoch: cached is {live / cached:.1f}x faster")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({**results, "ratio": live / cached}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
