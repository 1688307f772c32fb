"""One evaluation routine for every model that follows the emodistill interface."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from .metrics import classification_metrics

Missing = Literal["audio", "video"] | None


def modality_mask(batch_size: int, missing: Missing = None, device=None) -> torch.Tensor | None:
    """[B, 2] float mask (column 0 audio, column 1 video; 1 = present) or None when nothing is missing."""
    if missing is None:
        return None
    mask = torch.ones(batch_size, 2, device=device)
    mask[:, 0 if missing == "audio" else 1] = 0.0
    return mask


def modality_dropout_mask(batch_size: int, p: float, device=None) -> torch.Tensor | None:
    """[B, 2] training mask dropping audio and, independently, video with probability p per sample, never both
    (None when p <= 0)."""
    if p <= 0:
        return None
    drop = torch.rand(batch_size, 2, device=device) < p
    drop[:, 1] &= ~drop[:, 0]
    return (~drop).float()


def unimodal_ce(out: dict, label: torch.Tensor, mask: torch.Tensor | None = None, label_smoothing: float = 0.0,
                ignore_label: int = -1) -> torch.Tensor:
    """Mean over the audio-only and video-only heads (`audio_logits`, `visual_logits` [B,C]) of their
    cross-entropy, each over the clips that have that modality (`mask` [B,2], 1 = present) and a label
    (`label` [B], `ignore_label` = unlabeled). Scalar; 0 when no clip counts."""
    valid = (label != ignore_label).float()
    total = out["audio_logits"].sum() * 0.0
    for col, key in ((0, "audio_logits"), (1, "visual_logits")):
        ce = F.cross_entropy(out[key].float(), label.clamp(min=0), reduction="none", label_smoothing=label_smoothing)
        w = valid * (mask[:, col].float() if mask is not None else 1.0)
        total = total + (ce * w).sum() / w.sum().clamp(min=1.0)
    return total / 2


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader, num_classes: int, accelerator=None, missing: Missing = None,
             progress: bool = False) -> dict:
    """Accuracy, UAR, WAR, macro-F1 and confusion over `loader` (dict batches with video, audio, label).

    With an `accelerator`, predictions are gathered over all processes with `gather_for_metrics`,
    so the numbers cover the whole split exactly once (padding duplicates dropped).
    """
    was_training = model.training
    model.eval()
    preds, labels = [], []
    it = loader
    if progress and (accelerator is None or accelerator.is_main_process):
        from tqdm.auto import tqdm

        it = tqdm(loader, desc="eval", leave=False)
    for batch in it:
        video, audio, label = batch["video"], batch["audio"], batch["label"]
        mask = modality_mask(video.shape[0], missing, video.device)
        logits = model(video, audio, modality_mask=mask)["logits"]
        pred = logits.argmax(-1)
        if accelerator is not None:
            pred, label = accelerator.gather_for_metrics((pred, label))
        preds.append(pred.cpu())
        labels.append(label.cpu())
    model.train(was_training)
    y_pred = torch.cat(preds).numpy() if preds else []
    y_true = torch.cat(labels).numpy() if labels else []
    return classification_metrics(y_true, y_pred, num_classes)
