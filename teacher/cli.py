"""`emodistill teacher info --model NAME` (parameters per part, offline) and `emodistill teacher train --config ...`."""

from __future__ import annotations

import argparse
import json

from emodistill.core.cli_args import add_json, add_model, add_retired_positional, add_set, positional_or
from emodistill.core.config import parse_override


def _info(args: argparse.Namespace) -> int:
    import torch

    from emodistill.teacher.model import TEACHER_CONFIGS, TeacherModel

    args.name = positional_or(args, args.model, old="NAME", new="--model")
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
    from emodistill.core.cli_args import add_command_group

    _, tsub = add_command_group(sub, "teacher", help="teacher model: info, fine-tuning",
                                description="Size up and fine-tune the teacher: parameters per part of a preset "
                                            "(offline), and fine-tuning from a recipe.")
    info = tsub.add_parser("info", help="parameters per part of a teacher preset (no download, meta device)",
                           description="Show a teacher preset's parameters per part (vision, audio, LFM2, fusion, "
                                       "head) without downloading or allocating anything.")
    add_model(info, help="teacher preset, e.g. teacher_lfm2_700m or teacher_tiny")
    add_retired_positional(info)
    add_set(info, help="override a TeacherConfig field, e.g. --set num_layers=8 (repeatable)")
    add_json(info, help="print counts, feature dims and the config as JSON")
    info.set_defaults(func=_info)
    train = tsub.add_parser("train", help="fine-tune a teacher (same as accelerate launch teacher/train.py)",
                            description="Fine-tune a teacher from a recipe (configs/teacher/*.yaml) on one CPU or GPU; "
                                        "several processes through accelerate launch teacher/train.py or torchrun.")
    from emodistill.teacher.train import build_parser

    build_parser(train)
    train.set_defaults(func=_train)


__all__ = ["register"]
