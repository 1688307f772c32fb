"""`emodistill data synth | check | prepare`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

FMT = argparse.ArgumentDefaultsHelpFormatter


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
    print(f"next: emodistill data check {out}")
    return 0


def cmd_check(args) -> int:
    from ..utils import write_json_atomic
    from .check import check_dataset, format_report

    fmt = args.data_format or ("manifest" if Path(args.dir).is_file() else "ravdess")
    report = check_dataset(args.dir, format=fmt, num_frames=args.num_frames, split=args.split,
                           fold=args.fold, vocal_channel=args.vocal_channel, workers=args.workers,
                           progress=not args.no_progress)
    print(format_report(report))
    if args.json:
        write_json_atomic(args.json, report)
        print(f"report written to {args.json}")
    if report["clips_ok"] == 0:
        print("no usable clips")
        return 1
    return 1 if report["files_bad"] and args.strict else 0


def cmd_convert(args) -> int:
    from .layouts import write_layout
    from .names import labelled_clips

    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    scan = labelled_clips(args.dir, args.data_format, None, None)
    clips = [c for c in scan.clips if classes is None or c.emotion in classes]
    if not clips:
        print(f"no clips of the classes {classes} in {args.dir} ({len(scan.clips)} clips of {scan.class_names})")
        return 1
    root = write_layout(clips, Path(args.out), args.to)
    print(f"wrote {len(clips)} clips of {len({c.emotion for c in clips})} classes as format {args.to}: {root}")
    print(f"next: emodistill data check {root} --data-format {args.to}")
    return 0


def cmd_prepare(args) -> int:
    from ..config import load_config
    from .dataset import DataConfig, build_datasets

    cfg = load_config(DataConfig, args.config, args.set)
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
            print(f"  ... {len(rep['bad_names']) - 20} more (emodistill data check {cfg.root} --json FILE lists all)")
    return 0


def register(sub) -> None:
    p = sub.add_parser("data", help="synthetic data, dataset checks, cache preparation", formatter_class=FMT,
                       description="Generate the synthetic RAVDESS-format set, check a dataset folder, or "
                                   "decode a dataset into the preprocessed cache.")
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", title="subcommands")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])

    s = dsub.add_parser("synth", formatter_class=FMT, help="write the synthetic RAVDESS-format benchmark",
                        description="Write a RAVDESS-format tree (Actor_XX/01-01-EE-II-SS-RR-AA.mp4, H.264 + AAC) of "
                                    "talking cartoon faces whose emotion cues are split across audio and video. "
                                    "Results on it are not RAVDESS results (docs/synthetic_data.md).")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--actors", type=int, default=None, help="number of actors (3..24); default 24, or 6 for small")
    s.add_argument("--seed", type=int, default=0, help="generator seed (same seed -> same files)")
    s.add_argument("--size", choices=["small", "default"], default="default",
                   help="default: 60 speech clips per actor as in RAVDESS; small: 16 per actor (tests, seconds)")
    s.add_argument("--workers", type=int, default=2, help="processes (0 = in this process)")
    s.add_argument("--overwrite", action="store_true",
                   help="replace a different synthetic set in --out: only the files synth wrote there (recorded with "
                        "their sha256 in synth.json) are deleted or overwritten, never anything else")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_synth)

    c = dsub.add_parser("check", formatter_class=FMT, help="table of a dataset folder and its bad files",
                        description="Decode every clip once and print clips per class/split/actor, durations, "
                                    "resolutions, sample rates, and the files that are skipped (with reasons) or "
                                    "used with a warning.")
    c.add_argument("dir", help="dataset folder, or the .csv / .jsonl of format manifest")
    c.add_argument("--data-format", "--format", dest="data_format", choices=["ravdess", "cremad", "folder", "manifest"],
                   default=None, help="layout (docs/data.md); default: manifest for a file, ravdess for a folder")
    c.add_argument("--num-frames", type=int, default=16, help="frames per clip T (clips shorter get a warning)")
    c.add_argument("--split", choices=["fixed", "fold"], default="fixed", help="actor split shown in the table")
    c.add_argument("--fold", type=int, default=0, help="fold for --split fold (0..5)")
    c.add_argument("--vocal-channel", choices=["speech", "song", "all"], default="all", help="channel filter")
    c.add_argument("--workers", type=int, default=2, help="decode processes (0 = in this process)")
    c.add_argument("--json", default=None, help="also write the full report to this JSON file")
    c.add_argument("--strict", action="store_true", help="exit 1 when any file is bad")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    c.set_defaults(func=cmd_check)

    v = dsub.add_parser("convert", formatter_class=FMT, help="rewrite a data set as format folder or manifest",
                        description="Write the clips of a data set as a folder tree (one folder per class; hard "
                                    "links, else copies) or as a manifest.csv pointing at the files (with speakers), "
                                    "optionally only some classes: e.g. a 3-class set from the synthetic clips.")
    v.add_argument("dir", help="dataset folder (or manifest file)")
    v.add_argument("--to", choices=["folder", "manifest"], required=True, help="layout to write")
    v.add_argument("--out", required=True, help="output folder (new or empty)")
    v.add_argument("--data-format", choices=["ravdess", "cremad", "folder", "manifest"], default="ravdess",
                   help="layout of DIR")
    v.add_argument("--classes", default=None, help="comma-separated classes to keep (default: all)")
    v.set_defaults(func=cmd_convert)

    r = dsub.add_parser("prepare", formatter_class=FMT, help="decode a dataset into the preprocessed cache",
                        description="Build the cache for a data config (configs/data/*.yaml), or for the data: "
                                    "section of a teacher or distillation recipe, and print the splits.")
    r.add_argument("--config", required=True, help="data recipe YAML (DataConfig), or a recipe with a data: section "
                                                   "(--set then sets that section's keys)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_prepare)


def main(argv: list[str] | None = None) -> int:
    """`python -m emodistill.core.data.cli data ...`: the data commands without the other stages' imports."""
    from ..errors import run_guarded
    from ..utils import setup_logging

    parser = argparse.ArgumentParser(prog="emodistill", formatter_class=FMT)
    register(parser.add_subparsers(dest="command", metavar="COMMAND"))
    args = parser.parse_args(argv)
    setup_logging()
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return run_guarded(args.func, args)


if __name__ == "__main__":
    raise SystemExit(main())
