import torch
from synthetic_training import SyntheticPretraining, stack

from minibert.training.batches import EpochBatches, train_loader


def indices(batches):
    return [[index for index, _ in micro] for micro in batches]


def test_ranks_split_the_single_process_global_batches():
    one = indices(EpochBatches(40, micro_batch=4, accumulation=2, rank=0, world_size=1, seed=3, epoch=1))
    rank0 = indices(EpochBatches(40, micro_batch=4, accumulation=1, rank=0, world_size=2, seed=3, epoch=1))
    rank1 = indices(EpochBatches(40, micro_batch=4, accumulation=1, rank=1, world_size=2, seed=3, epoch=1))
    assert len(one) == 10 and len(rank0) == len(rank1) == 5, "40 examples, 8 per step: 5 steps, last one dropped"
    for step in range(5):
        assert one[2 * step] + one[2 * step + 1] == rank0[step] + rank1[step], \
            f"step {step}: 2 ranks read different examples than 1 process with 2 accumulation steps"
    other_epoch = indices(EpochBatches(40, micro_batch=4, accumulation=2, rank=0, world_size=1, seed=3, epoch=2))
    assert one != other_epoch, "each epoch should be shuffled differently"


def test_resuming_skips_consumed_steps_without_changing_the_rest():
    full = list(EpochBatches(48, micro_batch=4, accumulation=3, rank=0, world_size=1, seed=0, epoch=0))
    resumed = list(EpochBatches(48, micro_batch=4, accumulation=3, rank=0, world_size=1, seed=0, epoch=0,
                                start_step=2))
    assert resumed == full[6:], "resuming at step 2 should yield exactly the micro-batches after step 2's six"
    assert len(resumed) == 6, "len() should count the remaining micro-batches"


def test_examples_do_not_depend_on_workers_or_global_rng():
    dataset = SyntheticPretraining(24, dynamic=True)  # masks drawn from torch's global generator in __getitem__

    def load(num_workers):
        batches = EpochBatches(24, micro_batch=4, accumulation=1, rank=0, world_size=1, seed=0, epoch=0)
        return list(train_loader(dataset, stack, batches, num_workers=num_workers, pin_memory=False))

    torch.manual_seed(1)
    untouched = torch.get_rng_state()
    in_process = load(0)
    assert torch.equal(torch.get_rng_state(), untouched), "loading data must leave the global generator alone"
    torch.manual_seed(2)
    with_workers = load(2)
    assert len(in_process) == len(with_workers) == 6, "24 examples in batches of 4"
    for step, (a, b) in enumerate(zip(in_process, with_workers)):
        assert torch.equal(a["labels"], b["labels"]), f"batch {step}: masks differ with 2 workers / another seed"
