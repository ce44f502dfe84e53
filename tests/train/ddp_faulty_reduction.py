"""Launched by torchrun from test_trainer.py: train with deliberately wrong gradient reductions.

    torchrun --standalone --nproc_per_node=2 tests/train/ddp_faulty_reduction.py CONFIG OUT

trains CONFIG once per fault into OUT/<fault>: `local` (no all-reduce: every rank steps on its
own half of the batch) and `sum` (all-reduce without dividing by the world size). The faults
are installed through DDP's public comm-hook API on the trainer's real DistributedDataParallel;
everything else is the real trainer. The DDP test checks that both land outside the tolerance
it allows a correct reduction, so a tolerance loose enough to hide a broken average fails.
"""

# No `from __future__ import annotations`: DDP checks the hooks' annotations at run time.
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from sparsecircuits.config import load_config
from sparsecircuits.train import trainer


def local_only(state, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    done: torch.futures.Future[torch.Tensor] = torch.futures.Future()
    done.set_result(bucket.buffer())
    return done


def summed(state, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    work = dist.all_reduce(bucket.buffer(), async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


HOOKS = {"local": local_only, "sum": summed}


def main(config: str, out: str) -> None:
    cfg = load_config(config)
    for fault, hook in HOOKS.items():

        class FaultyDDP(DistributedDataParallel):
            def __init__(self, *args, hook=hook, **kwargs):
                super().__init__(*args, **kwargs)
                self.register_comm_hook(None, hook)

        trainer.DistributedDataParallel = FaultyDDP
        trainer.train(cfg, Path(out) / fault, progress=False)


if __name__ == "__main__":
    main(*sys.argv[1:])
