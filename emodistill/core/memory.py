"""Device memory of one training step: traced without running it, or measured on the CPU.

`MemoryTracer` is a TorchDispatchMode that sees every tensor an op returns and keeps the bytes of the live
storages by category (`TAGS`) over the step, with the peak and the categories at the peak. Under
`FakeTensorMode` (`fake_mode()`) nothing is computed or allocated, so a model of any size is traced on a
machine without a GPU and without its weights. A storage's category is given when it appears: parameters,
buffers and inputs are registered up front, anything an op creates takes the phase it was created in
(forward activations, backward temporaries, optimizer temporaries, the live teacher's forward), gradients
and optimizer state are re-tagged when autograd accumulates them / when the step has run. A storage leaves
the count when its last tensor dies (a weak reference on the storage).

`training_step` is the step both sides run: forward (the caller's closure, with its own autocast), backward,
gradient clipping, the optimizer step, zero_grad. `warm_optimizer` creates the optimizer state first, so a
traced step is a steady-state step. `measured_peak` is the CPU measurement the plan is validated against:
the allocations and frees the torch profiler records, summed in order (not RSS).
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from functools import partial
from typing import Callable, Iterable

import torch
from torch._subclasses.fake_tensor import is_fake
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

TAGS = ("params_trainable", "params_frozen", "buffers", "inputs", "gradients", "optimizer_state",
        "optimizer_temp", "activations", "backward_temp", "teacher_params", "teacher_activations")
PHASES = {"activations": "forward", "backward_temp": "backward", "optimizer_temp": "optimizer step",
          "teacher_activations": "live teacher forward"}


def fake_mode():
    """A FakeTensorMode: tensors with shapes, dtypes and storages of the right size, and no data."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    return FakeTensorMode(allow_non_fake_inputs=True)


def fake_module(module: torch.nn.Module, mode) -> torch.nn.Module:
    """`module` with every parameter and buffer replaced by a fake tensor of `mode` (tied weights stay tied): for
    models whose construction reads values, which a fake mode cannot build (they are built for real first)."""
    memo: dict[int, torch.Tensor] = {}
    param = lambda p: torch.nn.Parameter(mode.from_tensor(p.detach()), p.requires_grad)  # noqa: E731
    for m in module.modules():
        for store, make in ((m._parameters, param), (m._buffers, mode.from_tensor)):
            for name, t in store.items():
                if t is not None:
                    store[name] = memo.setdefault(id(t), make(t))
    return module


def storage_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind `tensors` (views and tied weights counted once)."""
    seen: dict[int, int] = {}
    for t in tensors:
        st = t.untyped_storage()
        seen[id(st)] = st.nbytes()
    return sum(seen.values())


def _all_true(mask: torch.Tensor) -> list[torch.Tensor]:
    """The long indices that `mask.nonzero()` gives when every entry of the bool mask is true."""
    grids = torch.meshgrid(*[torch.arange(d, device=mask.device) for d in mask.shape], indexing="ij")
    return [g.reshape(-1) for g in grids]


def _bool_indices(func, x, indices, *args, **kwargs):
    longs = []
    for i in indices:
        longs += _all_true(i) if isinstance(i, torch.Tensor) and i.dtype == torch.bool else [i]
    return func(x, longs, *args, **kwargs)


# A fake tensor has no values: where the code asks for one (`bool(mask.any())`, `x[mask]`), the trace assumes the
# costliest answer, every mask entry true (e.g. every clip of the batch labelled).
_aten = torch.ops.aten
DATA_DEPENDENT = {
    _aten._local_scalar_dense.default: lambda func, t: True if t.dtype == torch.bool else 1,
    _aten.nonzero.default: lambda func, t: torch.stack(_all_true(t), dim=1),
    _aten.index.Tensor: _bool_indices, _aten.index_put.default: _bool_indices,
    _aten.index_put_.default: _bool_indices, _aten._index_put_impl_.default: _bool_indices,
}


class MemoryTracer(TorchDispatchMode):
    """Live storage bytes per category while active; afterwards `timeline` (one row of per-TAG bytes per op and
    per `track` call), `phases` (the phase of each row), `peak`, `peak_parts` and `peak_phase`. Enter it inside
    the fake mode (or on real tensors: it counts them the same way)."""

    def __init__(self):
        super().__init__()
        self._live: dict[int, list] = {}  # id(storage) -> [nbytes, tag, weakref]
        self.totals = dict.fromkeys(TAGS, 0)
        self.phase = "activations"
        self.timeline: list[tuple[int, ...]] = []
        self.phases: list[str] = []  # the phase of each timeline row
        self.peak, self.peak_parts, self.peak_phase = 0, dict(self.totals), ""

    def track(self, tensors: Iterable[torch.Tensor | None], tag: str) -> None:
        """Count `tensors`' storages under `tag` (re-tagging those already counted)."""
        for t in tensors:
            if isinstance(t, torch.Tensor):
                self._note(t, tag, retag=True)
        self._sample()

    def track_module(self, module: torch.nn.Module, teacher: bool = False) -> None:
        """Count a module's parameters (trainable / frozen) and buffers; `teacher`: all as the live teacher's."""
        params = list(module.parameters())
        if teacher:
            self.track([*params, *module.buffers()], "teacher_params")
            return
        self.track([p for p in params if not p.requires_grad], "params_frozen")
        self.track([p for p in params if p.requires_grad], "params_trainable")
        self.track(module.buffers(), "buffers")

    @contextlib.contextmanager
    def tagging(self, tag: str):
        """New storages created inside take `tag` (e.g. the live teacher's forward)."""
        before, self.phase = self.phase, tag
        try:
            yield
        finally:
            self.phase = before

    def tag_forward(self, module: torch.nn.Module, tag: str) -> list:
        """What `module`'s forward creates takes `tag` (e.g. the live teacher's); -> the hook handles to remove."""
        saved: list[str] = []

        def pre(m, args):
            saved.append(self.phase)
            self.phase = tag

        def post(m, args, out):
            self.phase = saved.pop()
        return [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]

    def _note(self, t: torch.Tensor, tag: str, retag: bool) -> None:
        try:
            st = t.untyped_storage()
        except (RuntimeError, NotImplementedError):  # a tensor without storage (sparse, nested)
            return
        entry = self._live.get(id(st))
        if entry is None:
            n = st.nbytes()
            self._live[id(st)] = [n, tag, weakref.ref(st, partial(self._freed, id(st)))]
            self.totals[tag] += n
        elif retag and entry[1] != tag:
            self.totals[entry[1]] -= entry[0]
            self.totals[tag] += entry[0]
            entry[1] = tag

    def _freed(self, key: int, _ref) -> None:
        entry = self._live.pop(key, None)
        if entry is not None:
            self.totals[entry[1]] -= entry[0]

    def _sample(self) -> None:
        row = tuple(self.totals.values())
        self.timeline.append(row)  # one row per op: the same ops at two batch sizes give aligned timelines
        self.phases.append(PHASES.get(self.phase, self.phase))
        total = sum(row)
        if total > self.peak:
            self.peak, self.peak_parts, self.peak_phase = total, dict(self.totals), PHASES.get(self.phase, self.phase)

    def reset_peak(self) -> None:
        """Forget the history; what is live now stays counted (call between a warm-up and the traced step)."""
        self.timeline, self.phases = [], []
        self.peak, self.peak_parts, self.peak_phase = 0, dict(self.totals), ""
        self._sample()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in DATA_DEPENDENT and args and is_fake(args[0]):
            out = DATA_DEPENDENT[func](func, *args, **kwargs)
            if not isinstance(out, torch.Tensor):
                return out
        else:
            out = func(*args, **kwargs)
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._note(t, self.phase, retag=False)
        self._sample()
        return out


# Ops that CUDA autocast runs in fp32 (its "fp32" and "fp32_set_opt_dtype" lists, torch/csrc/autocast_mode.cpp)
# while CPU autocast runs them in the input's bf16 / fp16: traced on the CPU, they decide how large the saved
# activations of LayerNorm, softmax & co. are on the GPU.
CUDA_FP32_OPS = ("layer_norm", "group_norm", "softmax.int", "log_softmax.int", "exp", "log", "log1p", "rsqrt",
                 "reciprocal", "pow.Tensor_Scalar", "pow.Tensor_Tensor", "softplus", "sum", "sum.dim_IntList",
                 "cumsum", "prod", "linalg_vector_norm", "logsumexp", "upsample_bilinear2d.vec")


@contextlib.contextmanager
def cuda_semantics():
    """Trace on the CPU what a CUDA step allocates: CPU autocast with CUDA's fp32 op list (Python kernels at
    the AutocastCPU key, for the ops CPU autocast leaves alone), and dropout as the fused CUDA kernel (a bool
    mask saved for backward, where the CPU saves a float noise tensor). Process-wide while active."""
    import torch.nn.functional as F
    from torch._C import DispatchKey, DispatchKeySet, _ExcludeDispatchKeyGuard

    low = (torch.bfloat16, torch.float16)
    up = partial(torch.utils._pytree.tree_map_only, torch.Tensor, lambda t: t.float() if t.dtype in low else t)

    def fp32_kernel(op):
        def kernel(*args, **kwargs):
            with _ExcludeDispatchKeyGuard(DispatchKeySet(DispatchKey.AutocastCPU)):
                return op(*up(args), **up(kwargs))
        return kernel

    lib = torch.library.Library("aten", "IMPL")
    for name in CUDA_FP32_OPS:
        base, _, overload = name.partition(".")
        if torch._C._dispatch_has_kernel_for_dispatch_key(f"aten::{name}", "AutocastCPU"):
            continue  # CPU autocast has its own rule for it already
        lib.impl(name, fp32_kernel(getattr(getattr(torch.ops.aten, base), overload or "default")), "AutocastCPU")
    dropout = F.dropout

    def fused_dropout(input, p=0.5, training=True, inplace=False):
        return torch.native_dropout(input, p, training)[0] if training and 0 < p < 1 else input

    F.dropout = fused_dropout
    try:
        yield
    finally:
        F.dropout = dropout
        lib._destroy()


def fsdp_units(module: torch.nn.Module) -> tuple[int, int, int]:
    """(largest unit's parameter bytes, its trainable bytes, the root's bytes) with the units training shards:
    `emodistill.core.sharding.layer_units` (each layer of the outermost ModuleLists), everything else the root."""
    from .sharding import layer_units

    units = layer_units(module)
    sizes = [(sum(p.nbytes for p in u.parameters()), sum(p.nbytes for p in u.parameters() if p.requires_grad))
             for u in units] or [(0, 0)]
    total = sum(p.nbytes for p in module.parameters())
    return max(sizes)[0], max(s[1] for s in sizes), total - sum(s[0] for s in sizes)


def _tagging(tracer: MemoryTracer | None, tag: str):
    return tracer.tagging(tag) if tracer is not None else contextlib.nullcontext()


def warm_optimizer(optimizer: torch.optim.Optimizer, params: list[torch.Tensor]) -> None:
    """Create the optimizer's state as its first step does (zero gradients, one step), then drop the gradients."""
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [v for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)]


def training_step(forward_loss: Callable[[], tuple[torch.Tensor, object]], optimizer: torch.optim.Optimizer,
                  params: list[torch.Tensor], *, grad_accum: int = 1, max_grad_norm: float = 0.0,
                  tracer: MemoryTracer | None = None) -> None:
    """One optimizer step as the training loops run it. `forward_loss()` -> (loss, outputs kept alive until the
    step ends, as the loops keep theirs). With `grad_accum` > 1 the gradients of the earlier micro-steps are
    already held (zeros here), which is the costliest micro-step. Clipping and AdamW use the foreach kernels,
    the default on CUDA."""
    hooks = []
    if tracer is not None:
        hooks = [p.register_post_accumulate_grad_hook(lambda p: tracer.track([p.grad], "gradients")) for p in params]
    if grad_accum > 1:
        with _tagging(tracer, "gradients"):
            for p in params:
                p.grad = torch.zeros_like(p)
    with _tagging(tracer, "activations"):
        loss, outputs = forward_loss()
    with _tagging(tracer, "backward_temp"):
        loss.backward()
    with _tagging(tracer, "optimizer_temp"):
        if max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm, foreach=True)
        optimizer.step()
    if tracer is not None:
        tracer.track(optimizer_tensors(optimizer), "optimizer_state")
    optimizer.zero_grad(set_to_none=True)
    del loss, outputs
    for h in hooks:
        h.remove()


def measured_peak(fn: Callable[[], None]) -> int:
    """Run `fn` under the torch profiler (memory view) and return the peak of its CPU allocations minus frees,
    summed in the order they happened: bytes above what was allocated before `fn` started."""
    from torch.profiler import ProfilerActivity, profile

    with warnings.catch_warnings():  # "Profiler clears events at the end of each cycle": one cycle here
        warnings.filterwarnings("ignore", message="Warning: Profiler clears events")
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
    events = sorted(((e.start_ns(), i, e.nbytes()) for i, e in enumerate(prof.profiler.kineto_results.events())
                     if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU))
    current = peak = 0
    for _, _, n in events:
        current += n
        peak = max(peak, current)
    return peak


def measure_step(forward_loss, optimizer: torch.optim.Optimizer, params: list[torch.Tensor], held: Iterable,
                 **step_kw) -> int:
    """Peak bytes of `training_step` run for real on the CPU: the storages `held` before it (parameters, buffers,
    the batch) and the optimizer's state, plus the profiler's peak of the step's own allocations."""
    before = storage_bytes([t for t in held if isinstance(t, torch.Tensor)] + optimizer_tensors(optimizer))
    return before + measured_peak(lambda: training_step(forward_loss, optimizer, params, **step_kw))


__all__ = ["TAGS", "MemoryTracer", "fake_mode", "fake_module", "fsdp_units", "storage_bytes", "warm_optimizer",
           "optimizer_tensors", "training_step", "measured_peak", "measure_step", "cuda_semantics", "CUDA_FP32_OPS"]
