"""`emodistill teacher info NAME` (parameters per part, offline) and `emodistill teacher train --config ...`."""

from __future__ import annotations

import argparse
import json

from emodistill.core.config import parse_override

FMT = argparse.ArgumentDefaultsHelpFormatter


def _info(args: argparse.Namespace) -> int:
    import torch

    from emodistill.teacher.model import TEACHER_CONFIGS, TeacherModel

    if args.name not in TEACHER_CONFIGS:
        raise ValueError(f"unknown teacher {args.name!r}; available: {', '.join(sorted(TEACHER_CONFIGS))}")
    overrides: dict = {}
    for item in args.overrides:  # a.b=c -> {"a": {"b": c}}; dict fields are merged into the preset's
        path, value = parse_override(item)
        node = overrides
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    cfg = TEACHER_CONFIGS[args.name](**overrides)
    with torch.device("meta"):  # shapes only: nothing allocated, nothing downloaded
        model = TeacherModel(cfg)
    counts = model.count_parameters()
    if args.json:
        print(json.dumps({"name": args.name, "parameters": counts, "feature_dims": model.feature_dims(),
                          "config": model.get_config()}, indent=2))
        return 0
    lfm = model.backbone.config
    labels = {
        "vision": f"vision   {cfg.vision.get('model_type')} ({model.vision.image_size}px, patch {model.vision.patch})",
        "audio": f"audio    ParakeetEncoder ({model.audio.model.config.num_hidden_layers} layers) + log-mel",
        "backbone": f"lfm2     first {cfg.num_layers} layers ({lfm.layer_types.count('conv')} conv, "
                    f"{lfm.layer_types.count('full_attention')} attention)",
        "fusion": "fusion   projections, modality/missing embeddings, output projection",
        "head": "head     LayerNorm + MLP",
    }
    print(f"{args.name}: {counts['total'] / 1e6:.2f}M parameters ({counts['trainable'] / 1e6:.2f}M trainable)")
    for part, label in labels.items():
        print(f"  {label:<78s} {counts[part] / 1e6:10.3f}M  ({counts[part]:,})")
    for part in ("vision", "audio", "lfm2"):
        src = getattr(cfg, f"{part}_source")
        print(f"  weights {part:<7s}: {src or 'random init (no pretrained source)'}")
    print(f"  segments S={cfg.num_segments}, LFM2 width {lfm.hidden_size}, feature dims {model.feature_dims()}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from emodistill.teacher.train import run

    return run(args)


def register(sub) -> None:
    p = sub.add_parser("teacher", help="teacher model: info, fine-tuning", formatter_class=FMT)
    tsub = p.add_subparsers(dest="teacher_command", metavar="SUBCOMMAND")
    info = tsub.add_parser("info", help="parameters per part of a teacher preset (no download, meta device)",
                           formatter_class=FMT)
    info.add_argument("name", help="teacher preset, e.g. teacher_lfm2_700m or teacher_tiny")
    info.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a TeacherConfig field, e.g. --set num_layers=8")
    info.add_argument("--json", action="store_true", help="print counts, feature dims and the config as JSON")
    info.set_defaults(func=_info)
    train = tsub.add_parser("train", help="fine-tune a teacher (same as accelerate launch teacher/train.py)",
                            formatter_class=FMT)
    from emodistill.teacher.train import build_parser

    build_parser(train)
    train.set_defaults(func=_train)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


__all__ = ["register"]
