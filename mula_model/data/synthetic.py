"""Procedurally drawn people with exact joint and part ground truth (the built-in data set)."""
import torch


class SyntheticPeople(torch.utils.data.Dataset):
    """count synthetic single-person images, record i drawn from numpy's Generator seeded with
    (seed, i): deterministic, independent of order and workers, a few ms per image.

    Frontal people (the person's right side on the image's left, as in LIP) made of the LIP
    parts (hair, hat, face, sunglasses, scarf, upper-clothes/dress/coat, pants/skirt, arms,
    legs, gloves, socks, shoes) in varied poses, sizes, rotations, limb widths and colours over
    cluttered backgrounds. image_size: int or (H, W). dataset[i] is transform(record, i), or
    the PersonRecord when transform is None; dataset.record(i) always gives the record.
    Records carry objpos (person centre) and scale_provided (person height / 200) like LIP.
    """

    def __init__(self, count, seed=0, image_size=128, transform=None, cache=True):
        raise NotImplementedError("interface only; the generator lands in the next commit")
