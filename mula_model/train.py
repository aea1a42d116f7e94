"""Training: RMSprop with the spec's step schedule, the summed multi-stage
loss, per-epoch JSON-lines log, atomic checkpoints with exact resume, best
models by PCKh and by mIoU, AMP, and DDP under torchrun."""
import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Optional

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from . import checkpoint, distributed, thread_count
from .amp import autocast
from .config import DataConfig, ModelConfig, TrainConfig
from .data import EvalTransform, LIPDataset, SyntheticPeople, TrainTransform, atomic_write, make_loader
from .evaluate import evaluate_model
from .losses import mula_loss
from .models import build_model

LAST, BEST_PCKH, BEST_MIOU, LOG = "last.pt", "best_pckh.pt", "best_miou.pt", "log.jsonl"
VAL_SEED_OFFSET = 1_000_003  # held-out synthetic people come from another seed


def build_datasets(data: DataConfig, input_size: int, seed: int):
    """(train, val) data sets with the training augmentation and the evaluation transform."""
    train_transform = TrainTransform(input_size=input_size, sigma=data.heatmap_sigma, scale_range=data.scale_range,
                                     seed=seed)
    if data.root is not None:
        val = LIPDataset(data.root, "val", EvalTransform(input_size, data.heatmap_sigma))
        return LIPDataset(data.root, "train", train_transform), val
    train = SyntheticPeople(data.synthetic_train, seed=data.synthetic_seed, image_size=data.synthetic_size(input_size),
                            transform=train_transform, accessories=data.synthetic_accessories)
    return train, synthetic_validation(data, input_size)


def synthetic_validation(data: DataConfig, input_size: int) -> SyntheticPeople:
    """Held-out synthetic people: drawn from another seed than the training ones."""
    return SyntheticPeople(data.synthetic_val, seed=data.synthetic_seed + VAL_SEED_OFFSET,
                           image_size=data.synthetic_size(input_size),
                           transform=EvalTransform(input_size, data.heatmap_sigma),
                           accessories=data.synthetic_accessories)


class EpochLog:
    """log.jsonl: one JSON object per completed epoch, appended and flushed to
    disk; on resume, lines of epochs after the checkpoint are dropped."""

    def __init__(self, path: Path, keep_epochs: int):
        self.path = path
        kept = []
        if path.exists():
            kept = [line for line in path.read_text().splitlines()
                    if line.strip() and json.loads(line)["epoch"] <= keep_epochs]
        atomic_write(path, "".join(line + "\n" for line in kept).encode())

    def append(self, entry: dict) -> None:
        with open(self.path, "a") as file:
            file.write(json.dumps(entry) + "\n")
            file.flush()
            os.fsync(file.fileno())


def train(model_config: ModelConfig, train_config: TrainConfig, data_config: DataConfig, out_dir,
          resume: bool = False, device: str = "auto", show_progress: bool = True) -> dict:
    """Trains and returns the last evaluation's metrics. With resume, continues
    from out_dir/last.pt exactly where it stopped (same data order, same next loss)."""
    context = distributed.setup(device)
    try:
        return _train(model_config, train_config, data_config, Path(out_dir), resume, context, show_progress)
    finally:
        distributed.teardown(context)


def _train(model_config, train_config, data_config, out_dir, resume, context, show_progress):
    if train_config.batch_size % context.world_size:
        raise ValueError(f"train: expected the global batch_size ({train_config.batch_size}) to be divisible "
                         f"by the number of processes ({context.world_size})")
    if train_config.threads > 0:
        torch.set_num_threads(train_config.threads)
    torch.manual_seed(train_config.seed)
    train_set, val_set = build_datasets(data_config, model_config.input_size, train_config.seed)

    model = build_model(model_config).to(context.device)
    if train_config.threads == thread_count.MEASURED and context.device.type == "cpu":
        local = train_config.batch_size // context.world_size
        with torch.random.fork_rng(devices=[]):
            batch = torch.utils.data.default_collate([train_set[i] for i in range(local)])
        threads, rates = thread_count.fastest_thread_count(model, batch, train_config.parsing_weight)
        if context.is_main:
            measured = ", ".join(f"{n}: {rate:.1f} img/s" for n, rate in rates.items())
            print(f"torch threads measured ({measured}); training with {threads}")
    if context.distributed:
        model = distributed.synchronise_batch_norm(model, context.device)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=train_config.lr)
    scaler = torch.amp.GradScaler("cuda", enabled=train_config.amp and context.device.type == "cuda")
    start_epoch, best = 0, {}
    if resume:
        state = checkpoint.load(out_dir / LAST, map_location=context.device)
        checkpoint.check_compatible(state, model_config, out_dir / LAST)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if state["scaler"]:
            scaler.load_state_dict(state["scaler"])
        start_epoch, best = state["epoch"], state["best"]
    elif (out_dir / LAST).exists():
        raise FileExistsError(f"train: {out_dir / LAST} exists; pass --resume to continue that run, "
                              f"or choose another output folder")
    if context.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(out_dir / "config.json", json.dumps({
            "model": dataclasses.asdict(model_config), "train": dataclasses.asdict(train_config),
            "data": dataclasses.asdict(data_config)}, indent=2).encode())
        log = EpochLog(out_dir / LOG, start_epoch)

    # The schedule resumes from the epoch alone (LambdaLR rebuilds the lr from
    # initial_lr), so checkpoints need no scheduler state; the base lr is this
    # run's, as before, not one a resumed optimizer state carries.
    for group in optimizer.param_groups:
        group["initial_lr"] = train_config.lr
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, train_config.lr_factor, last_epoch=start_epoch - 1)
    trained = model
    if context.distributed:
        trained = DistributedDataParallel(model, device_ids=[context.device.index] if context.device.type == "cuda"
                                          else None)
    local_batch = train_config.batch_size // context.world_size
    metrics = {}
    for epoch in range(start_epoch, train_config.epochs):
        lr = scheduler.get_last_lr()[0]
        loader = make_loader(train_set, local_batch, shuffle=train_config.shuffle, workers=train_config.workers,
                             seed=train_config.seed, epoch=epoch, drop_last=True, rank=context.rank,
                             world_size=context.world_size)
        started = time.perf_counter()
        loss_sum, steps = run_epoch(trained, loader, optimizer, scaler, train_config, context,
                                    f"epoch {epoch + 1}/{train_config.epochs}", show_progress and context.is_main)
        loss = float(distributed.all_reduce_sum(torch.tensor([loss_sum])).item()) / max(steps, 1) / context.world_size
        seconds = time.perf_counter() - started

        last_epoch = epoch + 1 == train_config.epochs
        evaluated = last_epoch or (epoch + 1) % train_config.eval_every == 0
        if context.is_main:
            entry = {"epoch": epoch + 1, "lr": lr, "loss": loss, "seconds": round(seconds, 3),
                     "images_per_second": round(steps * train_config.batch_size / seconds, 2)}
            if evaluated:
                metrics = evaluate_model(model, val_set, train_config.eval_batch_size, context.device,
                                         amp=train_config.amp).summary()
                entry.update(pckh=metrics["pckh"], miou=metrics["miou"])
                best = _save_best(out_dir, model, model_config, epoch + 1, metrics, best)
            checkpoint.save(out_dir / LAST, model, model_config, train_config, optimizer, scaler, epoch + 1, best)
            log.append(entry)
            if show_progress:
                shown = f" PCKh@0.5 {metrics['pckh']:.1f} mIoU {metrics['miou']:.1f}" if evaluated else ""
                print(f"epoch {epoch + 1}: loss {loss:.5f} lr {lr:.2e} {seconds:.1f} s{shown}", flush=True)
        scheduler.step()
        if context.distributed:
            torch.distributed.barrier()
    return metrics


def run_epoch(model, loader, optimizer, scaler, train_config: TrainConfig, context, description, show_progress):
    """One pass over the loader; returns (sum of batch losses, number of steps)."""
    model.train()
    progress = tqdm(total=len(loader), desc=description, disable=not show_progress, unit="batch",
                    dynamic_ncols=True)
    started = time.perf_counter()
    loss_sum, steps = 0.0, 0
    dtype = next(model.parameters()).dtype  # inputs follow the model (float64 in exactness tests)
    for steps, batch in enumerate(loader, start=1):
        image = batch["image"].to(context.device, dtype, non_blocking=True)
        heatmaps = batch["heatmaps"].to(context.device, dtype, non_blocking=True)
        parsing = batch["parsing"].to(context.device, non_blocking=True)
        with autocast(context.device, train_config.amp):
            output = model(image)
        loss = mula_loss(output, heatmaps, parsing, train_config.parsing_weight)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"train: the loss became {loss.item()} at step {steps}; "
                                     f"try a lower --lr or training without --amp")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        loss_sum += loss.item()
        images = steps * image.shape[0] * context.world_size
        progress.set_postfix(loss=f"{loss_sum / steps:.4g}",
                             img_per_s=f"{images / (time.perf_counter() - started):.1f}", refresh=False)
        progress.update()
    progress.close()
    return loss_sum, steps


def _save_best(out_dir: Path, model, model_config, epoch: int, metrics: dict, best: dict) -> dict:
    best = dict(best)
    for key, filename in (("pckh", BEST_PCKH), ("miou", BEST_MIOU)):
        value = metrics[key]
        if key not in best or value > best[key]["value"]:
            best[key] = {"value": value, "epoch": epoch}
            checkpoint.save(out_dir / filename, model, model_config, epoch=epoch, best={key: best[key]})
    return best


def load_trained(path, implementation: str = "mula_ops", model_config: Optional[ModelConfig] = None,
                 device: str = "cpu"):
    """(model in eval mode, its ModelConfig) from a checkpoint; with model_config,
    raises a clear error when the checkpoint was trained with another one."""
    state = checkpoint.load(path, map_location=device)
    if model_config is not None:
        checkpoint.check_compatible(state, model_config, path)
    config = checkpoint.model_config_of(state, implementation)
    model = build_model(config).to(device)
    model.load_state_dict(state["model"])
    return model.eval(), config
