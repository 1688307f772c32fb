"""`emodistill plan`: does a training recipe fit a GPU? The estimated peak memory of one training step.

    emodistill plan --config lfm2_700m_ravdess --profile rtx3050-desktop-8gb
    emodistill plan --config lfm2_700m_ravdess --profile h200-sxm --gpus 8 --sharding fsdp --json

Teacher fine-tuning (configs/teacher) and distillation (configs/distill) recipes. The recipe's model classes are
built at their real sizes under FakeTensorMode (no GPU, no weights) and one steady-state step is traced op by op
(emodistill.core.memory): its loss, AdamW, clipping, accumulation, checkpointing, frozen parts and autocast as
`train.mixed_precision` resolves on the profile's GPU. Every figure is an estimate (docs/teacher.md, "Will it fit?").
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch

from ..core.config import KIND_NAMES, ConfigError, load_config, recipe_kind, resolve_config_path
from ..core.memory import (TAGS, MemoryTracer, cuda_semantics, fake_mode, fake_module, fsdp_units,
                           measure_step, optimizer_tensors, training_step, warm_optimizer)
from ..core.utils import int_at_least

logger = logging.getLogger(__name__)

MIB, GIB, SHARDING = 2 ** 20, 2 ** 30, ("none", "ddp", "fsdp")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
ASSUMPTIONS = [
    "a steady-state step: AdamW state exists; with grad_accum > 1 the gradients of the earlier micro-steps are held",
    "AdamW and gradient clipping use the foreach kernels (the CUDA default): one temporary the size of the largest "
    "parameter group during the step",
    "ddp: each GPU holds the whole model; DDP's gradient buckets (gradient_as_bucket_view=False, the default) hold "
    "one more copy of every trainable gradient",
    "fsdp (FSDP2): parameters, gradients and optimizer state divided by the GPU count; each layer of a ModuleList is a "
    "unit, the rest is the root (kept unsharded through the step); two units' parameters in flight (one "
    "prefetched) and one unit's unsharded gradients before its reduce-scatter; a live teacher is not sharded",
    "GPU memory = profile memory_gb x 2^30; CUDA context = profile vram.cuda_context_mb + vram.workspace_mb; "
    "allocator margin = profile vram.allocator_margin x the tensors' peak (caching-allocator rounding and "
    "fragmentation)",
    "not covered: evaluation passes, the teacher-output cache fill before distillation, data loader pinned memory",
    "teacher encoder_cache: the step reads the frozen encoders' stored outputs; their weights stay resident (the "
    "cache's pre-pass and evaluation run them, not covered)",
]

# part of the plan: (label, the tracer's TAGS it sums; none: added per GPU)
PARTS = {"params_trainable": ("parameters, trainable", ("params_trainable",)),
         "params_frozen": ("parameters, frozen", ("params_frozen",)), "buffers": ("buffers", ("buffers",)),
         "gradients": ("gradients", ("gradients",)),
         "optimizer_state": ("optimizer state (AdamW)", ("optimizer_state",)),
         "optimizer_temp": ("optimizer step temporaries", ("optimizer_temp",)),
         "activations": ("activations (+ batch, backward)", ("activations", "backward_temp", "inputs")),
         "live_teacher": ("live teacher (no output cache)", ("teacher_params", "teacher_activations")),
         "ddp_buckets": ("DDP gradient buckets", ()), "fsdp_buffers": ("FSDP unsharded units", ()),
         "cuda_context": ("CUDA context + workspace", ()), "allocator_margin": ("allocator margin", ())}

def load_recipe(config: str, overrides: list[str] | None = None):
    """(kind, config object) of a teacher or distillation recipe (a packaged name or a YAML path)."""
    import yaml

    path = resolve_config_path(config)
    try:
        raw = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the recipe ({type(e).__name__}: {e})") from None
    kind, _ = recipe_kind(path, raw if isinstance(raw, dict) else None)
    if kind == "teacher":
        from ..teacher.train import TeacherTrainConfig as cls
    elif kind == "distill":
        from ..distill.config import DistillConfig as cls
    else:
        what = KIND_NAMES[kind][0] if kind else "not a recipe emodistill knows"
        raise ConfigError(f"{config}: `emodistill plan` takes a teacher fine-tuning or distillation recipe "
                          f"(configs/teacher, configs/distill); this is {what}")
    return kind, load_config(cls, path, overrides)


def _teacher_model(cfg, num_classes: int):
    """The fine-tuned teacher of a teacher recipe, with random weights (`pretrained=False`: same architecture)."""
    from ..teacher import TEACHERS, create_teacher

    if cfg.model.name not in TEACHERS:
        raise ConfigError(f"model.name: unknown teacher {cfg.model.name!r}; available: {', '.join(TEACHERS.names())}")
    return create_teacher(cfg.model.name, **{**cfg.model.overrides, "num_classes": num_classes, "pretrained": False})


def _distill_teacher(cfg, num_classes: int):
    """The teacher a distillation recipe names: its checkpoint's architecture, or the packaged teacher recipe
    that writes that checkpoint, or an untrained preset (`teacher.name`)."""
    import yaml

    from ..core.checkpoint import META, read_meta
    from ..core.config import packaged_configs
    from ..core.model import family_from_config, model_tags
    from ..distill.run import _import_models, create_for_run

    _import_models("teacher")
    t = cfg.teacher
    if not t.checkpoint:
        extra = {"pretrained": False} if model_tags(t.name)["family"] == "teacher" else {}
        return create_for_run(cfg, "teacher", t.name, num_classes, {**t.overrides, **extra})
    ck = Path(t.checkpoint)
    if (ck / META).is_file():
        meta = read_meta(ck)
        return family_from_config(meta["family"])({**meta["model"], "num_classes": num_classes})
    for name, f in packaged_configs().items():
        out = (yaml.safe_load(f.read_text()) or {}).get("output_dir") if name.startswith("teacher/") else None
        if out and Path(out) / "best" == ck:
            logger.info("teacher.checkpoint %s does not exist yet: sizing the teacher of %s, which writes it", ck, name)
            return _teacher_model(load_recipe(str(f))[1], num_classes)
    raise ConfigError(f"teacher.checkpoint: {ck} does not exist and no packaged teacher recipe writes it; the plan "
                      "needs the teacher's architecture (give an existing checkpoint, or --set teacher.name=PRESET)")


def _num_classes(cfg) -> int:  # the data is not scanned: the recipe's classes, else the format's (the head's size)
    toy, data = getattr(cfg, "toy", None), cfg.data
    return toy.num_classes if toy else len(data.classes) if data.classes else 6 if data.format == "cremad" else 8


class Planner:
    """A recipe's models built once (fake by default; `fake=False`: real random-init tensors on the CPU, for the
    validation benchmark), and its training step at any per-GPU batch size."""

    def __init__(self, config: str, overrides: list[str] | None = None, fake: bool = True):
        from ..core.optim import split_decay

        self.kind, self.cfg = load_recipe(config, overrides)
        self.path = str(resolve_config_path(config))
        self.fake, self.mode = fake, fake_mode() if fake else torch.device("cpu")
        self.teacher, self.cached = None, {}
        tc, n = self.cfg.train, _num_classes(self.cfg)
        if self.kind == "teacher":
            self.model = self._build(lambda: _teacher_model(self.cfg, n)).train()
            enc = 1.0 if tc.encoder_lr_scale is None else tc.encoder_lr_scale
            bb = 1.0 if tc.backbone_lr_scale is None else tc.backbone_lr_scale
            groups = self.model.param_groups(tc.lr, tc.weight_decay, {"vision": enc, "audio": enc, "backbone": bb})
            self.name = self.cfg.model.name
        else:
            groups = split_decay(self._build_distiller(n).named_parameters(), tc.lr, tc.weight_decay)
            self.name = f"{self.cfg.student.name} (student)"
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        with self.mode:
            self.optimizer = torch.optim.AdamW(groups, lr=tc.lr, betas=tc.betas, foreach=True)
            warm_optimizer(self.optimizer, self.params)
        self.units = fsdp_units(self.model)
        self._traces: dict[tuple, dict] = {}

    def _build(self, factory):
        """`factory()` under the fake mode; a model whose construction reads values is built for real, then faked."""
        from torch._subclasses.fake_tensor import (DataDependentOutputException, DynamicOutputShapeException,
                                                   UnsupportedOperatorException)

        try:
            with self.mode:
                return factory()
        except (DataDependentOutputException, DynamicOutputShapeException, UnsupportedOperatorException) as e:
            logger.debug("built for real, then faked (%s: %s)", type(e).__name__, e)
            return fake_module(factory(), self.mode)

    def _build_distiller(self, n: int):
        from ..distill.core import Distiller
        from ..distill.losses import needs_teacher
        from ..distill.run import build_student, build_terms, cached_fields

        cfg = self.cfg
        if "pretrained" in cfg.student.overrides:  # the architecture only: never read a pretrained frame encoder
            cfg = cfg.model_copy(update={"student": cfg.student.model_copy(
                update={"overrides": {**cfg.student.overrides, "pretrained": False}})})
        student = self._build(lambda: build_student(cfg, n))
        teacher = None
        if cfg.distill.kd and any(s.enabled and needs_teacher(s.loss or k) for k, s in cfg.distill.losses.items()):
            teacher = self._build(lambda: _distill_teacher(cfg, n))
        live = teacher if teacher is not None and not cfg.distill.cache else None
        with self.mode:
            self.model = Distiller(student, live, build_terms(cfg, student, teacher)).train()
            self.teacher = live
            if teacher is not None and live is None:  # the cache's fp16 outputs of one clip, per field the losses read
                with torch.no_grad():
                    out = teacher(*self._inputs(1)[:2])
                self.cached = {k: out[k].shape[1:] for k in ["logits", *cached_fields(self.model)]}
        return self.model

    def resolve_precision(self, profile=None) -> str:
        """fp32 / bf16 / fp16 as `train.mixed_precision` resolves on the profile's GPU (None: on this CPU)."""
        choice = self.cfg.train.mixed_precision
        if choice == "auto":  # as emodistill.core.train.mixed_precision decides on that device
            return "fp32" if profile is None else "bf16" if float(profile.gpu.compute_capability or 8) >= 8 else "fp16"
        return {"no": "fp32"}.get(choice, choice)

    def _inputs(self, b: int):
        if self.kind == "distill" and self.cfg.toy is not None:
            t, h, n = self.cfg.toy.frames, self.cfg.toy.image_size, self.cfg.toy.samples
        else:
            p = self.cfg.data.preprocess
            t, h, n = p.num_frames, p.image_size, p.num_samples
        return torch.rand(b, t, 3, h, h), torch.randn(b, n), torch.randint(0, _num_classes(self.cfg), (b,))

    def _encoded(self, b: int) -> dict | None:
        """A teacher recipe with `encoder_cache.enabled`: a batch of the cache's rows (fp32), which the step reads
        instead of running the frozen encoders (their weights stay resident, for evaluation); else None."""
        ec = getattr(self.cfg, "encoder_cache", None) if self.kind == "teacher" else None
        if ec is None or not ec.enabled:
            return None
        m = self.model
        return {"visual": torch.randn(b, m.config.num_segments, m.vision.dim),
                "audio": torch.randn(b, m.config.num_segments, m.audio.dim)}

    def step(self, b: int, precision: str = "fp32"):
        """(closure of one forward + loss, batch tensors) at per-GPU batch `b`, autocast as `precision`."""
        from ..core.evaluate import modality_dropout_mask, modality_mask

        video, audio, label = self._inputs(b)
        dtype, tc = PRECISIONS[precision], self.cfg.train
        cast = lambda: torch.autocast("cpu", dtype=dtype, enabled=dtype is not None)  # noqa: E731
        fp32 = lambda out: {k: v.float() if v.is_floating_point() else v for k, v in out.items()}  # noqa: E731
        if self.kind == "teacher":  # teacher/train.py's loss
            cfg = self.cfg
            mask = (modality_mask(b, "video" if cfg.modality == "audio" else "audio") if cfg.modality != "both"
                    else modality_dropout_mask(b, tc.modality_dropout))
            enc = self._encoded(b)
            video, audio = (None, None) if enc else (video, audio)
            batch = [video, audio, label, mask, *(enc or {}).values()]

            def forward_loss():
                from ..teacher.train import teacher_loss

                with cast():  # accelerate: fp32 outputs
                    res = fp32(self.model(video, audio, modality_mask=mask, **({"encoded": enc} if enc else {})))
                return teacher_loss(cfg, res, label, mask), res
            return forward_loss, batch
        inputs = {"video": video, "audio": audio, "label": label,
                  "modality_mask": modality_dropout_mask(b, tc.modality_dropout)}
        if self.cached:
            inputs["teacher"] = {k: torch.randn(b, *s).half() for k, s in self.cached.items()}

        def forward_loss():  # distill/run.py: the Distiller's forward under autocast, every ramped term at full weight
            with cast():
                out = self.model(inputs, step=10 ** 9)
            return out["loss"], out
        return forward_loss, [*inputs.values(), *inputs.get("teacher", {}).values()]

    def trace(self, b: int, precision: str = "fp32", cuda: bool = True) -> dict:
        """The traced step at batch `b`: {"timeline": bytes per op x TAGS, "phases": the phase of each row}."""
        key = (b, precision, cuda)
        if key not in self._traces:
            tracer = MemoryTracer()
            with self.mode, (cuda_semantics() if cuda else torch.device("cpu")):
                forward_loss, batch = self.step(b, precision)
                hooks = tracer.tag_forward(self.teacher, "teacher_activations") if self.teacher is not None else []
                with tracer:
                    tracer.track_module(self.model)
                    if self.teacher is not None:
                        tracer.track_module(self.teacher, teacher=True)
                    tracer.track(batch, "inputs")  # None entries (no modality mask) are skipped
                    tracer.track(optimizer_tensors(self.optimizer), "optimizer_state")
                    tracer.reset_peak()
                    training_step(forward_loss, self.optimizer, self.params, grad_accum=self.cfg.train.grad_accum,
                                  max_grad_norm=self.cfg.train.max_grad_norm, tracer=tracer)
                for h in hooks:
                    h.remove()
            self._traces[key] = {"timeline": np.asarray(tracer.timeline, dtype=np.float64), "phases": tracer.phases}
        return self._traces[key]

    def measure(self, b: int, precision: str = "fp32") -> int:
        """Peak bytes of the same step run for real on this CPU (a planner built with `fake=False`)."""
        forward_loss, batch = self.step(b, precision)
        held = [*self.model.parameters(), *self.model.buffers(), *batch]
        held += [*self.teacher.parameters(), *self.teacher.buffers()] if self.teacher is not None else []
        return measure_step(forward_loss, self.optimizer, self.params, held, grad_accum=self.cfg.train.grad_accum,
                            max_grad_norm=self.cfg.train.max_grad_norm)

    def _weights(self, gpus: int, sharding: str) -> tuple[np.ndarray, float]:
        """(factor per TAG, constant bytes) turning the traced single-GPU step into one GPU's share."""
        w = dict.fromkeys(TAGS, 1.0)
        if sharding == "fsdp":
            w.update(dict.fromkeys(("params_trainable", "params_frozen", "gradients", "optimizer_state",
                                    "optimizer_temp"), 1 / gpus))
            unit, unit_grads, root = self.units
            return np.array([w[t] for t in TAGS]), root * (1 - 1 / gpus) + 2 * unit + unit_grads
        buckets = sum(p.nbytes for p in self.params) if sharding == "ddp" and gpus > 1 else 0
        return np.array([w[t] for t in TAGS]), float(buckets)

    def per_gpu(self, b: int, profile=None, gpus: int = 1, sharding: str = "none") -> dict:
        """Peak bytes per GPU and its parts: the traced step, shared out as `sharding` says, + the profile's CUDA
        context and allocator margin (profile None: the step as it runs on this CPU, tensors only)."""
        precision = self.resolve_precision(profile)
        tr = self.trace(b, precision, cuda=profile is not None)
        w, const = self._weights(gpus, sharding)
        per_event = tr["timeline"] @ w
        at = int(per_event.argmax())
        row = dict(zip(TAGS, tr["timeline"][at] * w))
        tensors = float(per_event.max()) + const
        vram = profile.vram if profile is not None else None
        parts = {k: sum(row[t] for t in tags) for k, (_, tags) in PARTS.items() if tags}
        parts.update(ddp_buckets=const if sharding == "ddp" else 0.0, fsdp_buffers=const if sharding == "fsdp" else 0.0,
                     cuda_context=(vram.cuda_context_mb + vram.workspace_mb) * MIB if vram else 0.0,
                     allocator_margin=tensors * vram.allocator_margin if vram else 0.0)
        parts = {k: int(round(v)) for k, v in parts.items()}
        return {"step_bytes": int(round(tensors)), "peak_bytes_per_gpu": sum(parts.values()), "parts": parts,
                "precision": precision, "peak_phase": tr["phases"][at]}

    def max_batch(self, profile, gpus: int = 1, sharding: str = "none", limit: int = 1 << 16) -> int:
        """The largest per-GPU batch whose estimated peak fits (0: not even 1). Each op's bytes grow linearly with the
        batch: two traces predict it, traces at it and one above confirm it (a walk corrects a miss)."""
        vram = profile.gpu.memory_gb * GIB
        fits = lambda b: self.per_gpu(b, profile, gpus, sharding)["peak_bytes_per_gpu"] <= vram  # noqa: E731
        precision, (w, const) = self.resolve_precision(profile), self._weights(gpus, sharding)
        b1, b2 = 2, max(8, self.cfg.train.batch_size)
        y1, y2 = (self.trace(b, precision)["timeline"] @ w for b in (b1, b2))
        guess = 1
        if y1.shape == y2.shape:  # the same ops at both sizes: event-wise lines
            room = (vram - (profile.vram.cuda_context_mb + profile.vram.workspace_mb) * MIB) / (
                1 + profile.vram.allocator_margin) - const
            slope = (y2 - y1) / (b2 - b1)
            with np.errstate(divide="ignore", invalid="ignore"):
                ends = np.where(slope > 0, b1 + (room - y1) / slope, np.where(y1 <= room, np.inf, -np.inf))
            guess = int(min(max(np.floor(ends.min()), 1), limit))
        lo, hi, step = (guess, None, 1) if fits(guess) else (None, guess, 1)
        while lo is None:  # below the prediction until something fits (0: not even batch 1)
            b = max(hi - step, 0)
            lo, hi, step = (b, hi, step) if b == 0 or fits(b) else (None, b, step * 2)
        while hi is None and lo < limit:  # above it until something does not
            b = min(lo + step, limit)
            lo, hi, step = (b, None, step * 2) if fits(b) else (lo, b, step)
        while hi is not None and hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        return lo

    def parameters(self) -> dict:
        counted = list(self.model.parameters()) + (list(self.teacher.parameters()) if self.teacher is not None else [])
        dtypes = sorted({str(p.dtype).replace("torch.", "") for p in counted})
        return {"trainable": sum(p.numel() for p in self.params),
                "frozen": sum(p.numel() for p in self.model.parameters() if not p.requires_grad),
                "live_teacher": sum(p.numel() for p in self.teacher.parameters()) if self.teacher is not None else 0,
                "dtypes": dtypes}


def plan(config: str, profile: str, gpus: int = 1, sharding: str | None = None, batch_size: int | None = None,
         overrides: list[str] | None = None, planner: Planner | None = None) -> dict:
    """The plan as a JSON-able dict (the keys of `emodistill plan --json`)."""
    from ..export.profiles import load_profile

    prof = load_profile(profile)
    planner = planner or Planner(config, overrides)
    tc = planner.cfg.train
    sharding = sharding or getattr(tc, "sharding", None) or "none"
    if sharding not in SHARDING:
        raise ConfigError(f"sharding {sharding!r}: choose one of {', '.join(SHARDING)}")
    if sharding == "none" and gpus > 1:
        logger.info("%d GPUs without sharding run DDP (accelerate launch --multi_gpu): planning as ddp", gpus)
        sharding = "ddp"
    b = batch_size or tc.batch_size
    est = planner.per_gpu(b, prof, gpus, sharding)
    vram = int(prof.gpu.memory_gb * GIB)
    return {"label": "estimated", "recipe": planner.path, "kind": planner.kind, "model": planner.name,
            "profile": prof.name, "vram_bytes": vram, "gpus": gpus, "sharding": sharding, "batch_per_gpu": b,
            "grad_accum": tc.grad_accum, "effective_batch": b * gpus * tc.grad_accum, "precision": est["precision"],
            "peak_bytes_per_gpu": est["peak_bytes_per_gpu"], "step_bytes": est["step_bytes"],
            "fits": est["peak_bytes_per_gpu"] <= vram, "max_batch_per_gpu": planner.max_batch(prof, gpus, sharding),
            "parts": est["parts"], "peak_phase": est["peak_phase"], "parameters": planner.parameters(),
            "assumptions": ASSUMPTIONS}


def render(p: dict) -> str:
    n = p["parameters"]
    lines = [f"{p['recipe']} ({p['kind']}: {p['model']}) on {p['profile']} ({p['vram_bytes'] / GIB:.1f} GiB), "
             f"{p['gpus']} GPU{'s' if p['gpus'] > 1 else ''}, sharding {p['sharding']}",
             f"parameters: {n['trainable'] / 1e6:.2f}M trainable, {n['frozen'] / 1e6:.2f}M frozen"
             + (f", live teacher {n['live_teacher'] / 1e6:.2f}M" if n["live_teacher"] else "")
             + f" ({', '.join(n['dtypes'])}); precision {p['precision']}",
             f"batch {p['batch_per_gpu']} per GPU x {p['gpus']} GPU x grad_accum {p['grad_accum']} = "
             f"{p['effective_batch']} clips per optimizer step",
             f"estimated peak per GPU of one training step (at the {p['peak_phase'] or 'start'}):"]
    lines += [f"  {PARTS[k][0]:<34s}{v / MIB:>12,.1f} MiB" for k, v in p["parts"].items() if v]
    lines.append(f"  {'total (estimated)':<34s}{p['peak_bytes_per_gpu'] / MIB:>12,.1f} MiB of "
                 f"{p['vram_bytes'] / MIB:,.0f} MiB")
    verdict = "FITS" if p["fits"] else "DOES NOT FIT"
    lines.append(f"verdict: {verdict} (estimated); largest per-GPU batch that fits: {p['max_batch_per_gpu']} "
                 "(estimated)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    result = plan(args.config, args.profile, args.gpus, args.sharding, args.batch_size, args.overrides)
    print(json.dumps(result, indent=1) if args.json else render(result))
    return 0


def register(sub) -> None:
    p = sub.add_parser("plan", help="estimated peak GPU memory of a training recipe: fits or not, largest batch",
                       description="Estimate the peak memory per GPU of one training step of a recipe, say whether "
                       "it fits\nthe profile's GPU, and find the largest per-GPU batch that does.\n\n"
                       + __doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, metavar="RECIPE",
                   help="teacher or distillation recipe: packaged name (lfm2_700m_ravdess) or YAML path")
    p.add_argument("--profile", required=True, metavar="PROFILE",
                   help="hardware profile: packaged name (emodistill profiles) or YAML path")
    p.add_argument("--gpus", type=int_at_least(1), default=1, metavar="N", help="GPUs, one process each (default 1)")
    p.add_argument("--sharding", choices=SHARDING, default=None,
                   help="none (1 GPU; with --gpus > 1 it is ddp), ddp (a full replica per GPU) or fsdp (FSDP2 "
                        "sharding); default none")
    p.add_argument("--batch-size", type=int_at_least(1), default=None, metavar="N",
                   help="per-GPU batch instead of the recipe's train.batch_size")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set model.overrides.freeze_audio=true (repeatable)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=run)


__all__ = ["Planner", "plan", "load_recipe", "render", "register", "ASSUMPTIONS"]
