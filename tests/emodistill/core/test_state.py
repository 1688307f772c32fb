"""Resumable training state: exact round trip without pickles, atomic pointer, torn states refused."""

import json
import random

import numpy as np
import pytest
import torch

from emodistill.core.state import StateError, latest_state, load_state, rng_state, save_state, set_rng_state
from emodistill.core.optim import warmup_cosine


def setup():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = warmup_cosine(opt, 2, 10)
    return model, opt, sched


def steps(model, opt, sched, n):
    for _ in range(n):
        loss = model(torch.randn(3, 4)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


def test_round_trip_continues_identically(tmp_path):
    torch.manual_seed(0)
    model, opt, sched = setup()
    steps(model, opt, sched, 3)
    folder = save_state(tmp_path, model=model, optimizer=opt, scheduler=sched, rng=[rng_state()],
                        position={"step": 3, "epoch": 0, "batch": 3, "epoch_done": False})
    assert latest_state(tmp_path) == folder
    assert not any(p.suffix == ".pt" or p.suffix == ".pkl" for p in folder.iterdir())
    steps(model, opt, sched, 4)                                   # the uninterrupted continuation
    want = {k: v.clone() for k, v in model.state_dict().items()}
    py, npy = random.random(), np.random.rand()

    torch.manual_seed(123)                                        # a fresh process: other init, other RNG
    random.seed(5)
    model2, opt2, sched2 = setup()
    meta = load_state(latest_state(tmp_path), model=model2, optimizer=opt2, scheduler=sched2)
    set_rng_state(meta["rng"][0])
    assert meta["position"]["step"] == 3 and sched2.last_epoch == 3
    steps(model2, opt2, sched2, 4)
    for k, v in model2.state_dict().items():
        assert torch.equal(v, want[k]), k
    assert (random.random(), np.random.rand()) == (py, npy)


def test_pointer_moves_only_to_complete_states_and_old_ones_go(tmp_path):
    model, opt, sched = setup()
    kw = dict(model=model, optimizer=opt, scheduler=sched, rng=[rng_state()])
    a = save_state(tmp_path, position={"step": 1, "epoch": 0, "batch": 1, "epoch_done": False}, **kw)
    (tmp_path / ".step_00000002_e0000_b000002.killed").mkdir()     # a writer killed mid-way
    assert latest_state(tmp_path) == a
    b = save_state(tmp_path, position={"step": 2, "epoch": 0, "batch": 2, "epoch_done": True}, **kw)
    assert latest_state(tmp_path) == b and not a.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".step")] == []
    assert json.loads((tmp_path / "latest.json").read_text())["state"] == b.name


def test_torn_tensors_are_refused(tmp_path):
    model, opt, sched = setup()
    folder = save_state(tmp_path, model=model, optimizer=opt, scheduler=sched, rng=[rng_state()],
                        position={"step": 1, "epoch": 0, "batch": 1, "epoch_done": False})
    data = (folder / "tensors.safetensors").read_bytes()
    (folder / "tensors.safetensors").write_bytes(data[:-8] + b"\0" * 8)
    with pytest.raises(StateError, match="sha256"):
        load_state(folder, model=model, optimizer=opt, scheduler=sched)
    assert latest_state(tmp_path / "nothing") is None
