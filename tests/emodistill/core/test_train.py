"""The shared training skeleton: scheduler rule under gradient accumulation, keep-best, moved keys."""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from emodistill.core.config import ConfigError
from emodistill.core.optim import warmup_cosine
from emodistill.core.train import (TrainConfig, build_scheduler, flat_config, keep_best, mixed_precision, moved_keys,
                                   new_book, optimizer_step)


@pytest.fixture
def accelerator_factory():
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    yield lambda **kw: Accelerator(cpu=True, **kw)
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def schedule_value(tc: TrainConfig, steps_per_epoch: int, n: int) -> float:
    """The lr of warm-up + cosine after n optimiser steps (a fresh scheduler stepped n times)."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=tc.lr)
    sched = warmup_cosine(opt, int(tc.warmup_epochs * steps_per_epoch), steps_per_epoch * tc.epochs, tc.min_lr_ratio)
    for _ in range(n):
        opt.step()
        sched.step()
    return sched.get_last_lr()[0]


def lr_after_each_optimizer_step(accelerator, tc: TrainConfig, step_rule) -> list[float]:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr)
    loader = DataLoader(TensorDataset(torch.randn(32, 4)), batch_size=2)  # 16 micro-batches per epoch
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    scheduler = build_scheduler(optimizer.optimizer, tc, len(loader))
    lrs = []
    for _ in range(tc.epochs):
        for (x,) in loader:
            with accelerator.accumulate(model):
                accelerator.backward(model(x).pow(2).mean())
                step_rule(accelerator, model, optimizer, scheduler, tc.max_grad_norm)
            if accelerator.sync_gradients:
                lrs.append(scheduler.get_last_lr()[0])
    return lrs


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\(\)`")
def test_scheduler_steps_once_per_optimizer_step(accelerator_factory):
    """grad_accum=2: after N optimiser steps the lr is the schedule's value at N (not at 2N micro-steps)."""
    tc = TrainConfig(epochs=2, lr=0.1, warmup_epochs=1.0, min_lr_ratio=0.0, grad_accum=2)
    accelerator = accelerator_factory(gradient_accumulation_steps=2)
    lrs = lr_after_each_optimizer_step(accelerator, tc, optimizer_step)
    assert len(lrs) == 16  # 2 epochs x 16 micro-batches / 2
    expected = [schedule_value(tc, 8, n) for n in range(1, 17)]
    assert lrs == pytest.approx(expected, rel=1e-12)
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)  # the cosine ends where the run ends

    def every_micro_step(accelerator, model, optimizer, scheduler, max_grad_norm):
        """A bare scheduler stepped on every micro-batch (the teacher loop's old call, without accelerate's
        prepared-scheduler guard): the schedule runs twice as fast and the check above fails."""
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()

    wrong = lr_after_each_optimizer_step(accelerator, tc, every_micro_step)
    assert wrong != pytest.approx(expected, rel=1e-6)
    assert wrong[3] == pytest.approx(schedule_value(tc, 8, 8))  # 4 optimiser steps, 8 schedule steps


def test_grad_accum_one_steps_every_batch(accelerator_factory):
    tc = TrainConfig(epochs=1, lr=0.1, warmup_epochs=0.5, grad_accum=1)
    lrs = lr_after_each_optimizer_step(accelerator_factory(), tc, optimizer_step)
    assert lrs == pytest.approx([schedule_value(tc, 16, n) for n in range(1, 17)], rel=1e-12)


def test_keep_best_and_early_stopping():
    book = new_book()
    assert keep_best(book, 0.5, 1, patience=2) and book["best_epoch"] == 1
    assert not keep_best(book, 0.5, 2, patience=2) and not book["stopped"]  # equal is no improvement
    assert keep_best(book, 0.6, 3, patience=2) and book["stale"] == 0
    assert not keep_best(book, 0.1, 4, patience=2)
    assert not keep_best(book, 0.2, 5, patience=2) and book["stopped"] and book["best_epoch"] == 3


def test_moved_keys_name_the_new_place():
    moves = {"optim": "train", "epochs": "train.epochs"}
    with pytest.raises(ConfigError, match=r"'optim.lr' is now 'train.lr'; 'optim.grad_accum' is now "
                                          r"'train.grad_accum'; 'epochs' is now 'train.epochs'"):
        moved_keys({"optim": {"lr": 1, "grad_accum": 2}, "epochs": 3}, moves)
    moved_keys({"train": {"epochs": 3}}, moves)  # the new layout passes


def test_mixed_precision_and_flat_config():
    assert mixed_precision("no") == "no" and mixed_precision("bf16") == "bf16"
    if not torch.cuda.is_available():
        assert mixed_precision("auto") == "no"
    assert flat_config({"a": {"b": 1, "c": [1, 2]}, "d": None}) == {"a.b": 1, "a.c": "[1, 2]", "d": "None"}
