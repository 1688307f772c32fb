"""The generic Distiller on a toy problem: any dict-returning teacher/student pair."""

import copy

import pytest
import torch
from torch import nn

from emodistill.distill.core import Distiller, LossTerm, distill_epochs
from emodistill.distill.losses import WeightSchedule, create_loss


class MLP(nn.Module):
    def __init__(self, hidden: int, depth: int = 2, dim: int = 8, classes: int = 4):
        super().__init__()
        layers, d = [], dim
        for _ in range(depth):
            layers += [nn.Linear(d, hidden), nn.ReLU()]
            d = hidden
        self.body, self.head = nn.Sequential(*layers), nn.Linear(hidden, classes)

    def forward(self, x):
        h = self.body(x)
        return {"logits": self.head(h), "pooled": h}


def toy_task(n: int, seed: int):
    """4 classes from the signs of two nonlinear functions of an 8-d Gaussian input."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    a = (x[:, 0] * x[:, 1] + 0.5 * x[:, 2] > 0).long()
    b = (x[:, 3] ** 2 + x[:, 4] - 1 > 0).long()
    return x, 2 * a + b


def loader(x, y, batch=64, seed=0):
    """Shuffled dict batches straight from tensors (re-iterable, one permutation per pass)."""
    g = torch.Generator().manual_seed(seed)

    class Batches:
        def __iter__(self):
            perm = torch.randperm(len(x), generator=g)
            for i in range(0, len(x), batch):
                idx = perm[i:i + batch]
                yield {"x": x[idx], "label": y[idx]}

    return Batches()


def inputs(batch):
    return {"x": batch["x"]}


@torch.no_grad()
def accuracy(model, x, y):
    model.eval()
    return (model(x)["logits"].argmax(-1) == y).float().mean().item()


@pytest.fixture(scope="module")
def trained_teacher():
    torch.manual_seed(0)
    x, y = toy_task(3000, seed=1)
    teacher = MLP(hidden=64)
    d = Distiller(teacher, None, [("ce", 1.0, create_loss("ce"))], student_inputs=inputs)
    opt = torch.optim.AdamW(d.parameters(), lr=3e-3)
    distill_epochs(d, loader(x, y, batch=128), opt, epochs=25)
    xt, yt = toy_task(1000, seed=2)
    return teacher.eval(), accuracy(teacher, xt, yt)


def train_student(teacher, terms, labels: bool, epochs=10, seed=0):
    torch.manual_seed(seed)
    x, y = toy_task(1500, seed=3)          # a small transfer set: where the teacher's knowledge helps
    if not labels:
        y = torch.full_like(y, -1)
    student = MLP(hidden=16, depth=1)
    d = Distiller(student, teacher, terms(student), student_inputs=inputs, teacher_inputs=inputs)
    opt = torch.optim.AdamW(d.parameters(), lr=1e-2)
    distill_epochs(d, loader(x, y, seed=seed), opt, epochs=epochs)
    xt, yt = toy_task(1000, seed=2)
    return accuracy(student, xt, yt), d


def test_kd_distills_toy_teacher_into_smaller_student(trained_teacher):
    teacher, t_acc = trained_teacher
    assert t_acc > 0.9, t_acc
    s_acc, _ = train_student(teacher, lambda s: [("ce", 0.5, create_loss("ce")),
                                                 ("kd", 1.0, create_loss("kd", temperature=2.0))], labels=True)
    assert s_acc > 0.25 + 0.5           # far above chance (4 classes)
    assert s_acc >= 0.9 * t_acc, (s_acc, t_acc)


def test_unlabeled_transfer_set_teacher_is_the_only_target(trained_teacher):
    teacher, t_acc = trained_teacher
    s_acc, d = train_student(teacher, lambda s: [("ce", 1.0, create_loss("ce")),
                                                 ("kd", 1.0, create_loss("kd", temperature=2.0))], labels=False)
    assert s_acc >= 0.9 * t_acc, (s_acc, t_acc)
    out = d({"x": torch.randn(5, 8), "label": torch.full((5,), -1)})
    assert out["ce"].item() == 0.0 and out["kd"].item() > 0


def test_teacher_is_frozen_outside_the_module_tree_and_under_no_grad(trained_teacher):
    teacher, _ = trained_teacher
    teacher = copy.deepcopy(teacher).train()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    grad_mode = []
    teacher.register_forward_hook(lambda m, i, o: grad_mode.append(torch.is_grad_enabled()))
    student = MLP(hidden=8, depth=1)
    feat = create_loss("feature", student_dim=8, teacher_dim=64, key="pooled")
    d = Distiller(student, teacher, [("kd", 1.0, create_loss("kd")), ("feat", 1.0, feat)],
                  student_inputs=inputs, teacher_inputs=inputs)
    assert not teacher.training and all(not p.requires_grad for p in teacher.parameters())
    d.train()
    assert not teacher.training
    names = set(dict(d.named_parameters())) | set(d.state_dict())
    assert not any(n.startswith("_teacher") or "body.2" in n for n in names)  # teacher is not a submodule
    assert {n.split(".")[0] for n in names} == {"student", "criteria"}      # projector params are trained
    opt = torch.optim.AdamW(d.parameters(), lr=1e-2)
    x, y = toy_task(128, seed=5)
    distill_epochs(d, loader(x, y), opt, epochs=1)
    assert grad_mode and not any(grad_mode)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert all(p.grad is None for p in teacher.parameters())


def test_step_returns_loss_and_each_weighted_component():
    student, teacher = MLP(hidden=8, depth=1), MLP(hidden=16, depth=1).eval()
    ramp = WeightSchedule(2.0, "linear", warmup_steps=10)
    d = Distiller(student, teacher, [LossTerm("ce", create_loss("ce"), 0.5),
                                     LossTerm("kd", create_loss("kd", temperature=3.0), ramp)],
                  student_inputs=inputs, teacher_inputs=inputs)
    x, y = toy_task(16, seed=7)
    batch = {"x": x, "label": y}
    out = d(batch, step=5)
    raw_ce = create_loss("ce")(student(x), None, batch)
    raw_kd = create_loss("kd", temperature=3.0)(student(x), teacher(x), batch)
    assert out["ce"].item() == pytest.approx(0.5 * raw_ce.item(), rel=1e-5)
    assert out["kd"].item() == pytest.approx(1.0 * raw_kd.item(), rel=1e-5)   # ramp(5) = 1.0
    assert out["loss"].item() == pytest.approx(out["ce"].item() + out["kd"].item(), rel=1e-6)
    assert out["loss"].requires_grad and not out["kd"].requires_grad
    calls = []
    teacher.register_forward_hook(lambda *a: calls.append(1))
    assert d(batch, step=0)["kd"].item() == 0.0 and not calls   # zero weight: teacher not even run


def test_cached_teacher_outputs_and_ce_only():
    student, teacher = MLP(hidden=8, depth=1), MLP(hidden=16, depth=1).eval()
    x, y = toy_task(16, seed=7)
    with torch.no_grad():
        t_out = teacher(x)
    live = Distiller(student, teacher, [("kd", 1.0, create_loss("kd"))], student_inputs=inputs, teacher_inputs=inputs)
    cached = Distiller(student, None, [("kd", 1.0, create_loss("kd"))], student_inputs=inputs)
    a = live({"x": x, "label": y})["kd"]
    b = cached({"x": x, "label": y, "teacher": {"logits": t_out["logits"].half()}})["kd"]
    assert b.item() == pytest.approx(a.item(), rel=1e-2)
    with pytest.raises(ValueError, match="need a teacher"):
        cached({"x": x, "label": y})
    ce_only = Distiller(student, None, [("ce", 1.0, create_loss("ce"))], student_inputs=inputs)
    assert ce_only({"x": x, "label": y})["loss"].item() > 0


def test_student_aux_loss_is_added():
    class WithAux(MLP):
        def forward(self, x):
            out = super().forward(x)
            out["aux_loss"] = out["pooled"].pow(2).mean()
            return out

    d = Distiller(WithAux(hidden=8, depth=1), None, [("ce", 1.0, create_loss("ce"))], student_inputs=inputs)
    x, y = toy_task(8, seed=1)
    out = d({"x": x, "label": y})
    assert out["aux"].item() > 0
    assert out["loss"].item() == pytest.approx(out["ce"].item() + out["aux"].item(), rel=1e-6)
