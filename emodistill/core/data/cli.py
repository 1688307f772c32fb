"""`emodistill data synth | check | convert | prepare | bench | probe`."""

from __future__ import annotations

import time
from pathlib import Path

from ..cli_args import (DATA_FORMATS, HelpFormatter, add_data, add_json, add_out, add_protocol, add_retired_positional,
                        add_set, positional_or, retire)

FMT = HelpFormatter


def data_root(args) -> str:
    """--data, or the old positional DIR (with its warning)."""
    return positional_or(args, args.data, old="DIR", new="--data")


def cmd_synth(args) -> int:
    from ..lock import folder_lock
    from .synth import generate

    out = Path(args.out)
    t0 = time.perf_counter()
    with folder_lock(out, what="data"):  # synth writes the whole folder (and its manifest): one writer at a time
        m = generate(out, actors=args.actors, seed=args.seed, size=args.size, workers=args.workers,
                     progress=not args.no_progress, overwrite=args.overwrite)
    dt = time.perf_counter() - t0
    print(f"wrote {m['clips']} clips ({m['actors']} actors, {m['frame_size']}x{m['frame_size']} @ {m['fps']} fps, "
          f"{m['seconds']} s, H.264 + AAC) to {out} in {dt:.1f} s")
    print("per class: " + ", ".join(f"{k} {v}" for k, v in m["per_class"].items()))
    print(f"next: emodistill data check --data {out}")
    return 0


def cmd_check(args) -> int:
    from ..utils import write_json_atomic
    from .check import check_dataset, format_report

    root = data_root(args)
    fmt = args.data_format or ("manifest" if Path(root).is_file() else "ravdess")
    report = check_dataset(root, format=fmt, num_frames=args.num_frames, split=args.protocol,
                           fold=args.fold, vocal_channel=args.vocal_channel, workers=args.workers,
                           progress=not args.no_progress and not args.json)
    if args.json:
        import json

        print(json.dumps(report, indent=2, default=str))
    else:
        print(format_report(report))
    if args.json_out:
        write_json_atomic(args.json_out, report)
        if not args.json:
            print(f"report written to {args.json_out}")
    if report["clips_ok"] == 0:
        if not args.json:
            print("no usable clips")
        return 1
    return 1 if report["files_bad"] and args.strict else 0


def cmd_convert(args) -> int:
    from .layouts import write_layout
    from .names import labelled_clips

    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    root = data_root(args)
    scan = labelled_clips(root, args.data_format, None, None)
    clips = [c for c in scan.clips if classes is None or c.emotion in classes]
    if not clips:
        print(f"no clips of the classes {classes} in {root} ({len(scan.clips)} clips of {scan.class_names})")
        return 1
    root = write_layout(clips, Path(args.out), args.to)
    print(f"wrote {len(clips)} clips of {len({c.emotion for c in clips})} classes as format {args.to}: {root}")
    print(f"next: emodistill data check --data {root} --data-format {args.to}")
    return 0


def cmd_prepare(args) -> int:
    from ..config import load_config
    from .dataset import DataConfig, build_datasets

    cfg = load_config(DataConfig, args.config, args.overrides)
    ds = build_datasets(cfg, progress=not args.no_progress)
    rep = ds["train"].report
    for name, d in ds.items():
        print(f"{name:<6} {len(d):>5} clips  actors {rep['split_actors'][name]}")
    print(f"cache {rep['cache_dir']}: {rep['hits']} cached, {rep['decoded']} decoded now, "
          f"{len(rep['skipped'])} skipped, {len(rep['warnings'])} warnings")
    for path, reason in rep["skipped"][:20]:
        print(f"  skipped {path}: {reason}")
    if rep["bad_names"]:
        print(f"{len(rep['bad_names'])} files with names that are not {cfg.format} names (not used):")
        for path, reason in rep["bad_names"][:20]:
            print(f"  {path}: {reason}")
        if len(rep["bad_names"]) > 20:
            print(f"  ... {len(rep['bad_names']) - 20} more (emodistill data check --data {cfg.root} --json lists all)")
    return 0


def _add_check(dsub) -> None:
    c = dsub.add_parser("check", help="table of a dataset folder and its bad files",
                        description="Check a data set before training on it: decode every clip once and print clips "
                                    "per class/split/actor, durations, resolutions, sample rates, and the files that "
                                    "are skipped (with reasons) or used with a warning.")
    add_data(c, help="dataset folder, or the .csv / .jsonl of format manifest",
             format_help="layout (docs/data.md); default: manifest for a file, ravdess for a folder")
    add_retired_positional(c)
    retire(c, "--format", "data_format", "--data-format", choices=DATA_FORMATS)
    c.add_argument("--num-frames", type=int, default=16, help="frames per clip T (clips shorter get a warning)")
    add_protocol(c)
    retire(c, "--split", "protocol", "--protocol", choices=["fixed", "fold"])
    c.add_argument("--vocal-channel", choices=["speech", "song", "all"], default="all", help="channel filter")
    c.add_argument("--workers", type=int, default=2, help="decode processes (0 = in this process)")
    add_json(c, help="print the full report as JSON instead of the table", json_out=True, retired_file=True)
    c.add_argument("--strict", action="store_true", help="exit 1 when any file is bad")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    c.set_defaults(func=cmd_check)


def _add_tools(dsub) -> None:
    """`data bench` (decode vs cache throughput) and `data probe` (which modality carries the label)."""
    b = dsub.add_parser("bench", help="decode vs preprocessed-cache throughput (clips/s)",
                        description="Time how fast clips load: decoded from the files vs read from the "
                                    "preprocessed cache (target: the cache >= 20x faster).")
    add_data(b, help="dataset folder (layout: --config's, else ravdess)", format_help=None)
    add_retired_positional(b)
    b.add_argument("--config", default=None, help="data config YAML whose preprocess/format to use "
                                                  "(none: demo preprocessing 8x64x64, 2 s, center crop)")
    b.add_argument("--limit", type=int, default=64, help="clips to time")
    b.add_argument("--hd", type=int, default=0, help="also time N generated 1280x720 clips (RAVDESS-like) with "
                                                     "the RAVDESS preprocessing (16 frames, 112, haar, 3 s)")
    b.set_defaults(func=lambda a: _tool("bench", a))
    pr = dsub.add_parser("probe", help="audio-only vs video-only vs fused probe: does fusion pay off on this set?",
                         description="Train the same small probe on audio only, video only and both, and print the "
                                     "fusion gain over the best single modality.")
    add_data(pr, help="RAVDESS-format dataset folder (e.g. the output of `emodistill data synth`)", format_help=None)
    add_retired_positional(pr)
    pr.add_argument("--epochs", type=int, default=12, help="training epochs per run")
    pr.add_argument("--seed", type=int, default=0, help="seed of the three runs")
    add_protocol(pr)
    retire(pr, "--split", "protocol", "--protocol", choices=["fixed", "fold"])
    pr.add_argument("--modes", default="audio,video,fused", help="comma list of audio,video,fused")
    pr.add_argument("--workers", type=int, default=2, help="decode processes for the cache build")
    pr.add_argument("--device", default=None, help="torch device (none: cuda when visible, else cpu)")
    add_json(pr, json_out=True, retired_file=True, help="print the results as JSON")
    pr.set_defaults(func=lambda a: _tool("modality_probe", a))


def _tool(name: str, args) -> int:
    import importlib

    return importlib.import_module(f"{__package__}.{name}").run(args)  # torch imported only when it runs


def register(sub) -> None:
    from ..cli_args import add_command_group

    _, dsub = add_command_group(sub, "data", help="synthetic data, dataset checks, cache preparation",
                                description="Make, check, convert and cache data sets: the synthetic RAVDESS-format "
                                            "set, a check of your own folder, and the preprocessed cache training "
                                            "reads.")

    s = dsub.add_parser("synth", help="write the synthetic RAVDESS-format benchmark",
                        description="Write a synthetic emotion data set to try the toolkit on: a RAVDESS-format tree "
                                    "(Actor_XX/01-01-EE-II-SS-RR-AA.mp4, H.264 + AAC) of talking cartoon faces whose "
                                    "emotion cues are split across audio and video. Results on it are not RAVDESS "
                                    "results (docs/synthetic_data.md).")
    add_out(s, required=True)
    s.add_argument("--actors", type=int, default=None, help="number of actors (3..24); none: 24, or 6 for small")
    s.add_argument("--seed", type=int, default=0, help="generator seed (same seed -> same files)")
    s.add_argument("--size", choices=["small", "default"], default="default",
                   help="default: 60 speech clips per actor as in RAVDESS; small: 16 per actor (tests, seconds)")
    s.add_argument("--workers", type=int, default=2, help="processes (0 = in this process)")
    s.add_argument("--overwrite", action="store_true",
                   help="replace a different synthetic set in --out: only the files synth wrote there (recorded with "
                        "their sha256 in synth.json) are deleted or overwritten, never anything else")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_synth)

    _add_check(dsub)

    v = dsub.add_parser("convert", help="rewrite a data set as format folder or manifest",
                        description="Rewrite a data set in another layout: a folder tree (one folder per class; hard "
                                    "links, else copies) or a manifest.csv pointing at the files (with speakers), "
                                    "optionally only some classes, e.g. a 3-class set from the synthetic clips.")
    add_data(v, help="dataset folder (or manifest file)", format_default="ravdess", format_help="layout of --data")
    add_retired_positional(v)
    v.add_argument("--to", choices=["folder", "manifest"], required=True, help="layout to write")
    add_out(v, required=True, help="output folder (new or empty)")
    v.add_argument("--classes", default=None, help="comma-separated classes to keep (none: all)")
    v.set_defaults(func=cmd_convert)

    r = dsub.add_parser("prepare", help="decode a dataset into the preprocessed cache",
                        description="Decode a data set once into the preprocessed cache training reads: for a data "
                                    "config (configs/data/*.yaml) or the data: section of a teacher or distillation "
                                    "recipe; prints the splits.")
    r.add_argument("--config", required=True, help="data recipe YAML (DataConfig), or a recipe with a data: section "
                                                   "(--set then sets that section's keys)")
    add_set(r, help="override a config key (repeatable)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_prepare)
    _add_tools(dsub)


def main(argv: list[str] | None = None) -> int:
    """`python -m emodistill.core.data.cli [data] ...`: `emodistill data ...` without the other stages' imports."""
    import sys

    from ..cli_args import run_alias

    argv = sys.argv[1:] if argv is None else list(argv)
    return run_alias(register, argv[1:] if argv[:1] == ["data"] else argv)


if __name__ == "__main__":
    raise SystemExit(main())
