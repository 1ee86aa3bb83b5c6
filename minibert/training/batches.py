"""Which examples each process reads at each step, and how they are loaded so that a run can be repeated exactly.

Order. Epoch e visits the training set in a permutation drawn from a generator seeded with (seed, e), so any
epoch's order can be recomputed without replaying the ones before it: resuming at step s of epoch e recomputes the
permutation and skips the first s steps' indices, without loading them. The permutation is cut into global
batches of per_device_batch_size * grad_accumulation_steps * world_size examples; rank r takes the r-th slice of
each, cut into micro-batches. The global batches, and so the training, are therefore the same for 1 process with
k accumulation steps as for k processes without. The last incomplete global batch of an epoch is dropped, so that
every step has the same size and every rank has work.

Randomness in the data (dynamic masking, random sentence pairs) is made repeatable by seeding it per example:
dataset[i] runs with Python's, NumPy's and torch's global generators seeded from (seed, epoch, i), and collate_fn
from the seeds of its batch. An example is then the same whichever process or DataLoader worker loads it, whether
or not the run was resumed, and the training process's own generators (dropout) are left as they were.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

# Tags keep the seeds derived for different purposes apart.
ORDER, TRAIN_EXAMPLE, EVAL_EXAMPLE, COLLATE = range(4)


def derive_seed(*key: int) -> int:
    """A 63-bit seed from a tuple of non-negative integers; different tuples give unrelated seeds."""
    return int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0] >> np.uint64(1))


@contextmanager
def seeded_rngs(seed: int) -> Iterator[None]:
    """Run a block with Python's, NumPy's and torch's CPU generators seeded from `seed`; restore them after."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.default_generator.manual_seed(seed)  # the CPU generator alone: torch.manual_seed is ~100x slower
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


class SeededExamples(Dataset):
    """Wraps a dataset: item (index, seed) is (seed, dataset[index]) computed under `seeded_rngs(seed)`.

    A dataset whose examples draw only from generators of their own, seeded per example (it says so with a true
    `seeds_its_examples` attribute, as PretrainingDataset's dynamic masking does), is read without that seeding:
    the same examples, without ~140 us per example of saving and restoring the global generators' states."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self.seeded = not getattr(dataset, "seeds_its_examples", False)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> tuple[int, Any]:
        index, seed = key
        if not self.seeded:
            return seed, self.dataset[index]
        with seeded_rngs(seed):
            return seed, self.dataset[index]


class SeededCollate:
    """Wraps a collate_fn to run under a seed derived from its batch's example seeds."""

    def __init__(self, collate_fn: Callable[[list], Any]):
        self.collate_fn = collate_fn

    def __call__(self, items: Sequence[tuple[int, Any]]) -> Any:
        seeds, examples = zip(*items)
        with seeded_rngs(derive_seed(COLLATE, seeds[0], len(seeds))):
            return self.collate_fn(list(examples))


class EpochBatches:
    """A DataLoader batch_sampler: this rank's micro-batches of one epoch, from optimizer step `start_step` on,
    each a list of (example index, example seed). Micro-batches of one optimizer step are consecutive."""

    def __init__(self, num_examples: int, micro_batch: int, accumulation: int, rank: int, world_size: int,
                 seed: int, epoch: int, start_step: int = 0):
        self.micro_batch, self.accumulation, self.rank = micro_batch, accumulation, rank
        self.seed, self.epoch, self.start_step = seed, epoch, start_step
        self.per_rank = micro_batch * accumulation  # examples this rank reads per optimizer step
        self.per_step = self.per_rank * world_size  # examples all ranks read per optimizer step
        self.num_examples = num_examples
        self.steps = num_examples // self.per_step

    def __len__(self) -> int:
        return (self.steps - self.start_step) * self.accumulation

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        generator = torch.Generator().manual_seed(derive_seed(ORDER, self.seed, self.epoch))
        order = torch.randperm(self.num_examples, generator=generator)
        for step in range(self.start_step, self.steps):
            first = step * self.per_step + self.rank * self.per_rank
            mine = order[first:first + self.per_rank].tolist()  # this rank's slice of the global batch
            for micro in range(self.accumulation):
                indices = mine[micro * self.micro_batch:(micro + 1) * self.micro_batch]
                yield [(i, derive_seed(TRAIN_EXAMPLE, self.seed, self.epoch, i)) for i in indices]


def train_loader(dataset: Dataset, collate_fn: Callable, batches: EpochBatches, num_workers: int,
                 pin_memory: bool) -> DataLoader:
    # generator=: the DataLoader draws its worker base seed from it instead of from torch's global generator,
    # which would shift the dropout stream by one draw each time an epoch starts (or a run resumes).
    return DataLoader(SeededExamples(dataset), batch_sampler=batches, collate_fn=SeededCollate(collate_fn),
                      num_workers=num_workers, pin_memory=pin_memory, generator=torch.Generator())


def eval_loader(dataset: Dataset, collate_fn: Callable, batch_size: int, seed: int, num_workers: int,
                pin_memory: bool) -> DataLoader:
    """The held-out set in order, each example under a fixed seed, so every evaluation sees the same data."""
    batches = [[(i, derive_seed(EVAL_EXAMPLE, seed, i)) for i in range(start, min(start + batch_size, len(dataset)))]
               for start in range(0, len(dataset), batch_size)]
    return DataLoader(SeededExamples(dataset), batch_sampler=batches, collate_fn=SeededCollate(collate_fn),
                      num_workers=num_workers, pin_memory=pin_memory, generator=torch.Generator())
