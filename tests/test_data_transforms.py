"""Augmentation and evaluation transforms: joints, parts and pixels stay aligned (flip swaps
included), predictions map back to the original image, everything is reproducible."""
import numpy as np
import pytest
import torch

from mula_model.data import (
    FLIP_PARTS,
    PART,
    EvalTransform,
    SyntheticPeople,
    TrainTransform,
    labels_to_original,
    make_loader,
    points_to_original,
    tensor_to_image,
)
from mula_model.data.transforms import transform_points, warp_image, warp_labels

# Joints drawn strictly inside one side-specific part (wrists on the forearm, ankles under the shoe).
SIDED_JOINTS = {0: {PART["right_shoe"]}, 5: {PART["left_shoe"]},
                10: {PART["right_arm"], PART["glove"]}, 15: {PART["left_arm"], PART["glove"]}}


def labels_under_joints(sample):
    joints, parsing = sample["joints"].numpy(), sample["parsing"].numpy()
    size = parsing.shape[0]
    found = []
    for joint, allowed in SIDED_JOINTS.items():
        x, y = np.round(joints[joint, :2]).astype(int)
        if 0 <= x < size and 0 <= y < size:
            found.append((parsing[y, x], allowed))
    return found


def on_own_part_fraction(samples, swap_labels=False):
    pairs = [pair for sample in samples for pair in labels_under_joints(sample)]
    lut = FLIP_PARTS if swap_labels else np.arange(20)
    return np.mean([lut[label] in allowed for label, allowed in pairs]), len(pairs)


@pytest.mark.parametrize("flip_prob", [0.0, 1.0])
def test_joints_land_on_their_parts_after_augmentation(flip_prob):
    transform = TrainTransform(input_size=96, flip_prob=flip_prob, seed=4)
    people = SyntheticPeople(30, seed=0, image_size=112, transform=transform)
    samples = [people[i] for i in range(len(people))]
    assert all(s["flipped"] == bool(flip_prob) for s in samples)
    fraction, count = on_own_part_fraction(samples)
    assert count >= 80 and fraction >= 0.9
    # Teeth: had the flip moved the joints without swapping the labels (or the reverse),
    # right joints would sit on left parts.
    swapped_fraction, _ = on_own_part_fraction(samples, swap_labels=True)
    assert swapped_fraction < 0.2


def test_image_pixels_follow_the_labels():
    record = SyntheticPeople(1, seed=7, image_size=96).record(0)
    palette = np.random.default_rng(0).integers(0, 256, size=(20, 3)).astype(np.uint8)
    painted = palette[record.parsing]
    transform = TrainTransform(input_size=128, seed=1)
    matrix, _ = transform.matrix(record, np.random.default_rng(3))
    image, labels = warp_image(painted, matrix, 128), warp_labels(record.parsing, matrix, (128, 128))
    inside = np.zeros_like(labels, dtype=bool)
    inside[1:-1, 1:-1] = True
    for dy in (-1, 0, 1):  # pixels whose neighbours share the label: bilinear gives their colour
        for dx in (-1, 0, 1):
            inside &= np.roll(labels, (dy, dx), axis=(0, 1)) == labels
    inside &= labels > 0
    assert inside.sum() > 500
    error = np.abs(image[inside].astype(int) - palette[labels[inside]]).max(axis=1)
    assert (error <= 1).mean() > 0.98  # (an image one pixel off its labels scores about 0.95)


def test_pixel_centre_convention():
    # Upscaling 2x: original pixel x covers input pixels 2x and 2x+1, centred at 2x + 0.5.
    labels = np.zeros((6, 8), dtype=np.uint8)
    labels[2, 5] = 7
    transform = EvalTransform(16)
    from mula_model.data import PersonRecord
    record = PersonRecord("x", np.zeros((6, 8, 3), np.uint8), np.full((16, 3), np.nan, np.float32),
                          np.zeros(2, np.float32), 1.0, labels)
    matrix = transform.matrix(record)
    warped = warp_labels(labels, matrix, (16, 16))
    ys, xs = np.nonzero(warped == 7)
    assert sorted(set(xs)) == [10, 11] and sorted(set(ys)) == [2 * 2 + 2, 2 * 2 + 3]  # 2 rows of padding above
    assert transform_points([[5, 2]], matrix).tolist() == [[10.5, 6.5]]


def test_eval_transform_maps_back_to_the_original():
    record = SyntheticPeople(1, seed=3, image_size=(120, 90)).record(0)
    sample = EvalTransform(64)(record, 0)
    assert sample["image"].shape == (3, 64, 64)
    grey = tensor_to_image(sample["image"])
    assert (grey[:, :8] == 128).all() and (grey[:, -8:] == 128).all()  # width 90 -> 48, padded 8 each side
    back = points_to_original(sample["joints"][:, :2].numpy(), sample["matrix"].numpy())
    assert np.allclose(back, record.joints[:, :2], atol=1e-4)
    labels = labels_to_original(sample["parsing"].numpy().astype(np.uint8), sample["matrix"].numpy(), record.size)
    assert labels.shape == record.size
    assert (labels == record.parsing).mean() > 0.95  # a 2x downscale and back loses only thin edges


def test_train_transform_matrix_round_trips_points():
    record = SyntheticPeople(1, seed=5, image_size=100).record(0)
    sample = TrainTransform(input_size=128, flip_prob=0.0)(record, 0)
    back = points_to_original(sample["joints"][:, :2].numpy(), sample["matrix"].numpy())
    assert np.allclose(back, record.joints[:, :2], atol=1e-4)


def test_samples_are_reproducible_and_vary_with_epoch():
    def sample(epoch, index=2):
        transform = TrainTransform(input_size=64, seed=9)
        transform.set_epoch(epoch)
        return SyntheticPeople(4, seed=1, image_size=64, transform=transform)[index]

    first, again, next_epoch = sample(0), sample(0), sample(1)
    for key in ("image", "heatmaps", "parsing", "joints", "matrix"):
        assert torch.equal(first[key], again[key])
    assert not torch.equal(first["matrix"], next_epoch["matrix"])


def test_synthetic_people_are_deterministic_and_valid():
    a, b, other = (SyntheticPeople(3, seed=s, image_size=80, cache=False) for s in (11, 11, 12))
    for index in range(3):
        ra, rb = a.record(index), b.record(index)
        assert (ra.image == rb.image).all() and (ra.parsing == rb.parsing).all() and (ra.joints == rb.joints).all()
        assert not (ra.image == other.record(index).image).all()
        assert ra.parsing.max() < 20 and len(np.unique(ra.parsing)) >= 8
        assert (ra.joints[:, :2] >= 0).all() and (ra.joints[:, :2] <= 79).all()
    preloaded = SyntheticPeople(3, seed=11, image_size=80).preload()
    assert all((preloaded.record(i).image == a.record(i).image).all() for i in range(3))


def test_accessories_setting_controls_the_rare_parts():
    accessories = [PART[name] for name in ("hat", "sunglasses", "scarf", "glove")]
    plain = SyntheticPeople(20, seed=6, image_size=64, accessories=0.0)
    dressed = SyntheticPeople(20, seed=6, image_size=64, accessories=1.0)
    assert not any(np.isin(plain.record(i).parsing, accessories).any() for i in range(20))
    assert all(np.isin(dressed.record(i).parsing, accessories).sum() > 10 for i in range(20))
    with pytest.raises(ValueError, match="accessories must be a probability"):
        SyntheticPeople(1, accessories=1.5)


def test_loader_epoch_does_not_depend_on_workers():
    people = SyntheticPeople(6, seed=2, image_size=64, transform=TrainTransform(input_size=32, seed=5))
    batches = [list(make_loader(people, 3, workers=workers, seed=1, epoch=2)) for workers in (0, 2)]
    for serial, parallel in zip(*batches):
        assert torch.equal(serial["index"], parallel["index"])
        assert torch.equal(serial["image"], parallel["image"])
        assert torch.equal(serial["heatmaps"], parallel["heatmaps"])


def test_distributed_ranks_split_the_epoch():
    people = SyntheticPeople(8, seed=2, image_size=32)
    indices = [[i for i in make_loader(range(8), 2, rank=rank, world_size=2, seed=3).sampler]
               for rank in (0, 1)]
    assert sorted(indices[0] + indices[1]) == list(range(8)) and len(people) == 8


@pytest.mark.parametrize("size", [0, 30, 100.0])
def test_bad_input_size(size):
    with pytest.raises(ValueError, match="input_size must be a positive multiple of 4"):
        TrainTransform(input_size=size)
