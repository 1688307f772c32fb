"""Fine-tune a teacher on the data layer's splits (flat accelerate loop).

    accelerate launch teacher/train.py --config configs/teacher/tiny_synth.yaml [--set key=value ...]
    emodistill teacher train --config configs/teacher/tiny_synth.yaml

AdamW with per-part learning rates, warm-up + cosine, gradient accumulation, mixed precision where the
hardware has it, evaluation on val every epoch, best checkpoint chosen on val only, early stopping,
test metrics of the best checkpoint at the end, TensorBoard logs and `metrics.json` in `output_dir`.
"""

from __future__ import annotations

import argparse
import logging
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Literal

if __package__ in (None, ""):  # `accelerate launch teacher/train.py` runs this file as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn.functional as F
from pydantic import Field
from safetensors.torch import load_file
from tqdm.auto import tqdm

from emodistill.core.checkpoint import WEIGHTS, CheckpointError, check_meta, read_meta, save_checkpoint
from emodistill.core.config import BaseConfig, ConfigError, load_config
from emodistill.core.data import DataConfig, build_datasets
from emodistill.core.evaluate import evaluate, modality_dropout_mask, modality_mask, unimodal_ce
from emodistill.core.optim import warmup_cosine
from emodistill.core.utils import (check_run_folder, finish_distributed, move_aside, seed_everything, setup_logging,
                              write_json_atomic)

logger = logging.getLogger(__name__)


class ModelSection(BaseConfig):
    name: str = Field("teacher_tiny", description="registered teacher preset (emodistill teacher info NAME)")
    overrides: dict[str, Any] = Field(default_factory=dict, description="TeacherConfig fields to override, e.g. "
                                      "num_layers, lfm2_source (local folder), freeze_vision, dtype")


class OptimSection(BaseConfig):
    lr: float = Field(1e-3, gt=0, description="peak learning rate of the fusion layers and head")
    encoder_lr_scale: float = Field(1.0, ge=0, description="vision/audio encoder lr = lr * this")
    backbone_lr_scale: float = Field(1.0, ge=0, description="LFM2 layers lr = lr * this")
    weight_decay: float = Field(0.05, ge=0, description="AdamW weight decay (not on 1-D parameters)")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas")
    warmup_epochs: float = Field(1.0, ge=0, description="linear warm-up length in epochs")
    min_lr_ratio: float = Field(0.01, ge=0, le=1, description="cosine floor as a fraction of the peak lr")
    grad_accum: int = Field(1, ge=1, description="gradient accumulation steps")
    max_grad_norm: float = Field(1.0, ge=0, description="gradient clipping norm (0 = off)")


class TeacherTrainConfig(BaseConfig):
    data: DataConfig
    model: ModelSection = Field(default_factory=ModelSection)
    optim: OptimSection = Field(default_factory=OptimSection)
    epochs: int = Field(20, ge=1, description="maximum epochs")
    batch_size: int = Field(16, ge=1, description="per-process training batch size")
    eval_batch_size: int = Field(32, ge=1, description="per-process evaluation batch size")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")
    label_smoothing: float = Field(0.1, ge=0, lt=1, description="cross-entropy label smoothing")
    modality_dropout: float = Field(0.0, ge=0, lt=0.5, description="per-sample probability of dropping audio "
                                    "(and, independently, video; never both) during training")
    unimodal_weight: float = Field(0.0, ge=0, description="weight of the unimodal heads' cross-entropy (needs "
                                   "model.overrides.unimodal_heads=true); a dropped modality's term is masked")
    modality: Literal["both", "audio", "video"] = Field(
        "both", description="audio/video: a unimodal baseline of the same model (the other modality is always "
        "replaced by its missing embedding, in training and evaluation)")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on a GPU that supports it, fp16 on other GPUs, none on CPU")
    metric: Literal["accuracy", "uar", "macro_f1"] = Field("accuracy", description="val metric choosing the best epoch")
    patience: int = Field(5, ge=1, description="early stopping: epochs without val improvement")
    output_dir: str = Field("runs/teacher", description="checkpoint, metrics.json and TensorBoard logs go here")
    seed: int = Field(0, description="seed of init, data order and dropout")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None = torch default)")


def _mixed_precision(choice: str) -> str:
    if choice != "auto":
        return choice
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def _hparams(cfg: TeacherTrainConfig) -> dict:
    """Flat scalar view of the config for TensorBoard's hparams."""
    out: dict = {}

    def walk(prefix: str, d: Any) -> None:
        if isinstance(d, dict):
            for k, v in d.items():
                walk(f"{prefix}{k}.", v)
        else:
            out[prefix[:-1]] = d if isinstance(d, (int, float, str, bool)) else str(d)

    walk("", cfg.model_dump(mode="json"))
    return out


def _modality_mask(batch_size: int, p: float, device, modality: str = "both") -> torch.Tensor | None:
    """[B,2] per-sample mask with audio and video dropped independently with prob. p, never both
    (or the fixed mask of a unimodal baseline)."""
    if modality != "both":
        return modality_mask(batch_size, "video" if modality == "audio" else "audio", device)
    return modality_dropout_mask(batch_size, p, device)


def load_best(model: torch.nn.Module, folder: Path, preprocess, class_names) -> dict:
    """Load a checkpoint written by this run into `model`, after checking its contract."""
    meta = read_meta(folder)
    diffs = check_meta(meta, preprocess=preprocess, class_names=class_names, family="teacher")
    if diffs:
        raise CheckpointError(f"{folder} does not match this run:\n  " + "\n  ".join(diffs))
    model.load_state_dict(load_file(str(folder / WEIGHTS)))
    return meta


def train(cfg: TeacherTrainConfig, command: str = "", force: bool = False) -> dict:
    """Run the fine-tune; returns the metrics written to `<output_dir>/metrics.json`."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from teacher import TEACHERS, create_teacher

    if cfg.model.name not in TEACHERS:  # before the data is decoded
        raise ConfigError(f"model.name: unknown teacher {cfg.model.name!r}; available: {', '.join(TEACHERS.names())}")
    previous = check_run_folder(cfg.output_dir, force=force, can_resume=False)

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.output_dir)
    accelerator = Accelerator(mixed_precision=_mixed_precision(cfg.mixed_precision),
                              gradient_accumulation_steps=cfg.optim.grad_accum, log_with="tensorboard",
                              project_dir=str(out), cpu=not torch.cuda.is_available())
    main = accelerator.is_main_process
    if previous and main:  # only with --force (check_run_folder refused otherwise)
        move_aside(out, previous)
    accelerator.wait_for_everyone()
    set_seed(cfg.seed)
    seed_everything(cfg.seed)
    with accelerator.main_process_first():
        splits = build_datasets(cfg.data)
    train_ds, val_ds, test_ds = splits["train"], splits["val"], splits["test"]
    names, num_classes = train_ds.class_names, train_ds.num_classes
    logger.info("train/val/test clips: %d/%d/%d, %d classes", len(train_ds), len(val_ds), len(test_ds), num_classes)

    model = create_teacher(cfg.model.name, **{**cfg.model.overrides, "num_classes": num_classes})
    counts = model.count_parameters()
    logger.info("%s: %.2fM parameters (%.2fM trainable)", cfg.model.name, counts["total"] / 1e6,
                counts["trainable"] / 1e6)
    scale = {"vision": cfg.optim.encoder_lr_scale, "audio": cfg.optim.encoder_lr_scale,
             "backbone": cfg.optim.backbone_lr_scale}
    groups = model.param_groups(cfg.optim.lr, cfg.optim.weight_decay, scale)
    optimizer = torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=cfg.optim.betas)

    g = torch.Generator().manual_seed(cfg.seed)
    loader = torch.utils.data.DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                                         num_workers=cfg.num_workers, generator=g)
    val_loader = torch.utils.data.DataLoader(val_ds, batch_size=cfg.eval_batch_size, num_workers=cfg.num_workers)
    test_loader = torch.utils.data.DataLoader(test_ds, batch_size=cfg.eval_batch_size, num_workers=cfg.num_workers)
    # Single-process step counts: accelerate steps the scheduler once per process per optimizer step.
    steps_per_epoch = math.ceil(len(loader) / cfg.optim.grad_accum)
    scheduler = warmup_cosine(optimizer, int(cfg.optim.warmup_epochs * steps_per_epoch),
                              steps_per_epoch * cfg.epochs, cfg.optim.min_lr_ratio)
    model, optimizer, loader, val_loader, test_loader, scheduler = accelerator.prepare(
        model, optimizer, loader, val_loader, test_loader, scheduler)
    accelerator.init_trackers("teacher", config=_hparams(cfg))

    best_dir = out / "best"
    best, best_epoch, history, step, stale = -1.0, -1, [], 0, 0
    missing = {"both": None, "audio": "video", "video": "audio"}[cfg.modality]
    start = time.perf_counter()
    for epoch in range(cfg.epochs):
        train_ds.set_epoch(epoch)
        model.train()
        total, seen = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not accelerator.is_local_main_process,
                   leave=False)
        for batch in bar:
            with accelerator.accumulate(model):
                video, audio, label = batch["video"], batch["audio"], batch["label"]
                mask = _modality_mask(video.shape[0], cfg.modality_dropout, video.device, cfg.modality)
                res = model(video, audio, modality_mask=mask)
                loss = F.cross_entropy(res["logits"].float(), label, label_smoothing=cfg.label_smoothing)
                if "audio_logits" in res:  # also at weight 0: the heads stay in the graph (DDP sees them used)
                    loss = loss + cfg.unimodal_weight * unimodal_ce(res, label, mask, cfg.label_smoothing)
                if "aux_loss" in res:
                    loss = loss + res["aux_loss"]
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.optim.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.optim.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                step += 1
            total += loss.item() * label.shape[0]
            seen += label.shape[0]
            bar.set_postfix(loss=f"{total / seen:.3f}")
            if step % 10 == 0 and accelerator.sync_gradients:
                accelerator.log({"train/loss": loss.item(), "train/lr": scheduler.get_last_lr()[0]}, step=step)
        val = evaluate(model, val_loader, num_classes, accelerator, missing=missing, progress=True)
        train_loss = accelerator.reduce(torch.tensor(total / max(seen, 1), device=accelerator.device), "mean").item()
        row = {"epoch": epoch + 1, "train_loss": train_loss, "seconds": time.perf_counter() - start,
               **{f"val_{k}": val[k] for k in ("accuracy", "uar", "war", "macro_f1")}}
        history.append(row)
        accelerator.log({"train/epoch_loss": train_loss, **{f"val/{k}": val[k] for k in
                                                            ("accuracy", "uar", "macro_f1")}}, step=step)
        improved = val[cfg.metric] > best
        if improved:
            best, best_epoch, stale = val[cfg.metric], epoch + 1, 0
            if main:
                save_checkpoint(best_dir, accelerator.unwrap_model(model), preprocess=cfg.data.preprocess,
                                class_names=names, extra={"metrics": {"epoch": epoch + 1, "val": val},
                                                          "train_clips": len(train_ds),
                                                          "train_config": cfg.model_dump(mode="json")})
        else:
            stale += 1
        accelerator.wait_for_everyone()
        if main:
            logger.info("epoch %d: loss %.4f  val acc %.4f uar %.4f f1 %.4f%s", epoch + 1, train_loss,
                        val["accuracy"], val["uar"], val["macro_f1"], "  (best)" if improved else "")
        if stale >= cfg.patience:
            logger.info("early stopping: no val %s improvement for %d epochs", cfg.metric, stale)
            break
    train_seconds = time.perf_counter() - start

    load_best(accelerator.unwrap_model(model), best_dir, cfg.data.preprocess, names)
    val = evaluate(model, val_loader, num_classes, accelerator, missing=missing)
    test = evaluate(model, test_loader, num_classes, accelerator, missing=missing)
    metrics = {"model": cfg.model.name, "modality": cfg.modality, "best_epoch": best_epoch, "selected_on": f"val_{cfg.metric}",
               "val": val, "test": test, "history": history, "train_seconds": train_seconds,
               "parameters": counts, "checkpoint": str(best_dir), "command": command}
    if main:
        write_json_atomic(out / "metrics.json", metrics)
        logger.info("best epoch %d: val acc %.4f, test acc %.4f (UAR %.4f, macro-F1 %.4f); %.0f s; %s",
                    best_epoch, val["accuracy"], test["accuracy"], test["uar"], test["macro_f1"], train_seconds,
                    out / "metrics.json")
    finish_distributed(accelerator)
    return metrics


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML config (configs/teacher/*.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set epochs=5 --set model.overrides.num_layers=4")
    parser.add_argument("--force", action="store_true",
                        help="start over in an output_dir that holds a run: its best/ and metrics.json are moved to "
                             "<output_dir>/replaced-<UTC time>/ first")
    return parser


def run(args: argparse.Namespace) -> int:
    cfg = load_config(TeacherTrainConfig, args.config, args.overrides)
    command = " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *sys.argv[1:]])
    metrics = train(cfg, command, force=getattr(args, "force", False))
    print(f"best epoch {metrics['best_epoch']}: val accuracy {metrics['val']['accuracy']:.4f}, "
          f"test accuracy {metrics['test']['accuracy']:.4f} (UAR {metrics['test']['uar']:.4f}); "
          f"{metrics['train_seconds']:.0f} s; {Path(cfg.output_dir) / 'metrics.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from emodistill.core.errors import run_guarded

    setup_logging()
    return run_guarded(run, build_parser().parse_args(argv))


__all__ = ["TeacherTrainConfig", "ModelSection", "OptimSection", "train", "load_best", "build_parser", "run"]

if __name__ == "__main__":
    sys.exit(main())
