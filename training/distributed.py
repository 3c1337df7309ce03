"""This process's place among torchrun's, for every training script (pretrain, sft, rl).

Launched with plain `python -m`, it is rank 0 of 1 and every collective is a no-op; launched with torchrun, the
processes join one group (NCCL on GPUs, gloo on CPUs). Pretraining wraps its model in DistributedDataParallel; the
post-training scripts, whose steps are few and whose rollouts differ in length from rank to rank, sum their
gradients in one flat all-reduce (sum_gradients) after each rank's backward, so a rank with nothing to learn from
in a step still takes part.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


class Distributed:
    """Rank, world size and device of this process, and the sum all-reduce."""

    def __init__(self, device_arg: str, script: str = "training") -> None:
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        cuda = device_arg == "cuda" or (device_arg == "auto" and torch.cuda.is_available())
        if cuda and not torch.cuda.is_available():
            raise SystemExit(f"{script}: --device cuda, but torch sees no CUDA device")
        self.device = torch.device("cuda", self.local_rank) if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(self.device)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def master(self) -> bool:
        return self.rank == 0

    def init(self) -> None:
        if self.enabled:
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo", device_id=(
                self.device if self.device.type == "cuda" else None))

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)  # gloo has no AVG
        return t

    def sum_floats(self, *values: float) -> list[float]:
        """Each value summed over the ranks (one all-reduce for all of them)."""
        return self.sum(torch.tensor(values, dtype=torch.float64, device=self.device)).tolist()

    def sum_gradients(self, model: torch.nn.Module) -> None:
        """Every parameter's gradient summed over the ranks, in one flat buffer (a missing one counts as zeros)."""
        if not self.enabled:
            return
        params = [p for p in model.parameters() if p.requires_grad]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = self.sum(torch.cat([p.grad.reshape(-1) for p in params]))
        offset = 0
        for p in params:
            p.grad.copy_(flat[offset:offset + p.numel()].view_as(p))
            offset += p.numel()

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()

    def __enter__(self) -> Distributed:
        self.init()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
