"""DataLoader construction with reproducible epochs.

Augmentation randomness is derived per sample from (transform seed, epoch, index) (see
TrainTransform), and the shuffle order from (seed, epoch); so an epoch is the same whatever
the number of workers, and the same on every rank for a given global order.
"""
import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler


def make_loader(dataset, batch_size, *, shuffle=True, workers=0, seed=0, epoch=0, drop_last=False,
                rank=0, world_size=1):
    """A DataLoader for one epoch; build a new one each epoch (it is cheap).

    Sets dataset.transform's epoch (when it has set_epoch). With world_size > 1 each rank gets
    its 1/world_size share through a DistributedSampler seeded with seed (batch_size is per rank).
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    transform = getattr(dataset, "transform", None)
    if hasattr(transform, "set_epoch"):
        transform.set_epoch(epoch)
    if world_size > 1:
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle,
                                     seed=seed, drop_last=drop_last)
        sampler.set_epoch(epoch)
    elif shuffle:
        generator = torch.Generator().manual_seed(seed * 100003 + epoch)
        sampler = RandomSampler(dataset, generator=generator)
    else:
        sampler = SequentialSampler(dataset)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      drop_last=drop_last, persistent_workers=False)
