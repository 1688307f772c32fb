"""The training skeleton teacher fine-tuning and distillation share.

One `train:` section (`TrainConfig`: optimiser, schedule, precision, early stopping) in every recipe under
configs/teacher and configs/distill, one mixed-precision choice, one scheduler rule, one keep-best book and
one final test of the best checkpoint. The loops themselves stay in teacher/train.py and distill/run.py, flat
like accelerate's examples:

    accelerator = build_accelerator(cfg.train, output_dir)
    ...prepare model, optimizer, loaders...
    scheduler = build_scheduler(optimizer, cfg.train, len(train_loader))
    book = new_book()
    for epoch in range(cfg.train.epochs):
        for batch in train_loader:
            with accelerator.accumulate(model):
                loss = ...
                accelerator.backward(loss)
                optimizer_step(accelerator, model, optimizer, scheduler, cfg.train.max_grad_norm)
        val = evaluate(model, val_loader, ...)
        if keep_best(book, val[cfg.train.metric], epoch + 1, cfg.train.patience):
            save_checkpoint(best_dir, ...)
    results = final_test(model, best_dir, accelerator, val_loader, test_loader, num_classes, expect={...})

Exact resume is one mechanism for both (`--resume`): `save_training_state` writes model, optimiser, scheduler,
grad scaler, every process's RNG and the loop position through `core.state` at each epoch end (and every
`save_every_steps` optimiser steps); `resume_training` puts all of it back and says where to go on, and the
loop skips the batches of the epoch it already did (`accelerator.skip_first_batches`).

`train.sharding` (none | ddp | fsdp) chooses the multi-process layout (emodistill.core.sharding): the loops call
`shard_model` before building the optimiser and `prepare_with_model` instead of `accelerator.prepare`; a sharded
model's state is written by every process (`save_training_state`), its checkpoints gathered on rank 0.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from .checkpoint import load_weights
from .config import BaseConfig, ConfigError
from .evaluate import Missing, evaluate
from .optim import warmup_cosine
from .sharding import Sharding, is_sharded
from .state import latest_state, load_state, new_state_folder, rng_state, save_state, set_rng_state, write_tensors
from .utils import finish_distributed, write_json_atomic

logger = logging.getLogger(__name__)

METRIC_KEYS = ("accuracy", "uar", "war", "macro_f1")


class TrainConfig(BaseConfig):
    """The `train:` section of teacher and distillation recipes."""

    epochs: int = Field(20, ge=1, description="maximum epochs")
    batch_size: int = Field(16, ge=1, description="per-process training batch size")
    eval_batch_size: int = Field(32, ge=1, description="per-process evaluation batch size")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")
    lr: float = Field(2e-3, gt=0, description="peak learning rate (teacher: of the fusion layers and head)")
    encoder_lr_scale: float | None = Field(None, ge=0, description="teacher only: vision/audio encoder lr = lr * "
                                           "this (unset = 1)")
    backbone_lr_scale: float | None = Field(None, ge=0, description="teacher only: LFM2 layers lr = lr * this "
                                            "(unset = 1)")
    weight_decay: float = Field(0.05, ge=0, description="AdamW weight decay (not on 1-D parameters)")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas")
    warmup_epochs: float = Field(1.0, ge=0, description="linear lr warm-up length in epochs")
    min_lr_ratio: float = Field(0.01, ge=0, le=1, description="cosine floor as a fraction of the peak lr")
    grad_accum: int = Field(1, ge=1, description="gradient accumulation steps (micro-batches per optimiser step)")
    max_grad_norm: float = Field(1.0, ge=0, description="gradient clipping norm (0 = off)")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on a GPU that supports it, fp16 on other GPUs, none on CPU")
    metric: Literal["accuracy", "uar", "macro_f1"] = Field("accuracy", description="val metric choosing the best epoch")
    patience: int = Field(5, ge=1, description="early stopping: epochs without val improvement")
    modality_dropout: float = Field(0.0, ge=0, lt=0.5, description="per-sample probability of dropping audio "
                                    "(and, independently, video; never both) during training")
    eval_missing: bool = Field(True, description="also test the best model with audio / video missing")
    log_every: int = Field(10, ge=1, description="TensorBoard logging period in optimiser steps")
    threads: int | None = Field(None, ge=1, description="torch CPU threads per process (None = torch default)")
    save_every_steps: int = Field(0, ge=0, description="also write the resumable state every N optimiser steps "
                                  "(it is always written at the end of each epoch)")
    sharding: Sharding = Field("none", description="none: the whole model on every process (DDP when launched on "
                               "several); ddp: the same, said explicitly; fsdp: FSDP2, parameters, gradients and "
                               "optimiser state split over the processes (emodistill.core.sharding)")


def moved_keys(data: Any, moves: dict[str, str], note: str = "") -> None:
    """Raise a ConfigError for every old key of `moves` ("a.b" -> "c.d"; "a" -> "c" moves a whole section key by
    key) that `data` (the raw YAML + --set mapping) still uses, naming where it lives now."""
    if not isinstance(data, dict):
        return
    found = []
    for old, new in moves.items():
        node, parts = data, old.split(".")
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or parts[-1] not in node:
            continue
        value = node[parts[-1]]
        if isinstance(value, dict) and "." not in new and "." not in old:  # a whole section: name each key
            found += [f"'{old}.{k}' is now '{new}.{k}'" for k in value] or [f"'{old}' is now '{new}'"]
        else:
            found.append(f"'{old}' is now '{new}'")
    if found:
        raise ConfigError("config keys moved: " + "; ".join(found) + (f" ({note})" if note else ""))


def mixed_precision(choice: str) -> str:
    """`auto` -> bf16 on a GPU that supports it, fp16 on other GPUs, no on CPU; other choices as given."""
    if choice != "auto":
        return choice
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def build_accelerator(tc: TrainConfig, output_dir: str | Path, **kwargs):
    """The run's Accelerator (precision, accumulation, TensorBoard under `output_dir`); sets tc.threads first."""
    from accelerate import Accelerator

    if tc.threads:
        torch.set_num_threads(tc.threads)
    return Accelerator(mixed_precision=mixed_precision(tc.mixed_precision), gradient_accumulation_steps=tc.grad_accum,
                       log_with="tensorboard", project_dir=str(output_dir), cpu=not torch.cuda.is_available(), **kwargs)


def flat_config(d: dict, prefix: str = "") -> dict:
    """A nested config dump as flat `a.b.c: scalar` pairs (TensorBoard hparams); non-scalars become strings."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat_config(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out


def build_scheduler(optimizer: torch.optim.Optimizer, tc: TrainConfig,
                    batches_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Warm-up + cosine over the run, counted in optimiser steps.

    `batches_per_epoch` is this process's micro-batches per epoch (len of the *prepared* train loader); with
    gradient accumulation an epoch has ceil(batches / grad_accum) optimiser steps. Pass the torch optimiser
    (`optimizer.optimizer` of an AcceleratedOptimizer) and never `accelerator.prepare` the scheduler:
    `optimizer_step` steps it, once per optimiser step.
    """
    steps_per_epoch = math.ceil(batches_per_epoch / tc.grad_accum)
    return warmup_cosine(optimizer, int(tc.warmup_epochs * steps_per_epoch), steps_per_epoch * tc.epochs,
                         tc.min_lr_ratio)


def optimizer_step(accelerator, model: torch.nn.Module, optimizer, scheduler, max_grad_norm: float) -> None:
    """The end of every micro-step inside `accelerator.accumulate(model)`.

    The AcceleratedOptimizer steps and zeroes only on the micro-step that syncs gradients; clipping happens
    there too, and the schedule advances there alone: one scheduler step per optimiser step, so the lr after
    N optimiser steps is the schedule's value at N whatever grad_accum is.
    """
    if accelerator.sync_gradients and max_grad_norm > 0:
        accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    if accelerator.sync_gradients:
        scheduler.step()
    optimizer.zero_grad()


def new_book() -> dict:
    """Keep-best / early-stopping state (JSON-able: distillation stores it in its resumable state)."""
    return {"best": -1.0, "best_epoch": -1, "stale": 0, "stopped": False, "history": []}


def keep_best(book: dict, value: float, epoch: int, patience: int) -> bool:
    """Record epoch `epoch`'s val metric `value`; -> whether it is the new best (the caller saves the checkpoint).
    Sets book["stopped"] after `patience` epochs without improvement."""
    improved = value > book["best"]
    if improved:
        book.update(best=value, best_epoch=epoch, stale=0)
    else:
        book["stale"] += 1
    if book["stale"] >= patience:
        book["stopped"] = True
    return improved


def save_training_state(state_root: str | Path, accelerator, *, model: torch.nn.Module, optimizer, scheduler,
                        position: dict, book: dict, config_hash: str, extra: dict | None = None) -> None:
    """Every process's RNG gathered, then (main process) `core.state.save_state` under `state_root`.
    `position`: step, epoch, batch (done in that epoch), epoch_done, partial (the epoch's running sums)."""
    from accelerate.utils import gather_object

    rngs = gather_object([rng_state()])
    position = {"partial": {}, **position}
    shards = _write_shards(state_root, accelerator, model, optimizer, position) if is_sharded(model) else {}
    if accelerator.is_main_process:
        save_state(state_root, model=model, optimizer=optimizer, scheduler=scheduler, rng=rngs, position=position,
                   extra={**(extra or {}), "book": book, "config_hash": config_hash,
                          "grad_scaler": accelerator.scaler.state_dict() if accelerator.scaler else None}, **shards)
    accelerator.wait_for_everyone()


def _write_shards(state_root: str | Path, accelerator, model: torch.nn.Module, optimizer, position: dict) -> dict:
    """A sharded model: the main process opens the state's folder, every process writes its own shards of the
    model and optimiser into it -> save_state's `folder` and `shards` (each file's sha256, in rank order)."""
    from accelerate.utils import broadcast_object_list, gather_object

    folder = [str(new_state_folder(state_root, position)) if accelerator.is_main_process else None]
    broadcast_object_list(folder)
    sha = write_tensors(folder[0], model, optimizer, rank=accelerator.process_index)
    return {"folder": folder[0], "shards": gather_object([sha])}


def resume_training(state_root: str | Path, accelerator, *, model: torch.nn.Module, optimizer, scheduler,
                    config_hash: str) -> dict | None:
    """Restore the latest state under `state_root` into the model, optimiser, scheduler, grad scaler and this
    process's RNG -> {"step", "epoch", "batch", "book", "partial", "extra"}: where to go on (None: no state)."""
    found = latest_state(state_root)
    if found is None:
        logger.warning("--resume: no training state under %s; starting from scratch", state_root)
        return None
    meta = load_state(found, model=model, optimizer=optimizer, scheduler=scheduler,
                      process=(accelerator.process_index, accelerator.num_processes))
    pos, extra = meta["position"], meta["extra"]
    if extra.get("config_hash") != config_hash:
        logger.warning("--resume: the config differs from the one that wrote %s", found)
    at = {"step": pos["step"], "epoch": pos["epoch"], "batch": pos["batch"], "book": extra["book"],
          "partial": pos.get("partial", {}), "extra": extra}
    if accelerator.scaler is not None and extra.get("grad_scaler"):  # fp16 loss scale
        accelerator.scaler.load_state_dict(extra["grad_scaler"])
    if pos["epoch_done"]:
        at.update(epoch=at["epoch"] + 1, batch=0, partial={})
    rngs = meta["rng"]
    if len(rngs) != accelerator.num_processes:
        logger.warning("--resume: state has %d process RNG states, this run %d", len(rngs), accelerator.num_processes)
    set_rng_state(rngs[accelerator.process_index % len(rngs)])
    logger.info("resumed from %s: epoch %d, batch %d, step %d", found, at["epoch"] + 1, at["batch"], at["step"])
    return at


def evaluate_splits(model: torch.nn.Module, accelerator, val_loader, test_loader, num_classes: int,
                    missing: Missing = None, eval_missing: bool = True) -> dict:
    """{"val", "test"[, "test_missing_audio", "test_missing_video"]} -> evaluate() metrics.

    `missing` is the modality a unimodal model never sees (then the missing-modality tests are moot); otherwise
    `eval_missing` adds the test split with audio, then video, replaced by the model's missing embedding.
    """
    runs = [("val", val_loader, missing), ("test", test_loader, missing)]
    if eval_missing and missing is None:
        runs += [("test_missing_audio", test_loader, "audio"), ("test_missing_video", test_loader, "video")]
    with accelerator.autocast():
        return {name: evaluate(model, loader, num_classes, accelerator, missing=m) for name, loader, m in runs}


def final_test(model: torch.nn.Module, best_dir: str | Path, accelerator, val_loader, test_loader, num_classes: int,
               *, expect: dict, missing: Missing = None, eval_missing: bool = True) -> dict:
    """Load the best checkpoint's weights into `model` (checked against `expect`: preprocess, class_names,
    family) and evaluate it: `evaluate_splits`."""
    load_weights(accelerator.unwrap_model(model), best_dir, **expect)
    return evaluate_splits(model, accelerator, val_loader, test_loader, num_classes, missing, eval_missing)


def finish_run(accelerator, output_dir: str | Path, metrics: dict) -> dict:
    """Write `<output_dir>/metrics.json` and the closing log line (main process), end the accelerate run
    -> metrics. `metrics` holds best_epoch, train_seconds and `final_test`'s results."""
    if accelerator.is_main_process:
        path = Path(output_dir) / "metrics.json"
        write_json_atomic(path, metrics)
        t = metrics["test"]
        logger.info("best epoch %d: val acc %.4f, test acc %.4f (UAR %.4f, macro-F1 %.4f)%s; %.0f s; %s",
                    metrics["best_epoch"], metrics["val"]["accuracy"], t["accuracy"], t["uar"], t["macro_f1"],
                    "".join(f", {k} {v['accuracy']:.4f}" for k, v in metrics.items() if k.startswith("test_missing")),
                    metrics["train_seconds"], path)
    finish_distributed(accelerator)
    return metrics


def add_recipe_args(parser: argparse.ArgumentParser, configs: str, example: str,
                    moved_aside: str) -> argparse.ArgumentParser:
    """--config, --set, --out, --force and --resume of a training command (`configs`: where its YAMLs live)."""
    from .cli_args import add_set

    parser.add_argument("--config", required=True, help=f"YAML recipe ({configs}) or a packaged recipe's name")
    add_set(parser, help=f"override a config value, e.g. {example} (repeatable)")
    parser.add_argument("--out", metavar="DIR", action=_OutputDir, default=argparse.SUPPRESS,
                        help="output folder of the run (the same as --set output_dir=DIR)")
    parser.add_argument("--force", action="store_true",
                        help=f"start over in an output_dir that holds a run: its {moved_aside} are moved to "
                             "<output_dir>/replaced-<UTC time>/ first")
    parser.add_argument("--resume", action="store_true",
                        help="continue from <output_dir>/state exactly where the last run stopped")
    return parser


class _OutputDir(argparse.Action):
    """`--out DIR` of a recipe command: an `output_dir=DIR` override, in order with the --set ones."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.overrides = [*(getattr(namespace, "overrides", None) or []), f"output_dir={values}"]


__all__ = ["TrainConfig", "METRIC_KEYS", "moved_keys", "mixed_precision", "build_accelerator", "flat_config",
           "build_scheduler", "optimizer_step", "new_book", "keep_best", "save_training_state", "resume_training",
           "evaluate_splits", "final_test",
           "finish_run", "add_recipe_args"]
