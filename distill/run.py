"""Distill a teacher into a student: the flat accelerate loop.

    accelerate launch distill/run.py --config configs/distill/demo.yaml [--set key=value ...] [--resume]
    torchrun --nproc_per_node 2 distill/run.py --config ...      (CPU: Accelerator(cpu=True), gloo)
    emodistill distill --config configs/distill/demo.yaml [--set ...] [--resume]

The teacher is loaded from its checkpoint, frozen, moved to the device and never passed to
`accelerator.prepare`. With `distill.cache` its outputs for every (sample, augmentation view) the
epochs will draw are computed once (main process) and read from RAM afterwards. The student and the
loss modules (projectors) train with AdamW, warm-up + cosine, gradient accumulation and clipping;
each epoch is evaluated on val (gathered over processes), the best student on val is saved with
`save_checkpoint`, and a resumable state (model, projectors, optimiser, scheduler, RNG of every
process, position in the epoch) is written atomically at each epoch end and every
`train.save_every_steps`. At the end the best student is tested, also with audio / video missing.
"""

from __future__ import annotations

import argparse
import gc
import logging
import shlex
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __name__ == "__main__" and not __package__:  # a checkout's `accelerate launch distill/run.py`
    import runpy  # run the package module, with the repository (not this folder: its onnx.py, data.py...) first
    sys.path[0] = str(Path(__file__).resolve().parents[1])
    runpy.run_module("emodistill.distill.run", run_name="__main__", alter_sys=True)
    raise SystemExit(0)

import torch
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from emodistill.core.checkpoint import CheckpointError, check_meta, load_checkpoint, read_meta, save_checkpoint
from emodistill.core.config import ConfigError, load_config
from emodistill.core.contract import Preprocess
from emodistill.core.evaluate import evaluate, modality_dropout_mask
from emodistill.core.optim import split_decay
from emodistill.core.sharding import full_state_dict, prepare_with_model, shard_model, sync_buffers
from emodistill.core.train import (METRIC_KEYS, add_recipe_args, build_accelerator, build_scheduler, evaluate_splits,
                                   final_test, finish_run, flat_config, keep_best, new_book, optimizer_step,
                                   resume_training, save_training_state)
from emodistill.core.utils import atomic_path, check_run_folder, move_aside, seed_everything, setup_logging, stable_hash

from emodistill.distill.cache import TeacherCache, WithTeacherOutputs, fill_for_epochs, teacher_fingerprint
from emodistill.distill.config import DistillConfig
from emodistill.distill.core import Distiller, LossTerm, av_inputs_full
from emodistill.distill.data import (CLEAN_VIEW, CleanTeacherView, EpochShuffle, build_data, clean_teacher_inputs,
                          semi_supervised)
from emodistill.distill.losses import WeightSchedule, create_loss, needs_teacher
from emodistill.core.state import latest_state

logger = logging.getLogger("emodistill.distill.run")

HEADS = "distill_heads.safetensors"


def _import_models(role: str) -> None:
    """Import (which registers) the model packages whose presets and checkpoints can play `role`."""
    import emodistill.distill.toy  # noqa: F401

    if role == "student":
        import emodistill.student  # noqa: F401
    else:
        import emodistill.teacher  # noqa: F401


def create_for_run(cfg: DistillConfig, role: str, name: str, num_classes: int, overrides: dict) -> torch.nn.Module:
    """A registered preset (emodistill.core.model) with the run's classes; presets tagged `input_sized` (the toys)
    also get the clips' frames T and samples N."""
    from emodistill.core.model import create_model, model_tags

    _import_models(role)
    kw = {"num_classes": num_classes}
    if model_tags(name).get("input_sized"):
        if cfg.toy is not None:
            kw.update(frames=cfg.toy.frames, samples=cfg.toy.samples)
        else:
            kw.update(frames=cfg.data.preprocess.num_frames, samples=cfg.data.preprocess.num_samples)
    return create_model(name, **kw, **overrides)


def build_student(cfg: DistillConfig, num_classes: int) -> torch.nn.Module:
    return create_for_run(cfg, "student", cfg.student.name, num_classes, cfg.student.overrides)


def load_teacher(cfg: DistillConfig, class_names: list[str], preprocess: Preprocess) -> tuple[torch.nn.Module, str]:
    """(frozen teacher in eval mode, sha256 fingerprint of its weights)."""
    t = cfg.teacher
    if t.checkpoint:
        _import_models("teacher")  # load_checkpoint rebuilds the teacher through its registered family
        model, meta = load_checkpoint(t.checkpoint, class_names=class_names, family="teacher")
        diffs = check_meta(meta, preprocess=preprocess)
        if diffs:
            logger.warning("teacher %s was fine-tuned with other preprocessing (it now sees the student's "
                           "inputs):\n  %s", t.checkpoint, "\n  ".join(diffs))
        return model, meta.get("weights_sha256") or teacher_fingerprint(t.checkpoint)
    model = create_for_run(cfg, "teacher", t.name, len(class_names), t.overrides)
    logger.warning("teacher %r is UNTRAINED (no teacher.checkpoint): only for smoke tests", t.name)
    return model.eval(), teacher_fingerprint(model=model)


def build_terms(cfg: DistillConfig, student: torch.nn.Module, teacher: torch.nn.Module | None) -> list[LossTerm]:
    """Loss terms from `distill.losses` (teacher terms dropped when distill.kd is false)."""
    terms = []
    s_dims = student.feature_dims()
    t_dims = teacher.feature_dims() if teacher is not None else {}
    for name, sec in cfg.distill.losses.items():
        loss = sec.loss or name
        if not sec.enabled or (not cfg.distill.kd and needs_teacher(loss)):
            continue
        args = dict(sec.args)
        if loss == "feature":
            key = args.get("key", "features")
            dim_key = "features" if key == "pooled" else key
            if dim_key not in s_dims or dim_key not in t_dims:
                raise ConfigError(f"distill.losses.{name}: feature key {key!r} needs feature_dims()[{dim_key!r}] "
                                  f"from both models (student {s_dims}, teacher {t_dims})")
            args.setdefault("student_dim", s_dims[dim_key])
            args.setdefault("teacher_dim", t_dims[dim_key])
        try:
            module = create_loss(loss, **args)
        except (TypeError, ValueError, KeyError) as e:
            raise ConfigError(f"distill.losses.{name}: {e}") from None
        weight = WeightSchedule(sec.weight, sec.schedule, sec.warmup_steps, sec.start_weight, sec.start_step)
        terms.append(LossTerm(name, module, weight))
    if not terms:
        raise ConfigError("distill.losses: no enabled loss term")
    return terms


def cached_fields(distiller: Distiller) -> list[str]:
    """Teacher outputs besides the logits that the enabled loss terms read."""
    keys = []
    for name, module in distiller.criteria.items():
        key = getattr(module, "key", None)
        if distiller.needs[name] and key and key not in keys:
            keys.append(key)
    return keys


def cache_teacher_outputs(cfg: DistillConfig, accelerator, distiller: Distiller, teacher_hash: str, train_ds,
                          context: dict, view: int | None = None) -> tuple[WithTeacherOutputs, dict]:
    """Fill the teacher-output cache for every (clip, view) of the run's epochs (or every clip at `view`)
    (main process), load it everywhere; -> (collate_fn adding batch["teacher"], cache statistics)."""
    root = Path(cfg.distill.cache_dir) if cfg.distill.cache_dir else Path(cfg.output_dir).parent / "teacher_cache"
    cache = TeacherCache(root, teacher_hash, context, features=cached_fields(distiller), topk=cfg.distill.cache_topk)
    t0 = time.perf_counter()
    added = 0
    if accelerator.is_main_process:
        added = fill_for_epochs(cache, distiller.teacher, train_ds, cfg.train.epochs, cfg.train.eval_batch_size,
                                device=accelerator.device, progress=True, autocast=accelerator.autocast, view=view)
    accelerator.wait_for_everyone()
    cache.load()
    info = {"dir": str(cache.dir), "entries": len(cache), "added": added, "fill_seconds": time.perf_counter() - t0,
            "topk": cfg.distill.cache_topk}
    logger.info("teacher cache: %d entries (%d new) in %s", len(cache), added, cache.dir)
    return WithTeacherOutputs(cache, view=view), info


def check_loss_args(term: str, loss: str, args: dict) -> None:
    """`distill.losses.<term>.args` against the loss's constructor: an unknown argument fails before any data
    is decoded, with a near miss suggested."""
    import inspect

    from emodistill.core.config import did_you_mean
    from emodistill.distill.losses import LOSSES

    params = inspect.signature(LOSSES.get(loss)).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    allowed = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key in args:
        if key not in allowed:
            raise ConfigError(f"distill.losses.{term}.args.{key}: loss {loss!r} takes no argument {key!r}"
                              f"{did_you_mean(key, allowed)}; it takes: {', '.join(allowed) or 'none'}")


def check_student_options(cfg: DistillConfig) -> None:
    """`student.overrides` against the preset: the student is built on the meta device (no memory, no weights), so
    an unknown or wrongly typed option fails before any data is decoded. A pretrained student is built later only
    (building it would read its weights)."""
    if cfg.student.overrides.get("pretrained"):
        return
    try:
        with torch.device("meta"):
            build_student(cfg, 2)
    except (ConfigError, TypeError, ValueError) as e:
        raise ConfigError(f"student.overrides ({cfg.student.name}): {e}") from None
    except Exception as e:  # noqa: BLE001 - a preset that cannot be built on meta (it reads values): built later
        logger.debug("student %s not checked on the meta device (%s); it is checked when built", cfg.student.name, e)


def expected_class_names(cfg: DistillConfig) -> list[str]:
    """The run's class list as the data will give it, from a scan of the file names (nothing is decoded)."""
    if cfg.toy is not None:
        return [f"class{i}" for i in range(cfg.toy.num_classes)]
    from emodistill.core.data.names import labelled_clips

    return labelled_clips(cfg.data.root, cfg.data.format, cfg.data.classes, cfg.data.label_map).class_names


def check_teacher_checkpoint(cfg: DistillConfig) -> None:
    """`teacher.checkpoint` exists, is a teacher (not a student), and knows the data's classes."""
    key = "teacher.checkpoint"
    try:
        meta = read_meta(cfg.teacher.checkpoint)
    except CheckpointError as e:
        raise ConfigError(f"{key}: {e}") from None
    if meta.get("family") != "teacher":
        raise ConfigError(f"{key}: {cfg.teacher.checkpoint} is a {meta.get('family')!r} checkpoint, not a teacher "
                          "(distillation needs a fine-tuned teacher: `emodistill teacher train --config ...` "
                          "writes one to <output_dir>/best)")
    names = expected_class_names(cfg)
    have = list(meta.get("class_names") or [])
    if names and have != names:
        raise ConfigError(f"{key}: {cfg.teacher.checkpoint} was trained on {len(have)} classes {have}, the data "
                          f"has {len(names)} {names}; fine-tune a teacher on these classes (or set data.classes / "
                          "data.label_map to the teacher's)")


def preflight(cfg: DistillConfig, resume: bool = False, force: bool = False) -> list[str]:
    """What can be checked before any data is decoded: registered names, the teacher checkpoint's metadata, and
    whether output_dir may be written (-> the previous run's files that --force moves aside)."""
    from emodistill.distill.losses import LOSSES

    if resume and force:
        raise ValueError("--resume continues the run in output_dir, --force starts it over: give one of them")
    from emodistill.core.model import list_models

    models = [("student.name", cfg.student.name, "student")]
    if cfg.teacher.name and not cfg.teacher.checkpoint:
        models.append(("teacher.name", cfg.teacher.name, "teacher"))
    for key, name, role in models:
        _import_models(role)
        if name not in list_models(role=role):
            raise ConfigError(f"{key}: unknown {role} {name!r}; available: {', '.join(list_models(role=role))}")
    check_student_options(cfg)
    for term, sec in cfg.distill.losses.items():
        if (sec.loss or term) not in LOSSES:
            raise ConfigError(f"distill.losses.{term}: unknown loss {sec.loss or term!r}; available: "
                              f"{', '.join(LOSSES.names())} (set `loss:` to one of them)")
        check_loss_args(term, sec.loss or term, sec.args)
    if cfg.teacher.checkpoint and cfg.distill.kd:
        check_teacher_checkpoint(cfg)  # a missing, incomplete or mismatched teacher fails now, not after the data
    if resume:
        latest_state(Path(cfg.output_dir) / "state")  # a torn or misdirected latest.json fails now
    return check_run_folder(cfg.output_dir, resume=resume, force=force)


def build_distiller(cfg: DistillConfig, train_ds, preprocess: Preprocess) -> tuple[Distiller, dict]:
    """The student (built first), the teacher (when a loss term needs one) and the loss terms ->
    (distiller, {"teacher", "teacher_hash", "with_teacher", "clean", "live_clean"})."""
    names, num_classes = list(train_ds.class_names), train_ds.num_classes
    with_teacher = cfg.distill.kd and any(s.enabled and needs_teacher(s.loss or n)
                                          for n, s in cfg.distill.losses.items())
    # the student first: loading a teacher builds (random-init) modules too, and the KD and CE-only arms of
    # one seed must start from the same student weights to be a paired comparison
    student = build_student(cfg, num_classes)
    teacher, teacher_hash = (load_teacher(cfg, names, preprocess) if with_teacher else (None, None))
    # teacher_view "clean": the teacher's targets come from the un-augmented clip (meaningful only where
    # the train split augments; otherwise every view is the clean clip already)
    clean = cfg.distill.teacher_view == "clean" and getattr(train_ds, "augment", False)
    live_clean = clean and teacher is not None and not cfg.distill.cache  # the loader also reads the clean clip
    distiller = Distiller(student, teacher, build_terms(cfg, student, teacher),
                          teacher_inputs=clean_teacher_inputs if live_clean else av_inputs_full)
    return distiller, {"teacher": teacher, "teacher_hash": teacher_hash, "with_teacher": with_teacher,
                       "clean": clean, "live_clean": live_clean}


def evaluate_teacher(cfg: DistillConfig, accelerator, teacher: torch.nn.Module | None, val_loader, test_loader,
                     num_classes: int) -> dict:
    """Move the frozen teacher to the device (never wrapped for gradient sync) and, with train.eval_teacher,
    evaluate it like the student's final test: what the teacher knows bounds what KD can transfer."""
    if teacher is None:
        return {}
    teacher.to(accelerator.device)
    if not cfg.train.eval_teacher:
        return {}
    metrics = evaluate_splits(teacher, accelerator, val_loader, test_loader, num_classes,
                              eval_missing=cfg.train.eval_missing)
    logger.info("teacher: %s", ", ".join(f"{k} acc {v['accuracy']:.4f}" for k, v in metrics.items()))
    return metrics


def build_train_loader(cfg: DistillConfig, accelerator, distiller: Distiller, train_ds, context: dict,
                       setup: dict) -> tuple[Dataset, DataLoader, dict, dict]:
    """Teacher-output cache (then the distiller drops its teacher), the semi-supervised regime and the
    seeded loader -> (train items, loader (not yet prepared), regime, cache statistics)."""
    collate, cache_info = None, {}
    if setup["teacher"] is not None and cfg.distill.cache:
        collate, cache_info = cache_teacher_outputs(cfg, accelerator, distiller, setup["teacher_hash"], train_ds,
                                                    context, view=CLEAN_VIEW if setup["clean"] else None)
        distiller.set_teacher(None)  # every target comes from the cache now
    train_items = CleanTeacherView(train_ds) if setup["live_clean"] else train_ds
    # semi-supervised regime: the KD arm gets every clip (the unlabelled ones with teacher targets only), the
    # CE-only arm the labelled clips alone
    train_items, regime = semi_supervised(train_items, train_ds, cfg.distill.label_fraction, cfg.seed,
                                          with_teacher=setup["with_teacher"],
                                          matched_steps=cfg.distill.baseline_steps == "matched")
    logger.info("regime: %d labelled + %d unlabelled train clips (label fraction %g)%s", regime["labelled_clips"],
                regime["unlabelled_clips"], regime["label_fraction"],
                f", labelled clips x{regime['repeats']} per epoch" if regime["repeats"] > 1 else "")
    # a private generator: DataLoader iterators must not consume the global RNG (exact resume)
    loader = DataLoader(train_items, batch_size=cfg.train.batch_size, sampler=EpochShuffle(len(train_items), cfg.seed),
                        drop_last=True, num_workers=cfg.train.num_workers, collate_fn=collate,
                        generator=torch.Generator().manual_seed(cfg.seed))
    return train_items, loader, regime, cache_info


def save_best(best_dir: Path, core: Distiller, preprocess: Preprocess, names: list[str], extra: dict,
              weights: dict | None = None) -> None:
    """The best student as a checkpoint, its loss modules (projectors) beside it. `weights`: the distiller's full
    state dict when it is sharded (emodistill.core.sharding.full_state_dict); default the modules' own."""
    student_sd, heads_sd = None, core.criteria.state_dict() if weights is None else None
    if weights is not None:
        student_sd, heads_sd = ({k[len(p):]: v for k, v in weights.items() if k.startswith(p)}
                                for p in ("student.", "criteria."))
    save_checkpoint(best_dir, core.student, preprocess=preprocess, class_names=names, extra=extra,
                    state_dict=student_sd)
    heads = {k: v.detach().cpu().contiguous() for k, v in heads_sd.items()}
    if heads:  # projectors: trained with the student, kept beside it, never exported
        with atomic_path(best_dir / HEADS) as tmp:
            save_file(heads, str(tmp))


def train(cfg: DistillConfig, resume: bool = False, command: str = "", force: bool = False) -> dict:
    """Run a distillation; returns the metrics also written to `<output_dir>/metrics.json`. output_dir is locked
    from the folder check to the end of the run (emodistill.core.lock; rank 0 only): a second writer is refused."""
    from emodistill.core.lock import folder_lock

    with folder_lock(cfg.output_dir, what="run", command=command or None):
        return _train(cfg, resume, command, force)


@dataclass
class _Run:
    """The parts of one distillation that `_prepare` builds and the loop's steps share."""

    accelerator: Any
    distiller: Distiller        # as prepared by accelerate (DDP-wrapped on several processes)
    core: Distiller             # the same, unwrapped: what is saved, evaluated and weighted
    optimizer: Any
    scheduler: Any
    train_items: Dataset
    train_loader: DataLoader
    val_loader: DataLoader
    test_loader: DataLoader
    preprocess: Preprocess
    names: list[str]
    num_classes: int
    setup: dict                 # build_distiller's: teacher, teacher_hash, with_teacher, clean, live_clean
    regime: dict
    cache_info: dict
    teacher_metrics: dict
    n_student: int
    n_heads: int
    state_root: Path
    best_dir: Path
    config_hash: str


def _train(cfg: DistillConfig, resume: bool, command: str, force: bool) -> dict:
    run = _prepare(cfg, resume, force)
    step, start_epoch, skip, partial, book = _resume_point(cfg, run, resume)
    start = time.perf_counter()
    for epoch in range(start_epoch, cfg.train.epochs):
        if book["stopped"]:
            break
        step, batch_idx, sums, seen, epoch_seconds = _train_one_epoch(cfg, run, book, epoch, step, skip, partial)
        skip, partial = 0, {}
        _evaluate_and_save(cfg, run, book, epoch, step, sums, seen, epoch_seconds)
        _save_state(run, book, step, epoch, batch_idx, epoch_done=True)
    train_seconds = time.perf_counter() - start
    return finish_run(run.accelerator, Path(cfg.output_dir), _final_metrics(cfg, run, book, train_seconds, command))


def _prepare(cfg: DistillConfig, resume: bool, force: bool) -> _Run:
    """The checks before any data is decoded (`preflight`), the accelerator (the previous run moved aside with
    --force), data, distiller (student, teacher, loss terms), the teacher's evaluation and cache, loaders, AdamW
    and its schedule, prepared by accelerate; a teacher whose outputs are cached is freed before training."""
    from accelerate.utils import DistributedDataParallelKwargs

    previous = preflight(cfg, resume, force)
    tc, out = cfg.train, Path(cfg.output_dir)
    accelerator = build_accelerator(tc, out,
                                    kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    if force and previous and accelerator.is_main_process:
        move_aside(out, previous)
    accelerator.wait_for_everyone()
    seed_everything(cfg.seed)

    splits, preprocess, context = build_data(cfg, accelerator)
    train_ds, val_ds, test_ds = splits["train"], splits["val"], splits["test"]
    names, num_classes = list(train_ds.class_names), train_ds.num_classes
    logger.info("train/val/test clips: %d/%d/%d, %d classes", len(train_ds), len(val_ds), len(test_ds), num_classes)
    distiller, setup = build_distiller(cfg, train_ds, preprocess)
    n_student = sum(p.numel() for p in distiller.student.parameters())
    n_heads = sum(p.numel() for p in distiller.criteria.parameters())
    logger.info("student %s: %.3fM parameters; loss modules (projectors): %d; terms: %s", cfg.student.name,
                n_student / 1e6, n_heads, {n: repr(w) for n, w in distiller.weights.items()})

    val_loader = DataLoader(val_ds, batch_size=tc.eval_batch_size, num_workers=tc.num_workers)
    test_loader = DataLoader(test_ds, batch_size=tc.eval_batch_size, num_workers=tc.num_workers)
    val_loader, test_loader = accelerator.prepare(val_loader, test_loader)
    teacher_metrics = evaluate_teacher(cfg, accelerator, setup["teacher"], val_loader, test_loader, num_classes)
    train_items, train_loader, regime, cache_info = build_train_loader(cfg, accelerator, distiller, train_ds, context,
                                                                       setup)
    if distiller.teacher is None:
        setup["teacher"] = None  # cached: free the teacher before training
        gc.collect()
    # fsdp: the student (evaluated on its own) is a unit of its own, before the optimiser sees the parameters
    distiller = shard_model(distiller, accelerator, tc.sharding, units=(distiller.student,))
    optimizer = torch.optim.AdamW(split_decay(distiller.named_parameters(), tc.lr, tc.weight_decay), lr=tc.lr,
                                  betas=tc.betas)
    distiller, optimizer, train_loader = prepare_with_model(accelerator, distiller, optimizer, train_loader)
    core: Distiller = accelerator.unwrap_model(distiller)
    scheduler = build_scheduler(optimizer.optimizer, tc, len(train_loader))
    accelerator.init_trackers("distill", config=flat_config(cfg.model_dump(mode="json")))
    # where the run lives is not part of what it computes: a moved run folder resumes without a warning; the
    # teacher-only lr scales are always unset here (and absent from states written before they existed)
    config_hash = stable_hash(cfg.model_dump(mode="json", exclude={  # sharding: a state fits its own layout only
        "train": {"epochs", "encoder_lr_scale", "backbone_lr_scale", "sharding"}, "output_dir": True}))
    return _Run(accelerator, distiller, core, optimizer, scheduler, train_items, train_loader, val_loader, test_loader,
                preprocess, names, num_classes, setup, regime, cache_info, teacher_metrics, n_student, n_heads,
                out / "state", out / "best", config_hash)


def _resume_point(cfg: DistillConfig, run: _Run, resume: bool) -> tuple[int, int, int, dict, dict]:
    """Seed this process's dropout streams, then (--resume) restore the latest state over them -> (step, epoch,
    batch to skip in it, the epoch's running sums so far, keep-best book)."""
    seed_everything(cfg.seed + run.accelerator.process_index)  # per-process dropout / modality-dropout streams
    at = resume_training(run.state_root, run.accelerator, model=run.core, optimizer=run.optimizer,
                         scheduler=run.scheduler, config_hash=run.config_hash) if resume else None
    if at:
        return at["step"], at["epoch"], at["batch"], at["partial"], at["book"]
    return 0, 0, 0, {}, new_book()


def _save_state(run: _Run, book: dict, step: int, epoch: int, batch: int, epoch_done: bool,
                partial: dict | None = None) -> None:
    save_training_state(run.state_root, run.accelerator, model=run.core, optimizer=run.optimizer,
                        scheduler=run.scheduler, position={"step": step, "epoch": epoch, "batch": batch,
                                                           "epoch_done": epoch_done, "partial": partial or {}},
                        book=book, config_hash=run.config_hash)


def _train_one_epoch(cfg: DistillConfig, run: _Run, book: dict, epoch: int, step: int, skip: int,
                     partial: dict) -> tuple[int, int, dict, int, float]:
    """One pass over the train loader, from batch `skip` on (a resumed mid-epoch state, whose running sums are
    `partial`) -> (step, batches done, {loss term: sum over samples}, samples seen, seconds)."""
    tc, accelerator, distiller = cfg.train, run.accelerator, run.distiller
    run.train_items.set_epoch(epoch)
    loader = accelerator.skip_first_batches(run.train_loader, skip) if skip else run.train_loader
    loader.set_epoch(epoch)  # accelerate re-applies its own epoch counter to the sampler on each pass
    batch_idx = skip
    distiller.train()
    # a resumed mid-epoch state carries the epoch's running sums, so the logged means are exact too
    sums, seen = defaultdict(float, partial.get("sums", {})), partial.get("seen", 0)
    t0 = time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{tc.epochs}", disable=not accelerator.is_local_main_process,
               leave=False)
    for batch in bar:
        with accelerator.accumulate(distiller):
            batch["modality_mask"] = modality_dropout_mask(batch["video"].shape[0], tc.modality_dropout,
                                                           accelerator.device)
            res = distiller(batch, step=step)
            accelerator.backward(res["loss"])
            optimizer_step(accelerator, distiller, run.optimizer, run.scheduler, tc.max_grad_norm)
        batch_idx += 1
        n = batch["label"].shape[0]
        seen += n
        for k, v in res.items():
            if k != "logits":
                sums[k] += v.item() * n
        bar.set_postfix(loss=f"{sums['loss'] / seen:.3f}")
        if accelerator.sync_gradients:
            step += 1
            if step % tc.log_every == 0:
                accelerator.log({**{f"train/{k}": v.item() for k, v in res.items() if k != "logits"},
                                 **{f"weight/{k}": w for k, w in run.core.weights_at(step).items()},
                                 "train/lr": run.scheduler.get_last_lr()[0]}, step=step)
            if tc.save_every_steps and step % tc.save_every_steps == 0 and batch_idx < len(run.train_loader):
                _save_state(run, book, step, epoch, batch_idx, epoch_done=False,
                            partial={"sums": dict(sums), "seen": seen})
    return step, batch_idx, sums, seen, time.perf_counter() - t0


def _evaluate_and_save(cfg: DistillConfig, run: _Run, book: dict, epoch: int, step: int, sums: dict, seen: int,
                       epoch_seconds: float) -> None:
    """The epoch's train means (over processes) and val metrics into the book and the trackers; the student
    (with its projectors) saved when val improved."""
    tc, accelerator = cfg.train, run.accelerator
    main = accelerator.is_main_process
    train_means = {k: accelerator.reduce(torch.tensor(v / max(seen, 1), device=accelerator.device), "mean").item()
                   for k, v in sorted(sums.items())}
    sync_buffers(run.core)  # fsdp: rank 0's buffers everywhere, as DDP has them
    with accelerator.autocast():
        val = evaluate(run.core.student, run.val_loader, run.num_classes, accelerator)
    book["history"].append({"epoch": epoch + 1, "step": step, "epoch_seconds": epoch_seconds,
                            **{f"train_{k}": v for k, v in train_means.items()},
                            **{f"val_{k}": val[k] for k in METRIC_KEYS}})
    accelerator.log({**{f"train/epoch_{k}": v for k, v in train_means.items()},
                     **{f"val/{k}": val[k] for k in METRIC_KEYS}, "time/epoch_seconds": epoch_seconds}, step=step)
    improved = keep_best(book, val[tc.metric], epoch + 1, tc.patience)
    weights = full_state_dict(run.core) if improved else None  # fsdp: gathered on rank 0 (every process joins)
    if improved and main:
        save_best(run.best_dir, run.core, run.preprocess, run.names, {"distill": {
            "epoch": epoch + 1, "val": val, "teacher": cfg.teacher.checkpoint, "kd": run.setup["with_teacher"],
            "regime": run.regime, "teacher_sha256": run.setup["teacher_hash"], "config": cfg.model_dump(mode="json")}},
                  weights)
    if book["stopped"]:
        logger.info("early stopping: no val %s improvement for %d epochs", tc.metric, book["stale"])
    if main:
        logger.info("epoch %d: loss %.4f  val acc %.4f uar %.4f f1 %.4f  (%.1f s)%s", epoch + 1,
                    train_means.get("loss", float("nan")), val["accuracy"], val["uar"], val["macro_f1"],
                    epoch_seconds, "  (best)" if improved else "")


def _final_metrics(cfg: DistillConfig, run: _Run, book: dict, train_seconds: float, command: str) -> dict:
    """The best student's final test (val, test, missing modalities) with the run's facts: metrics.json."""
    core = run.core
    results = final_test(core.student, run.best_dir, run.accelerator, run.val_loader, run.test_loader,
                         run.num_classes, eval_missing=cfg.train.eval_missing,
                         expect={"preprocess": run.preprocess, "class_names": run.names, "family": core.student.family})
    history = book["history"]
    return {"student": cfg.student.name, "teacher": cfg.teacher.checkpoint or cfg.teacher.name,
            "kd": cfg.distill.kd, "seed": cfg.seed, "regime": run.regime, "best_epoch": book["best_epoch"],
            "selected_on": f"val_{cfg.train.metric}", **results, "teacher_metrics": run.teacher_metrics,
            "history": history, "epoch_seconds": [r["epoch_seconds"] for r in history],
            "train_seconds": train_seconds, "cache": run.cache_info, "student_parameters": run.n_student,
            "projector_parameters": run.n_heads, "checkpoint": str(run.best_dir),
            "num_processes": run.accelerator.num_processes, "command": command}


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    from emodistill.core.cli_args import HelpFormatter

    parser = parser or argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    return add_recipe_args(parser, "configs/distill/*.yaml", "--set distill.kd=false --set train.epochs=5",
                           "best/, metrics.json and state/")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(DistillConfig, args.config, args.overrides)
    command = "emodistill distill " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["distill"] \
        else " ".join(shlex.quote(a) for a in sys.argv)
    metrics = train(cfg, resume=args.resume, command=command, force=getattr(args, "force", False))
    t = metrics["test"]
    print(f"best epoch {metrics['best_epoch']}: val acc {metrics['val']['accuracy']:.4f}  test acc {t['accuracy']:.4f}"
          f"  UAR {t['uar']:.4f}  macro-F1 {t['macro_f1']:.4f}  -> {Path(cfg.output_dir) / 'metrics.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from emodistill.core.errors import run_guarded

    args = build_parser().parse_args(argv)
    setup_logging()
    return run_guarded(run, args)


if __name__ == "__main__":
    sys.exit(main())
