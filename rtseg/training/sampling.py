"""Data order and augmentation randomness that depend on (seed, epoch, image) only.

Exact resumption needs the batches after a restart to equal those of an uninterrupted run.
torch's DataLoader draws worker seeds from the global generator and the augmentations draw
from per-worker generators, so their random numbers depend on the number of workers, on
when the iterator was made and on what ran before. Here instead the sampler hands every
item its own seed, ``SeedSequence([seed, epoch, index])``, and ``SeededDataset`` runs the
item's transforms under that seed. The same image then gets the same crop and flip in a
resumed run, with any number of workers, and in a 1-process and an N-process run alike.
"""

from __future__ import annotations

import contextlib
import random
from typing import Iterator, Sized

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed for one item of one epoch (numpy's SeedSequence mixes the three)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class SeededSampler(Sampler):
    """This rank's indices of an epoch, shuffled by ``DistributedSampler``, as ``(index, seed)``.

    ``set_epoch(epoch, skip=n)`` starts the epoch after its first ``n`` items (resumption).
    Rank r of N gets items r, r+N, r+2N, ... of the epoch's permutation, so step k of an
    N-process run with per-rank batch b sees the same N*b images as step k of a 1-process
    run with batch N*b.
    """

    def __init__(self, data: Sized, seed: int, rank: int = 0, world_size: int = 1, shuffle: bool = True):
        self.order = DistributedSampler(data, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed,
                                        drop_last=True)
        self.seed = seed
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch = epoch
        self.skip = skip
        self.order.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for position, index in enumerate(self.order):
            if position >= self.skip:
                yield index, sample_seed(self.seed, self.epoch, index)

    def __len__(self) -> int:
        return len(self.order) - self.skip

    @property
    def epoch_length(self) -> int:
        """Items per epoch on this rank (before skipping)."""
        return len(self.order)


@contextlib.contextmanager
def seeded(seed: int):
    """Seed torch, numpy and ``random`` for a block, then put their previous states back."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


class SeededDataset(Dataset):
    """Reads ``(index, seed)`` keys from ``SeededSampler``: item ``index`` under ``seed``."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        with seeded(seed):
            return self.dataset[index]
