"""DistributedDataParallel through torchrun: 2 CPU processes (gloo) against 1 process.

torchrun starts the workers exactly as a user's ``torchrun --nproc_per_node=2 -m rtseg train``
would (environment-variable rendezvous, ``--standalone`` picks a free port); each worker
calls ``rtseg.training.train`` and saves its own parameters so the test can compare ranks.
Batch-norm statistics are frozen (``model.freeze_bn``): with 2 images per rank instead of 4
per batch they would differ by design. The comparison uses SGD: Adam divides each update by
the gradient's running magnitude, which turns the float round-off of near-zero gradients
(summed in another order across ranks) into differences as large as the learning rate.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from rtseg.training import load_config, train
from rtseg.training.logs import read_csv

WORKER = r"""
import os, sys
import torch
torch.set_num_threads(1)
from rtseg.training import load_config, train
out, overrides = sys.argv[1], sys.argv[2:]
result = train(load_config(None, overrides), out)
torch.save(result.model.state_dict(), os.path.join(out, "params-rank%s.pt" % os.environ["RANK"]))
"""

RUN = [
    "model.pretrained=null", "model.options={width: 0.25}", "model.freeze_bn=true",
    "data.root=null", "data.synthetic={train: 8, val: 2, size: [64, 128]}",
    "data.crop=[64, 128]", "data.scale=[0.75, 1.25]", "data.val_size=null", "data.workers=0",
    "train.iterations=3", "train.batch_size=4", "train.log_every=1", "train.progress=false",
    "train.val_every=3", "optim.name=sgd", "optim.lr=0.1",
]


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "--no-python", sys.executable, "-c", WORKER, str(tmp_path / "ddp"), *RUN]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = train(load_config(None, RUN), tmp_path / "single")
    finally:
        torch.set_num_threads(threads)

    rank0 = torch.load(tmp_path / "ddp" / "params-rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "ddp" / "params-rank1.pt", weights_only=True)
    reference = single.model.state_dict()
    for name, value in rank0.items():
        assert torch.equal(value, rank1[name]), name  # DDP keeps the replicas identical
        assert torch.allclose(value.float(), reference[name].float(), atol=1e-5), name
    # ... and the parameters did move: the comparison is not between two untouched models
    torch.manual_seed(0)
    from rtseg.models import create_model

    initial = create_model("skipnet-mobilenet_v1", width=0.25).state_dict()
    assert any(not torch.allclose(rank0[n].float(), initial[n].float()) for n in rank0)

    # rank 0 alone logged and checkpointed; the logged global losses are those of one process
    ddp_losses = [float(r["loss"]) for r in read_csv(tmp_path / "ddp" / "steps.csv")]
    single_losses = [float(r["loss"]) for r in read_csv(tmp_path / "single" / "steps.csv")]
    # equal up to float32 summation order (two half-batches reduced, against one batch): a few
    # units in the last place of a loss near 20 (the AMX CPU's kernels differ by 1.1e-5 at step 3)
    assert len(ddp_losses) == 3 and ddp_losses == pytest.approx(single_losses, rel=2e-6, abs=0)
    assert sorted(p.name for p in (tmp_path / "ddp").glob("*.pt")) == \
        ["best.pt", "last.pt", "params-rank0.pt", "params-rank1.pt"]
    # validation scores were summed over the two ranks' shares: the same as one process
    ddp_val = read_csv(tmp_path / "ddp" / "metrics.csv")[-1]
    single_val = read_csv(tmp_path / "single" / "metrics.csv")[-1]
    assert abs(float(ddp_val["miou"]) - float(single_val["miou"])) < 1e-6
