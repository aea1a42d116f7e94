"""The torch thread count that trains fastest here, measured rather than
assumed: on a shared or small machine one thread per process can beat all
cores (less waiting at every parallel region), elsewhere all cores win."""
import copy
import time
from typing import Dict, Tuple

import torch

from .losses import mula_loss

MEASURED = -1  # TrainConfig.threads value that asks for the measurement


def candidate_counts(most: int):
    """1, 2, 4, ... up to `most`, and `most` itself."""
    counts, n = [], 1
    while n < most:
        counts.append(n)
        n *= 2
    return counts + [most]


def fastest_thread_count(model: torch.nn.Module, batch: dict, parsing_weight: float,
                         steps: int = 3) -> Tuple[int, Dict[int, float]]:
    """Times forward+backward training steps of a copy of `model` on `batch`
    for each candidate thread count (the best of `steps`, after one warm-up
    step) and sets torch to the fastest. Returns it and the images per second
    of each count. The model and torch's random state are left untouched."""
    probe = copy.deepcopy(model).train()
    image, heatmaps, parsing = batch["image"], batch["heatmaps"], batch["parsing"]
    rates = {}
    with torch.random.fork_rng(devices=[]):
        for threads in candidate_counts(torch.get_num_threads()):
            torch.set_num_threads(threads)
            times = []
            for _ in range(steps + 1):
                started = time.perf_counter()
                mula_loss(probe(image), heatmaps, parsing, parsing_weight).backward()
                times.append(time.perf_counter() - started)
            rates[threads] = image.shape[0] / min(times[1:])
    best = max(rates, key=rates.get)
    torch.set_num_threads(best)
    return best, rates
