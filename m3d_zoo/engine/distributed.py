""" torchrun support: process-group setup and rank helpers.

Under `torchrun --nproc_per_node N` the environment holds RANK, WORLD_SIZE and LOCAL_RANK; `init_distributed`
joins the process group (nccl on GPUs, gloo on CPUs) with a collective timeout long enough for rank 0's
evaluation, which the other ranks wait for at a barrier (`DEFAULT_DIST_TIMEOUT_MIN`, `--dist-timeout`).

The batch samplers (`m3d_zoo.data.PKBatchSampler`, `RandomBatchSampler`) give each rank its slice of every global
batch.
"""
import datetime
import os
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import torch
import torch.distributed as dist

from m3d_zoo._io import sha256_chunks

__all__ = [
    'DistInfo', 'DeviceError', 'DEFAULT_DIST_TIMEOUT_MIN', 'resolve_device', 'init_distributed', 'cleanup_distributed',
    'is_main_process', 'barrier', 'broadcast_object', 'state_dict_sha256', 'all_gather_object',
]

# Rank 0 evaluates while the other ranks wait at a barrier; a full MARS evaluation can take far longer than
# torch's default collective timeout (10 min for nccl, 30 for gloo), after which the waiting ranks are killed.
DEFAULT_DIST_TIMEOUT_MIN = 120.0


class DeviceError(ValueError):
    """The requested device does not exist on this machine or is not one the zoo runs on."""


@dataclass
class DistInfo:
    """Where this process stands: rank, world size, local rank and its device."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device('cpu')
    backend: Optional[str] = None
    timeout_min: Optional[float] = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(device: Optional[str] = None) -> torch.device:
    """The torch device for a `--device` value, checked against this machine.

    Args:
        device: 'cpu', 'cuda', 'cuda:N' or None (a GPU when there is one, else the CPU).

    Raises:
        DeviceError: Not a device name, not a CPU or CUDA device, or a GPU this machine does not have.
    """
    if device is None:
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(f'--device {device!r} is not a device name: use cpu, cuda or cuda:N (N a GPU index, '
                          f'e.g. cuda:0).') from None
    if dev.type not in ('cpu', 'cuda'):
        raise DeviceError(f'--device {device}: the zoo runs on cpu or cuda (cuda:N), not {dev.type}.')
    if dev.type == 'cuda':
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            hint = (f' (CUDA_VISIBLE_DEVICES={os.environ["CUDA_VISIBLE_DEVICES"]!r})'
                    if 'CUDA_VISIBLE_DEVICES' in os.environ else '')
            raise DeviceError(f'--device {device}: torch sees no GPU on this machine{hint}; use --device cpu.')
        if dev.index is not None and dev.index >= count:
            raise DeviceError(f'--device {device}: torch sees {count} GPU(s), cuda:0 to cuda:{count - 1}; pick '
                              f'one of those, or --device cuda.')
    return dev


def init_distributed(device: Optional[str] = None, timeout_min: Optional[float] = None) -> DistInfo:
    """Join the torchrun process group if the environment asks for one; pick this process's device.

    Args:
        device: 'cpu', 'cuda', 'cuda:N' or None (a GPU when there is one). Under torchrun each rank takes the GPU
            of its LOCAL_RANK.
        timeout_min: How long a collective (a barrier included) waits for the other ranks, in minutes; None:
            `DEFAULT_DIST_TIMEOUT_MIN`. It must cover rank 0's evaluation, which the other ranks wait for.

    Raises:
        DeviceError: See `resolve_device`, or a LOCAL_RANK without a GPU of its own.
        ValueError: `timeout_min` is not a positive number.
    """
    timeout_min = DEFAULT_DIST_TIMEOUT_MIN if timeout_min is None else float(timeout_min)
    if not timeout_min > 0:  # also rejects NaN
        raise ValueError(f'the process group timeout must be a positive number of minutes, got {timeout_min}.')
    dev = resolve_device(device)
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    rank = int(os.environ.get('RANK', '0'))
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    if dev.type == 'cuda':
        if world_size > 1:
            if local_rank >= torch.cuda.device_count():
                raise DeviceError(f'LOCAL_RANK {local_rank} has no GPU of its own: torch sees '
                                  f'{torch.cuda.device_count()} GPU(s). Use --nproc_per_node <= the number of GPUs.')
            dev = torch.device('cuda', local_rank)
        else:
            dev = torch.device('cuda', dev.index or 0)
        torch.cuda.set_device(dev)
    info = DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev, timeout_min=timeout_min)
    if world_size > 1:
        info.backend = 'nccl' if dev.type == 'cuda' else 'gloo'
        if not dist.is_initialized():
            kwargs = {'device_id': dev} if dev.type == 'cuda' else {}
            dist.init_process_group(backend=info.backend, timeout=datetime.timedelta(minutes=timeout_min), **kwargs)
    return info


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_main_process() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def state_dict_sha256(model: torch.nn.Module) -> str:
    """A hash of every tensor of the model's state dict (names, dtypes, shapes and bytes)."""
    return sha256_chunks(_tensor_chunks(model))


def _tensor_chunks(model: torch.nn.Module) -> Iterator[bytes]:
    """Each tensor's name, dtype and shape, then its bytes, one tensor at a time to keep one copy in memory."""
    for k, v in sorted(model.state_dict().items()):
        t = v.detach().cpu().contiguous()
        yield f'{k}:{t.dtype}:{tuple(t.shape)}'.encode()
        yield t.reshape(-1).view(torch.uint8).numpy().tobytes()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s `obj` on every rank (picklable objects); `obj` itself outside a process group."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src)
    return box[0]


def all_gather_object(obj):
    """[obj of rank 0, obj of rank 1, ...]; [obj] outside a process group."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out

