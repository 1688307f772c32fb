"""One evaluation routine for every model that follows the emodistill interface."""

from __future__ import annotations

from typing import Literal

import torch

from .metrics import classification_metrics

Missing = Literal["audio", "video"] | None


def modality_mask(batch_size: int, missing: Missing = None, device=None) -> torch.Tensor | None:
    """[B, 2] float mask (column 0 audio, column 1 video; 1 = present) or None when nothing is missing."""
    if missing is None:
        return None
    mask = torch.ones(batch_size, 2, device=device)
    mask[:, 0 if missing == "audio" else 1] = 0.0
    return mask


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
