"""Distillation losses: a registry of small modules, plus loss-weight schedules.

Every loss is called as `loss(student_out, teacher_out, batch) -> scalar`, where the outputs are the
dicts models return (`logits [B,C]`, `features [B,S,D]`, `pooled [B,D]`, `audio_features [B,S,Da]`,
`visual_features [B,S,Dv]`) and `batch` holds at least `label` (int64 [B], -1 = unlabeled). Teacher
outputs may come from the live teacher or from the cache (fp16, possibly top-k logits only:
`logits_topk_values [B,k]`, `logits_topk_indices [B,k]`). The tensor-level functions (`kd_loss`,
`dkd_loss`, `rkd_loss`) are exported for use outside the dict interface.

Learned parts (the feature projectors) are ordinary parameters of the loss module, so they are
trained with the student and saved in its training state, but never exported with it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from emodistill.core.evaluate import unimodal_ce
from emodistill.core.registry import Registry

LOSSES = Registry("loss")
register_loss = LOSSES.register
create_loss = LOSSES.create

IGNORE_LABEL = -1


def needs_teacher(name: str) -> bool:
    """Whether the registered loss `name` reads teacher outputs (its class attribute; unknown -> KeyError)."""
    return bool(getattr(LOSSES.get(name), "needs_teacher", True))


def _need_teacher(name: str, teacher_out: dict | None) -> dict:
    if teacher_out is None:
        raise ValueError(f"loss {name!r} needs teacher outputs, but no teacher (and no cache) is configured")
    return teacher_out


def teacher_logits(teacher_out: dict, num_classes: int) -> torch.Tensor:
    """Full teacher logits [B,C]; from top-k cached logits the others are -inf (zero probability)."""
    if "logits" in teacher_out:
        return teacher_out["logits"].float()
    if "logits_topk_values" in teacher_out:
        vals = teacher_out["logits_topk_values"].float()
        idx = teacher_out["logits_topk_indices"].long()
        full = vals.new_full((vals.shape[0], num_classes), float("-inf"))
        return full.scatter(1, idx, vals)
    raise KeyError(f"teacher outputs have no logits (keys: {sorted(teacher_out)})")


# ---------------------------------------------------------------------------------------------
# tensor-level losses

def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0,
            mask: torch.Tensor | None = None) -> torch.Tensor:
    """KL(softmax(t/T) || softmax(s/T)) * T^2, averaged over the batch (Hinton et al. 2015).

    student_logits, teacher_logits: [B,C] (teacher entries may be -inf: zero teacher probability,
    as for top-k logits). mask: optional bool [B] of rows to use. Returns a scalar.
    """
    t = temperature
    log_p_s = F.log_softmax(student_logits.float() / t, dim=-1)
    p_t = F.softmax(teacher_logits.float() / t, dim=-1)
    # xlogy: 0 * log 0 = 0, so zero-probability (top-k-dropped) classes contribute nothing
    kl = (torch.special.xlogy(p_t, p_t) - p_t * log_p_s).sum(-1)
    if mask is None:
        return kl.mean() * (t * t)
    # a masked mean without boolean indexing: no host sync on the GPU step; 0 when no row is kept
    w = mask.to(kl.dtype)
    return (torch.where(mask, kl, 0.0) * w).sum() / w.sum().clamp(min=1.0) * (t * t)


def dkd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
             alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0) -> torch.Tensor:
    """Decoupled KD (Zhao et al. 2022): alpha * TCKD + beta * NCKD, each a KL at T scaled by T^2.

    TCKD compares the binary (target, rest) probabilities; NCKD the distributions over the non-target
    classes. student_logits, teacher_logits [B,C] (finite); target int64 [B]. Returns a scalar.
    """
    t = temperature
    s, te = student_logits.float() / t, teacher_logits.float() / t
    gt = F.one_hot(target, s.shape[-1]).bool()
    p_s, p_t = F.softmax(s, -1), F.softmax(te, -1)
    b_s = torch.stack([p_s[gt], (p_s * ~gt).sum(-1)], -1).clamp_min(1e-12)
    b_t = torch.stack([p_t[gt], (p_t * ~gt).sum(-1)], -1).clamp_min(1e-12)
    tckd = (b_t * (b_t.log() - b_s.log())).sum(-1).mean() * t * t
    # the target class is pushed out of both softmaxes by a large finite offset (as in the paper's code)
    log_q_s = F.log_softmax(s - 1000.0 * gt, -1)
    q_t = F.softmax(te - 1000.0 * gt, -1)
    nckd = (torch.special.xlogy(q_t, q_t) - q_t * log_q_s).sum(-1).mean() * t * t
    return alpha * tckd + beta * nckd


def _pdist(x: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean distances [B,B] of rows of x [B,D] (zero diagonal, safe gradient)."""
    sq = (x * x).sum(-1)
    d2 = (sq[:, None] + sq[None, :] - 2 * x @ x.t()).clamp_min(1e-12)
    d = d2.sqrt()
    return d * (1 - torch.eye(len(x), device=x.device, dtype=x.dtype))


def rkd_loss(student: torch.Tensor, teacher: torch.Tensor, distance_weight: float = 25.0,
             angle_weight: float = 50.0) -> torch.Tensor:
    """Relational KD (Park et al. 2019) on embeddings student [B,Ds], teacher [B,Dt] (dims may differ).

    Distance term: smooth-L1 between pairwise distance matrices, each divided by its mean off-diagonal
    distance. Angle term: smooth-L1 between the cosines of all triplet angles. Returns a scalar.
    """
    s, t = student.float().flatten(1), teacher.float().flatten(1)
    b = s.shape[0]
    if b < 2:
        return s.sum() * 0.0
    off = ~torch.eye(b, dtype=torch.bool, device=s.device)
    ds, dt = _pdist(s), _pdist(t)
    ds = ds / ds[off].mean().clamp_min(1e-12)
    dt = dt / dt[off].mean().clamp_min(1e-12)
    loss = distance_weight * F.smooth_l1_loss(ds[off], dt[off])
    if angle_weight and b >= 3:
        def angles(x):
            e = F.normalize(x[None, :, :] - x[:, None, :], p=2, dim=-1)  # [B,B,D] unit vectors i->j
            return torch.bmm(e, e.transpose(1, 2)).flatten()             # cos of angle at i for (j, k)
        loss = loss + angle_weight * F.smooth_l1_loss(angles(s), angles(t))
    return loss


# ---------------------------------------------------------------------------------------------
# registered loss modules

@register_loss(name="ce")
class CrossEntropy(nn.Module):
    """Cross-entropy on student logits [B,C] vs batch['label'] [B] with label smoothing.

    Labels equal to -1 (unlabeled transfer clips) are ignored; a batch without any label gives 0.
    """

    needs_teacher = False

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, student_out: dict, teacher_out: dict | None, batch: dict) -> torch.Tensor:
        logits, label = student_out["logits"].float(), batch["label"].long()
        valid = label != IGNORE_LABEL
        if not bool(valid.any()):
            return logits.sum() * 0.0
        return F.cross_entropy(logits[valid], label[valid], label_smoothing=self.label_smoothing)


@register_loss(name="unimodal")
class UnimodalCE(nn.Module):
    """Cross-entropy of the student's audio-only and video-only heads (`audio_logits`, `visual_logits` [B,C],
    from `unimodal_heads=True`), averaged over the two; a clip whose modality is masked out (batch
    `modality_mask` [B,2]) or unlabeled does not count for that head.

    Why: trained only through the fused logits, a small student learns the modality that pays off first
    (audio on the synthetic set) and stops improving the other one; a loss per branch keeps both learning.
    """

    needs_teacher = False

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, student_out: dict, teacher_out: dict | None, batch: dict) -> torch.Tensor:
        if "audio_logits" not in student_out:
            raise KeyError("loss 'unimodal' needs a student with unimodal heads "
                           "(set student.overrides.unimodal_heads=true, or disable the term)")
        return unimodal_ce(student_out, batch["label"].long(), batch.get("modality_mask"), self.label_smoothing,
                           IGNORE_LABEL)


@register_loss(name="unimodal_kd")
class UnimodalKD(nn.Module):
    """KD of the teacher's fused logits into the student's audio-only and video-only heads (`audio_logits`,
    `visual_logits` [B,C], `unimodal_heads=True`): mean over the two heads of `kd_loss` at temperature T, each
    over the clips that have that modality (`batch["modality_mask"]` [B,2]).

    The teacher-side twin of `unimodal`: with few labels (semi-supervised regime) the label-only heads see only
    the labelled clips, so a branch (typically video, which learns slower) gets little direct signal; this term
    gives each branch the teacher's targets on every clip, unlabelled ones included. Needs the teacher, so the
    CE-only baseline drops it.
    """

    needs_teacher = True

    def __init__(self, temperature: float = 1.0):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"unimodal_kd temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, student_out: dict, teacher_out: dict | None, batch: dict) -> torch.Tensor:
        if "audio_logits" not in student_out:
            raise KeyError("loss 'unimodal_kd' needs a student with unimodal heads "
                           "(set student.overrides.unimodal_heads=true, or disable the term)")
        t = teacher_logits(_need_teacher("unimodal_kd", teacher_out), student_out["logits"].shape[-1])
        mask = batch.get("modality_mask")
        total = t.new_zeros(())
        for col, key in ((0, "audio_logits"), (1, "visual_logits")):
            rows = mask[:, col].bool() if mask is not None else None
            total = total + kd_loss(student_out[key], t, self.temperature, rows)
        return total / 2


@register_loss(name="kd")
class LogitKD(nn.Module):
    """KL(teacher || student) on logits [B,C] at temperature T, scaled by T^2 (see `kd_loss`).

    Works with full teacher logits or the cache's top-k logits (teacher distribution renormalised
    over its top k classes; equal to full KD when k = C).

    teacher_errors: what to do with labeled rows whose teacher top-1 is not the label (a teacher weaker
    than the labels teaches its mistakes otherwise): `keep` (plain KD), `drop` (no KD on those rows) or
    `swap` (swap the teacher's top logit with the label's, "knowledge adjustment", Wen et al. 2021: the
    target keeps the teacher's similarity structure but puts the label first). Unlabeled rows are kept.
    min_confidence: rows whose teacher top-1 probability (at T = 1) is below it get no KD, as FixMatch
    masks unconfident pseudo-labels: the student does not learn the teacher's doubt between classes it
    cannot tell apart (0 = every row).
    """

    needs_teacher = True

    ERRORS = ("keep", "drop", "swap")

    def __init__(self, temperature: float = 4.0, teacher_errors: str = "keep", min_confidence: float = 0.0):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"kd temperature must be > 0, got {temperature}")
        if teacher_errors not in self.ERRORS:
            raise ValueError(f"kd teacher_errors must be one of {self.ERRORS}, got {teacher_errors!r}")
        if not 0.0 <= min_confidence < 1.0:
            raise ValueError(f"kd min_confidence must be in [0, 1), got {min_confidence}")
        self.temperature, self.teacher_errors, self.min_confidence = temperature, teacher_errors, min_confidence

    def forward(self, student_out: dict, teacher_out: dict | None, batch: dict) -> torch.Tensor:
        s = student_out["logits"]
        t = teacher_logits(_need_teacher("kd", teacher_out), s.shape[-1])
        if self.teacher_errors == "keep" and self.min_confidence <= 0:
            return kd_loss(s, t, self.temperature)
        keep = torch.ones(t.shape[0], dtype=torch.bool, device=t.device)
        if self.min_confidence > 0:
            keep &= F.softmax(t.float(), -1).amax(-1) >= self.min_confidence
        if self.teacher_errors != "keep":
            label = batch["label"].long()
            top = t.argmax(-1, keepdim=True)
            lab = label.clamp(min=0)[:, None]
            wrong = ((label != IGNORE_LABEL) & (top[:, 0] != label))[:, None]
            if self.teacher_errors == "drop":
                keep &= ~wrong[:, 0]
            else:  # gather/scatter with a row mask: no data-dependent indexing (no host sync on GPU)
                t_top, t_lab = t.gather(1, top), t.gather(1, lab)
                t = t.scatter(1, top, torch.where(wrong, t_lab, t_top))
                t = t.scatter(1, lab, torch.where(wrong, t_top, t_lab))
        return kd_loss(s, t, self.temperature, keep)


@register_loss(name="dkd")
class DecoupledKD(nn.Module):
    """Decoupled KD on logits [B,C] (see `dkd_loss`). Unlabeled rows use the teacher's argmax as target."""

    needs_teacher = True

    def __init__(self, alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0):
        super().__init__()
        self.alpha, self.beta, self.temperature = alpha, beta, temperature

    def forward(self, student_out: dict, teacher_out: dict | None, batch: dict) -> torch.Tensor:
        s = student_out["logits"]
        t = teacher_logits(_need_teacher("dkd", teacher_out), s.shape[-1])
        label = batch["label"].long()
        target = torch.where(label == IGNORE_LABEL, t.argmax(-1), label)
        # top-k cached logits leave -inf entries; DKD needs finite logits
        t = torch.where(torch.isfinite(t), t, t[torch.isfinite(t)].min() - 30.0)
        return dkd_loss(s, t, target, self.alpha, self.beta, self.temperature)


def _match_segments(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Teacher [B,S',D] average-pooled to the student's S segments (no-op when S' == S)."""
    if teacher.dim() == 3 and student.dim() == 3 and teacher.shape[1] != student.shape[1]:
        teacher = F.adaptive_avg_pool1d(teacher.transpose(1, 2), student.shape[1]).transpose(1, 2)
    return teacher


@register_loss(name="feature")
class FeatureDistill(nn.Module):
    """Feature distillation through a learned projector (student dim -> teacher dim).

    key: which output to match: `features` [B,S,D], `pooled` [B,D], `audio_features` [B,S,Da] or
    `visual_features` [B,S,Dv]. projector: `linear` (Linear Ds->Dt) or `mlp` (Linear, GELU, Linear).
    mode: `mse` (optionally against the layer-normalised teacher target, `normalize_target`) or
    `cosine` (1 - cosine similarity per vector). Teacher segments are pooled to the student's count.
    """

    needs_teacher = True

    def __init__(self, student_dim: int, teacher_dim: int, key: str = "features", mode: str = "mse",
                 projector: str = "linear", normalize_target: bool = True):
        super().__init__()
        if mode not in ("mse", "cosine"):
            raise ValueError(f"feature loss mode must be 'mse' or 'cosine', got {mode!r}")
        if projector not in ("linear", "mlp"):
            raise ValueError(f"feature projector must be 'linear' or 'mlp', got {projector!r}")
        self.key, self.mode, self.normalize_target = key, mode, normalize_target
        if projector == "linear":
            self.proj = nn.Linear(student_dim, teacher_dim)
        else:
            self.proj = nn.Sequential(nn.Linear(student_dim, teacher_dim), nn.GELU(), nn.Linear(teacher_dim, teacher_dim))

    def forward(self, student_out: dict, teacher_out: dict | None, batch: dict) -> torch.Tensor:
        teacher_out = _need_teacher(f"feature[{self.key}]", teacher_out)
        if self.key not in student_out or self.key not in teacher_out:
            raise KeyError(f"feature loss on {self.key!r}: student has {sorted(student_out)}, "
                           f"teacher has {sorted(teacher_out)}")
        s = self.proj(student_out[self.key].float())
        t = _match_segments(s, teacher_out[self.key].float())
        if self.mode == "cosine":
            return (1 - F.cosine_similarity(s, t, dim=-1)).mean()
        if self.normalize_target:
            t = F.layer_norm(t, t.shape[-1:])
        return F.mse_loss(s, t)


@register_loss(name="rkd")
class RelationalKD(nn.Module):
    """Relational KD on a [B,D] (or [B,S,D], flattened) output `key` (default the pooled features)."""

    needs_teacher = True

    def __init__(self, key: str = "pooled", distance_weight: float = 25.0, angle_weight: float = 50.0):
        super().__init__()
        self.key, self.distance_weight, self.angle_weight = key, distance_weight, angle_weight

    def forward(self, student_out: dict, teacher_out: dict | None, batch: dict) -> torch.Tensor:
        t = _need_teacher("rkd", teacher_out)[self.key]
        return rkd_loss(student_out[self.key], t, self.distance_weight, self.angle_weight)


# ---------------------------------------------------------------------------------------------
# loss weights over training

class WeightSchedule:
    """A loss weight as a function of the optimiser step.

    constant: `value` throughout. linear: from `start_value` at step `start_step` to `value` at
    `start_step + warmup_steps`, then constant. cosine: the same ramp along a half cosine.
    Before `start_step` the weight is `start_value`.
    """

    KINDS = ("constant", "linear", "cosine")

    def __init__(self, value: float = 1.0, kind: str = "constant", warmup_steps: int = 0,
                 start_value: float = 0.0, start_step: int = 0):
        if kind not in self.KINDS:
            raise ValueError(f"unknown weight schedule {kind!r}; use one of {self.KINDS}")
        self.value, self.kind, self.warmup_steps = float(value), kind, int(warmup_steps)
        self.start_value, self.start_step = float(start_value), int(start_step)

    def __call__(self, step: int) -> float:
        if self.kind == "constant":
            return self.value
        if step < self.start_step:
            return self.start_value
        frac = 1.0 if self.warmup_steps <= 0 else min(1.0, (step - self.start_step) / self.warmup_steps)
        if self.kind == "cosine":
            frac = 0.5 * (1 - math.cos(math.pi * frac))
        return self.start_value + (self.value - self.start_value) * frac

    def __repr__(self) -> str:
        return f"WeightSchedule({self.kind}, value={self.value}, warmup_steps={self.warmup_steps})"


__all__ = ["LOSSES", "register_loss", "create_loss", "needs_teacher", "IGNORE_LABEL", "teacher_logits", "kd_loss", "dkd_loss",
           "rkd_loss", "CrossEntropy", "UnimodalCE", "UnimodalKD", "LogitKD", "DecoupledKD", "FeatureDistill", "RelationalKD",
           "WeightSchedule"]
