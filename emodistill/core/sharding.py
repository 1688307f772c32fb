"""Sharded training, `train.sharding: none | ddp | fsdp`: one code path for teacher fine-tuning and distillation.

    none   no sharding: every process holds the whole model. One process trains alone; several (launched with
           `accelerate launch --multi_gpu` or `torchrun`) run DDP, as `ddp` does (and as `emodistill plan`
           plans `none` on several GPUs).
    ddp    accelerate's DistributedDataParallel: a full replica, gradients and AdamW state on every process.
    fsdp   FSDP2 (`torch.distributed.fsdp.fully_shard`): parameters, gradients and optimiser state split over the
           processes, each layer gathered only while it runs. One process has nothing to split: it runs as
           `none`, with a warning.

The FSDP path is ours, not accelerate's FSDP plugin (which accelerate ignores on CPU): `shard_model` applies
`fully_shard` over a 1-D DeviceMesh of the process group accelerate's PartialState set up (gloo under torchrun
on CPU, NCCL under `accelerate launch` on GPUs), and the loops hand accelerate the optimiser and loaders only.
So the same code runs, and is tested, on CPU with `torchrun --nproc_per_node 2`.

Wrapping policy (the one `emodistill.core.memory.fsdp_units` plans with): every child with parameters of each
outermost `nn.ModuleList` is a unit (SigLIP / Parakeet encoder layers and subsampling convs, LFM2 layers, the
student's blocks), then each module the loop calls on its own (the distiller's student, which evaluation runs
without the distiller), then the root (everything else: embeddings, projections, heads, projectors). The root's
parameters stay gathered from its forward to its backward; a unit's are freed after its forward and gathered again
for its backward. A live distillation teacher is outside the module tree and never sharded.

DDP's rules are kept where they matter for the numbers: every process starts from rank 0's parameters and
buffers, and evaluation sees rank 0's buffers (`sync_buffers`: BatchNorm statistics), so a 2-process FSDP run and
a 2-process DDP run of one recipe agree to float rounding. Checkpoints are gathered on rank 0 into the usual
single `model.safetensors` (`full_state_dict`); resumable states are written per process (emodistill.core.state).
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
from torch import nn

logger = logging.getLogger(__name__)

Sharding = Literal["none", "ddp", "fsdp"]
SHARDING = ("none", "ddp", "fsdp")


def effective_sharding(sharding: str, num_processes: int) -> str:
    """What `train.sharding` runs as on `num_processes` processes: none -> ddp on several, fsdp -> none on one."""
    if sharding == "fsdp" and num_processes == 1:
        logger.warning("train.sharding=fsdp on a single process: nothing to shard, training unsharded (launch "
                       "several with `accelerate launch --multi_gpu` or `torchrun --nproc_per_node N`)")
        return "none"
    if sharding == "none" and num_processes > 1:
        logger.info("train.sharding=none on %d processes: DDP (a full replica per process)", num_processes)
        return "ddp"
    return sharding


def layer_units(module: nn.Module) -> list[nn.Module]:
    """The per-layer blocks: every child with parameters of each outermost ModuleList, in module order."""
    units, taken = [], []
    for name, m in module.named_modules():
        if isinstance(m, nn.ModuleList) and len(m) > 1 and not any(name.startswith(t + ".") for t in taken):
            taken.append(name)
            units += [c for c in m if any(True for _ in c.parameters())]
    return units


def shard_model(model: nn.Module, accelerator, sharding: str, units: tuple[nn.Module, ...] = ()) -> nn.Module:
    """`fsdp` on several processes: the model placed and autocast as accelerate prepares it (no DDP), rank 0's
    parameters and buffers on every process, then `fully_shard` on the layer units, on `units` (modules called on
    their own) and on the root. Build the optimiser after this (its parameters are the sharded ones) and hand the
    model to `prepare_with_model`. Any other layout: `model` unchanged."""
    if effective_sharding(sharding, accelerator.num_processes) != "fsdp":
        return model
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    model = accelerator.prepare_model(model, evaluation_mode=True)  # device + mixed precision, never DDP
    _broadcast(list(model.parameters()) + list(model.buffers()))
    mesh = init_device_mesh(accelerator.device.type, (accelerator.num_processes,))
    for unit in [*layer_units(model), *units]:
        fully_shard(unit, mesh=mesh)
    fully_shard(model, mesh=mesh)
    logger.info("fsdp: %d units + root over %d processes", len(layer_units(model)) + len(units),
                accelerator.num_processes)
    return model


def prepare_with_model(accelerator, model: nn.Module, *objects):
    """`accelerator.prepare(model, *objects)`; a sharded model is not handed over (accelerate would wrap DTensor
    parameters in DDP): it was placed and autocast by `shard_model`."""
    if not is_sharded(model):
        return accelerator.prepare(model, *objects)
    prepared = accelerator.prepare(*objects)
    return (model, *(prepared if isinstance(prepared, tuple) else (prepared,)))


def is_sharded(model: nn.Module) -> bool:
    """Whether `model` holds DTensor (FSDP-sharded) parameters."""
    if not torch.distributed.is_available():
        return False
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor] | None:
    """Collective (every process calls it): a sharded model's full state dict on CPU on rank 0, {} elsewhere;
    None for an unsharded model (the caller reads `model.state_dict()` as before)."""
    if not is_sharded(model):
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    """Load a full (unsharded) state dict into `model`, sharded or not -> (missing, unexpected) keys. Every
    process passes the whole dict (each reads the file) and keeps its own shard: no communication."""
    if not is_sharded(model):
        missing, unexpected = model.load_state_dict(state, strict=False)
        return list(missing), list(unexpected)
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    have = model.state_dict()
    for k, v in state.items():
        if k in have and tuple(v.shape) != tuple(have[k].shape):
            raise RuntimeError(f"size mismatch for {k}: the checkpoint has {tuple(v.shape)}, the model "
                               f"{tuple(have[k].shape)}")
    set_model_state_dict(model, {k: v for k, v in state.items() if k in have},
                         options=StateDictOptions(full_state_dict=True, strict=False))
    return [k for k in have if k not in state], [k for k in state if k not in have]


def sync_buffers(model: nn.Module) -> None:
    """Collective for a sharded model: rank 0's buffers (BatchNorm statistics) on every process, as DDP's
    forward leaves them; call before evaluating. A no-op for an unsharded model."""
    if is_sharded(model):
        _broadcast(list(model.buffers()))


def _broadcast(tensors: list[torch.Tensor]) -> None:
    import torch.distributed as dist

    with torch.no_grad():
        for t in tensors:
            dist.broadcast(t.data, src=0)


__all__ = ["Sharding", "SHARDING", "effective_sharding", "layer_units", "shard_model", "prepare_with_model",
           "is_sharded", "full_state_dict", "load_full_state_dict", "sync_buffers"]
