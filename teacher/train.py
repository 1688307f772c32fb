"""Fine-tune a teacher on the data layer's splits (flat accelerate loop).

    accelerate launch teacher/train.py --config configs/teacher/tiny_synth.yaml [--set key=value ...]
    emodistill teacher train --config configs/teacher/tiny_synth.yaml [--resume]

AdamW with per-part learning rates, warm-up + cosine, gradient accumulation, mixed precision where the
hardware has it, evaluation on val every epoch, best checkpoint chosen on val only, early stopping,
test metrics of the best checkpoint at the end, TensorBoard logs and `metrics.json` in `output_dir`.
`--resume` continues from `<output_dir>/state` exactly (the skeleton's mechanism, emodistill.core.train):
a killed run resumed ends with the same weights as one never stopped.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

if __name__ == "__main__" and not __package__:  # a checkout's `accelerate launch teacher/train.py`
    import runpy  # run the package module, with the repository (not this folder: its onnx.py, data.py...) first
    sys.path[0] = str(Path(__file__).resolve().parents[1])
    runpy.run_module("emodistill.teacher.train", run_name="__main__", alter_sys=True)
    raise SystemExit(0)

import torch
import torch.nn.functional as F
from pydantic import Field
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from emodistill.core.checkpoint import save_checkpoint
from emodistill.core.config import BaseConfig, ConfigError, load_config
from emodistill.core.data import DataConfig, build_datasets
from emodistill.core.evaluate import evaluate, modality_dropout_mask, modality_mask, unimodal_ce
from emodistill.core.sharding import full_state_dict, prepare_with_model, shard_model, sync_buffers
from emodistill.core.state import latest_state
from emodistill.core.train import (METRIC_KEYS, TrainConfig, add_recipe_args, build_accelerator, build_scheduler,
                                   final_test, finish_run, flat_config, keep_best, moved_keys, new_book, optimizer_step,
                                   resume_training, save_training_state)
from emodistill.core.utils import check_run_folder, move_aside, seed_everything, setup_logging, stable_hash

from emodistill.teacher.encoder_cache import EncoderCacheConfig

logger = logging.getLogger(__name__)


class ModelSection(BaseConfig):
    name: str = Field("teacher_tiny", description="registered teacher preset (emodistill teacher info --model NAME)")
    overrides: dict[str, Any] = Field(default_factory=dict, description="TeacherConfig fields to override, e.g. "
                                      "num_layers, lfm2_source (local folder), freeze_vision, dtype")


class TeacherTrainSection(TrainConfig):
    """The shared `train:` schema (emodistill.core.train.TrainConfig); the teacher's peak lr defaults lower."""

    lr: float = Field(1e-3, gt=0, description="peak learning rate of the fusion layers and head")


# before the shared `train:` section (issue 14), teacher recipes had `optim:` and these top-level keys
MOVED = {"optim": "train", **{k: f"train.{k}" for k in (
    "epochs", "batch_size", "eval_batch_size", "num_workers", "mixed_precision", "metric", "patience",
    "modality_dropout", "threads")}}


class TeacherTrainConfig(BaseConfig):
    data: DataConfig
    model: ModelSection = Field(default_factory=ModelSection)
    train: TeacherTrainSection = Field(default_factory=TeacherTrainSection)
    label_smoothing: float = Field(0.1, ge=0, lt=1, description="cross-entropy label smoothing")
    unimodal_weight: float = Field(0.0, ge=0, description="weight of the unimodal heads' cross-entropy (needs "
                                   "model.overrides.unimodal_heads=true); a dropped modality's term is masked")
    modality: Literal["both", "audio", "video"] = Field(
        "both", description="audio/video: a unimodal baseline of the same model (the other modality is always "
        "replaced by its missing embedding, in training and evaluation)")
    output_dir: str = Field("runs/teacher", description="checkpoint, metrics.json and TensorBoard logs go here")
    seed: int = Field(0, description="seed of init, data order and dropout")
    encoder_cache: EncoderCacheConfig = Field(default_factory=EncoderCacheConfig, description="frozen SigLIP2 / "
                                              "Parakeet outputs computed once per (clip, view) (teacher/encoder_cache)")

    @classmethod
    def model_validate(cls, obj: Any, **kwargs) -> "TeacherTrainConfig":
        moved_keys(obj, MOVED, "teacher and distillation recipes share one `train:` section; see configs/teacher")
        return super().model_validate(obj, **kwargs)


def _modality_mask(batch_size: int, p: float, device, modality: str = "both") -> torch.Tensor | None:
    """[B,2] per-sample mask with audio and video dropped independently with prob. p, never both
    (or the fixed mask of a unimodal baseline)."""
    if modality != "both":
        return modality_mask(batch_size, "video" if modality == "audio" else "audio", device)
    return modality_dropout_mask(batch_size, p, device)


def train(cfg: TeacherTrainConfig, command: str = "", force: bool = False, resume: bool = False) -> dict:
    """Run the fine-tune (`resume`: continue `<output_dir>/state`); returns the metrics written to
    `<output_dir>/metrics.json`. output_dir is locked for the whole run (emodistill.core.lock; rank 0 only): a
    second writer is refused."""
    from emodistill.core.lock import folder_lock

    with folder_lock(cfg.output_dir, what="run", command=command or None):
        return _train(cfg, command, force, resume)


@dataclass
class _Run:
    """The parts of one fine-tune that `_prepare` builds and the loop's steps share."""

    accelerator: Any
    model: torch.nn.Module      # as prepared by accelerate (DDP-wrapped on several processes)
    optimizer: Any
    scheduler: Any
    generator: torch.Generator  # the train shuffle's: its state is part of a resumable state
    loader: DataLoader
    val_loader: DataLoader
    test_loader: DataLoader
    train_ds: Dataset
    names: list[str]
    num_classes: int
    counts: dict                # parameters: total, trainable
    missing: str | None         # the modality a unimodal baseline never sees
    config_hash: str
    encoder_cache: dict | None = None  # the frozen-encoder cache's statistics (encoder_cache.enabled)


def _train(cfg: TeacherTrainConfig, command: str, force: bool, resume: bool) -> dict:
    accelerator = _start(cfg, resume, force)
    run = _prepare(cfg, accelerator)
    step, start_epoch, skip, partial, book = _resume_point(cfg, run, resume)
    start = time.perf_counter()
    for epoch in range(start_epoch, cfg.train.epochs):
        if book["stopped"]:
            break
        step, batch_idx, total, seen = _train_one_epoch(cfg, run, book, epoch, step, skip, partial)
        skip, partial = 0, {}
        _evaluate_and_save(cfg, run, book, epoch, step, total / max(seen, 1), start)
        _save_state(cfg, run, book, step, epoch, batch_idx, True, run.generator.get_state(), {})
    train_seconds = time.perf_counter() - start
    return finish_run(accelerator, Path(cfg.output_dir), _final_metrics(cfg, run, book, train_seconds, command))


def _start(cfg: TeacherTrainConfig, resume: bool, force: bool):
    """The checks before any data is decoded, the accelerator, the previous run moved aside (--force), the
    seeds -> accelerator."""
    from accelerate.utils import set_seed

    from emodistill.teacher import TEACHERS

    if resume and force:
        raise ValueError("--resume continues the run in output_dir, --force starts it over: give one of them")
    if cfg.model.name not in TEACHERS:  # before the data is decoded
        raise ConfigError(f"model.name: unknown teacher {cfg.model.name!r}; available: {', '.join(TEACHERS.names())}")
    out = Path(cfg.output_dir)
    if resume:
        latest_state(out / "state")  # a torn or misdirected latest.json fails now
    previous = check_run_folder(cfg.output_dir, resume=resume, force=force)

    accelerator = build_accelerator(cfg.train, out)
    if force and previous and accelerator.is_main_process:
        move_aside(out, previous)
    accelerator.wait_for_everyone()
    set_seed(cfg.seed)
    seed_everything(cfg.seed)
    return accelerator


def _prepare(cfg: TeacherTrainConfig, accelerator) -> _Run:
    """Data, the teacher, AdamW with per-part learning rates and its schedule, the seeded loaders, all prepared by
    accelerate."""
    from emodistill.teacher import create_teacher

    tc = cfg.train
    with accelerator.main_process_first():
        splits = build_datasets(cfg.data)
    train_ds, val_ds, test_ds = splits["train"], splits["val"], splits["test"]
    names, num_classes = train_ds.class_names, train_ds.num_classes
    logger.info("train/val/test clips: %d/%d/%d, %d classes", len(train_ds), len(val_ds), len(test_ds), num_classes)

    model = create_teacher(cfg.model.name, **{**cfg.model.overrides, "num_classes": num_classes})
    counts = model.count_parameters()
    logger.info("%s: %.2fM parameters (%.2fM trainable)", cfg.model.name, counts["total"] / 1e6,
                counts["trainable"] / 1e6)
    train_items, cache_info = _train_items(cfg, accelerator, model, train_ds)
    model = shard_model(model, accelerator, tc.sharding)  # fsdp: before the optimiser sees its parameters
    enc = 1.0 if tc.encoder_lr_scale is None else tc.encoder_lr_scale  # the recipe's scales, unset = 1
    bb = 1.0 if tc.backbone_lr_scale is None else tc.backbone_lr_scale
    groups = model.param_groups(tc.lr, tc.weight_decay, {"vision": enc, "audio": enc, "backbone": bb})
    optimizer = torch.optim.AdamW(groups, lr=tc.lr, betas=tc.betas)

    g = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(train_items, batch_size=tc.batch_size, shuffle=True, drop_last=True, generator=g,
                        num_workers=tc.num_workers if cache_info is None else 0)  # cached rows: RAM lookups
    val_loader = DataLoader(val_ds, batch_size=tc.eval_batch_size, num_workers=tc.num_workers)
    test_loader = DataLoader(test_ds, batch_size=tc.eval_batch_size, num_workers=tc.num_workers)
    model, optimizer, loader, val_loader, test_loader = prepare_with_model(
        accelerator, model, optimizer, loader, val_loader, test_loader)
    scheduler = build_scheduler(optimizer.optimizer, tc, len(loader))
    accelerator.init_trackers("teacher", config=flat_config(cfg.model_dump(mode="json")))
    # the epoch count may grow on resume; where the run lives, and how it is sharded (a state fits only its own
    # layout, core.state checks that), are not part of what it computes
    config_hash = stable_hash(cfg.model_dump(mode="json", exclude={"train": {"epochs", "sharding"},
                                                                   "output_dir": True}))
    missing = {"both": None, "audio": "video", "video": "audio"}[cfg.modality]
    return _Run(accelerator, model, optimizer, scheduler, g, loader, val_loader, test_loader, train_ds, names,
                num_classes, counts, missing, config_hash, encoder_cache=cache_info)


def _train_items(cfg: TeacherTrainConfig, accelerator, model, train_ds) -> tuple[Dataset, dict | None]:
    """The train split as the loader reads it: the clips, or (encoder_cache.enabled) the frozen encoders' stored
    outputs for them, the cache filled first -> (items, cache statistics or None)."""
    if not cfg.encoder_cache.enabled:
        return train_ds, None
    from emodistill.teacher.encoder_cache import prepare_encoder_cache

    tc = cfg.train
    items, info = prepare_encoder_cache(cfg.encoder_cache, model, train_ds, cfg.data, accelerator, tc.epochs,
                                        Path(cfg.output_dir).parent / "encoder_cache", tc.eval_batch_size,
                                        tc.num_workers)
    logger.info("encoder cache: %d entries (%d new) in %s", info["entries"], info["added"], info["dir"])
    return items, info


def _resume_point(cfg: TeacherTrainConfig, run: _Run, resume: bool) -> tuple[int, int, int, dict, dict]:
    """(--resume) the latest state restored, the shuffle generator included -> (step, epoch, batch to skip in it,
    the epoch's running loss so far, keep-best book)."""
    at = resume_training(Path(cfg.output_dir) / "state", run.accelerator,
                         model=run.accelerator.unwrap_model(run.model), optimizer=run.optimizer,
                         scheduler=run.scheduler, config_hash=run.config_hash) if resume else None
    if not at:
        return 0, 0, 0, {}, new_book()
    run.generator.set_state(torch.tensor(at["extra"]["sampler_rng"], dtype=torch.uint8))
    return at["step"], at["epoch"], at["batch"], at["partial"], at["book"]


def _save_state(cfg: TeacherTrainConfig, run: _Run, book: dict, step: int, epoch: int, batch: int, epoch_done: bool,
                sampler_rng: torch.Tensor, partial: dict) -> None:
    save_training_state(Path(cfg.output_dir) / "state", run.accelerator,
                        model=run.accelerator.unwrap_model(run.model), optimizer=run.optimizer,
                        scheduler=run.scheduler, book=book, config_hash=run.config_hash,
                        position={"step": step, "epoch": epoch, "batch": batch, "epoch_done": epoch_done,
                                  "partial": partial}, extra={"sampler_rng": sampler_rng.tolist()})


def _train_one_epoch(cfg: TeacherTrainConfig, run: _Run, book: dict, epoch: int, step: int, skip: int,
                     partial: dict) -> tuple[int, int, float, int]:
    """One pass over the train loader, from batch `skip` on (a resumed mid-epoch state, whose running loss is
    `partial`) -> (step, batches done, loss summed over samples, samples seen)."""
    tc, accelerator, model = cfg.train, run.accelerator, run.model
    run.train_ds.set_epoch(epoch)
    model.train()
    # the shuffle generator's state before this epoch's iterator draws from it: a mid-epoch state
    # replays the same order and skips the batches already done
    epoch_rng = run.generator.get_state()
    epoch_loader = accelerator.skip_first_batches(run.loader, skip) if skip else run.loader
    epoch_loader.set_epoch(epoch)  # accelerate hands its own pass counter to the dataset on each pass
    batch_idx = skip
    total, seen = partial.get("total", 0.0), partial.get("seen", 0)
    bar = tqdm(epoch_loader, desc=f"epoch {epoch + 1}/{tc.epochs}", disable=not accelerator.is_local_main_process,
               leave=False)
    for batch in bar:
        with accelerator.accumulate(model):
            loss, label = _loss(cfg, model, batch)
            accelerator.backward(loss)
            optimizer_step(accelerator, model, run.optimizer, run.scheduler, tc.max_grad_norm)
        lv = loss.item()  # one host sync per batch, for the running mean and the log
        batch_idx += 1
        total += lv * label.shape[0]
        seen += label.shape[0]
        bar.set_postfix(loss=f"{total / seen:.3f}")
        if accelerator.sync_gradients:
            step += 1
            if step % tc.log_every == 0:
                accelerator.log({"train/loss": lv, "train/lr": run.scheduler.get_last_lr()[0]}, step=step)
            if tc.save_every_steps and step % tc.save_every_steps == 0 and batch_idx < len(run.loader):
                _save_state(cfg, run, book, step, epoch, batch_idx, False, epoch_rng, {"total": total, "seen": seen})
    return step, batch_idx, total, seen


def _loss(cfg: TeacherTrainConfig, model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of the fused logits (+ the unimodal heads', + an auxiliary loss) on one batch, with this
    step's modality mask -> (loss, labels [B])."""
    label = batch["label"]
    mask = _modality_mask(label.shape[0], cfg.train.modality_dropout, label.device, cfg.modality)
    if "encoded" in batch:  # encoder_cache: the frozen encoders' stored outputs stand in for the clips
        res = model(None, None, modality_mask=mask, encoded=batch["encoded"])
    else:
        res = model(batch["video"], batch["audio"], modality_mask=mask)
    return teacher_loss(cfg, res, label, mask), label


def teacher_loss(cfg: TeacherTrainConfig, res: dict, label: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The recipe's loss on the model's outputs `res` (logits [B, C], ...) for labels [B] and the step's modality
    mask [B, 2]: cross-entropy of the fused logits, + the unimodal heads', + an auxiliary loss (`emodistill plan`
    traces this same function)."""
    loss = F.cross_entropy(res["logits"].float(), label, label_smoothing=cfg.label_smoothing)
    if "audio_logits" in res:  # also at weight 0: the heads stay in the graph (DDP sees them used)
        loss = loss + cfg.unimodal_weight * unimodal_ce(res, label, mask, cfg.label_smoothing)
    if "aux_loss" in res:
        loss = loss + res["aux_loss"]
    return loss


def _evaluate_and_save(cfg: TeacherTrainConfig, run: _Run, book: dict, epoch: int, step: int, mean_loss: float,
                       start: float) -> None:
    """The epoch's train loss (over processes) and val metrics into the book and the trackers; the teacher saved
    when val improved."""
    accelerator, tc = run.accelerator, cfg.train
    main = accelerator.is_main_process
    sync_buffers(run.model)  # fsdp: rank 0's BatchNorm statistics everywhere, as DDP has them
    val = evaluate(run.model, run.val_loader, run.num_classes, accelerator, missing=run.missing, progress=True)
    train_loss = accelerator.reduce(torch.tensor(mean_loss, device=accelerator.device), "mean").item()
    book["history"].append({"epoch": epoch + 1, "train_loss": train_loss, "seconds": time.perf_counter() - start,
                            **{f"val_{k}": val[k] for k in METRIC_KEYS}})
    accelerator.log({"train/epoch_loss": train_loss, **{f"val/{k}": val[k] for k in
                                                        ("accuracy", "uar", "macro_f1")}}, step=step)
    improved = keep_best(book, val[tc.metric], epoch + 1, tc.patience)
    weights = full_state_dict(run.model) if improved else None  # fsdp: gathered on rank 0 (every process joins)
    if improved and main:
        save_checkpoint(Path(cfg.output_dir) / "best", accelerator.unwrap_model(run.model),
                        preprocess=cfg.data.preprocess, class_names=run.names, state_dict=weights,
                        extra={"metrics": {"epoch": epoch + 1, "val": val}, "train_clips": len(run.train_ds),
                               "train_config": cfg.model_dump(mode="json")})
    accelerator.wait_for_everyone()
    if main:
        logger.info("epoch %d: loss %.4f  val acc %.4f uar %.4f f1 %.4f%s", epoch + 1, train_loss,
                    val["accuracy"], val["uar"], val["macro_f1"], "  (best)" if improved else "")
    if book["stopped"]:
        logger.info("early stopping: no val %s improvement for %d epochs", tc.metric, book["stale"])


def _final_metrics(cfg: TeacherTrainConfig, run: _Run, book: dict, train_seconds: float, command: str) -> dict:
    """The best teacher's final test (val, test, missing modalities) with the run's facts: metrics.json."""
    best_dir = Path(cfg.output_dir) / "best"
    results = final_test(run.model, best_dir, run.accelerator, run.val_loader, run.test_loader, run.num_classes,
                         missing=run.missing, eval_missing=cfg.train.eval_missing,
                         expect={"preprocess": cfg.data.preprocess, "class_names": run.names, "family": "teacher"})
    return {"model": cfg.model.name, "modality": cfg.modality, "best_epoch": book["best_epoch"],
            "selected_on": f"val_{cfg.train.metric}", **results, "history": book["history"],
            "train_seconds": train_seconds, "parameters": run.counts, "checkpoint": str(best_dir), "command": command,
            **({"encoder_cache": run.encoder_cache} if run.encoder_cache is not None else {})}


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    from emodistill.core.cli_args import HelpFormatter

    parser = parser or argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    return add_recipe_args(parser, "configs/teacher/*.yaml",
                           "--set train.epochs=5 --set model.overrides.num_layers=4", "best/, metrics.json and state/")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(TeacherTrainConfig, args.config, args.overrides)
    command = " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *sys.argv[1:]])
    metrics = train(cfg, command, force=getattr(args, "force", False), resume=getattr(args, "resume", False))
    print(f"best epoch {metrics['best_epoch']}: val accuracy {metrics['val']['accuracy']:.4f}, "
          f"test accuracy {metrics['test']['accuracy']:.4f} (UAR {metrics['test']['uar']:.4f}); "
          f"{metrics['train_seconds']:.0f} s; {Path(cfg.output_dir) / 'metrics.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from emodistill.core.errors import run_guarded

    setup_logging()
    return run_guarded(run, build_parser().parse_args(argv))


__all__ = ["TeacherTrainConfig", "teacher_loss", "ModelSection", "TeacherTrainSection", "train", "build_parser", "run"]

if __name__ == "__main__":
    sys.exit(main())
