"""Command line: `python -m mula_model train|evaluate|predict|demo ...` (also
installed as the `mula` console script)."""
import argparse
import glob
import sys
import time
from pathlib import Path

import torch

from .config import BACKBONES, IMPLEMENTATIONS, NEXT_STAGE_INPUTS, DataConfig, ModelConfig, TrainConfig

# The main job: a small MuLA that learns the synthetic people in minutes on a
# 2-core CPU (measured in the README).
DEMO_MODEL = dict(stages=2, features=64, hourglass_depth=3, input_size=128)
DEMO_TRAIN = dict(epochs=12, batch_size=16, lr=0.0015, eval_every=4, threads=2)
DEMO_DATA = dict(synthetic_train=1024, synthetic_val=128)


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _add_model_options(parser, defaults: dict):
    group = parser.add_argument_group("model")
    group.add_argument("--backbone", choices=BACKBONES, default=defaults.get("backbone", "hourglass"))
    group.add_argument("--stages", type=int, default=defaults.get("stages", 5))
    group.add_argument("--features", type=int, default=defaults.get("features", 256))
    group.add_argument("--hourglass-depth", type=int, default=defaults.get("hourglass_depth", 4))
    group.add_argument("--input-size", type=int, default=defaults.get("input_size", 256))
    group.add_argument("--no-mutual-adaptation", dest="mutual_adaptation", action="store_false",
                       help="the paper's baseline: no adapters, no adaptive convolution")
    group.add_argument("--next-stage-input", choices=NEXT_STAGE_INPUTS, default="preliminary",
                       help="feature fed to the next stage: preliminary R (code) or refined R' (paper)")
    group.add_argument("--align-corners", type=_bool, default=True, help="bilinear upsampling (code: true)")


def _add_implementation(parser):
    parser.add_argument("--implementation", choices=IMPLEMENTATIONS, default="mula_ops",
                        help="dynamic depthwise convolution: compiled operator or a pure-PyTorch reference")


def _add_data_options(parser, defaults: dict):
    group = parser.add_argument_group("data")
    group.add_argument("--data", default=None, metavar="LIP_ROOT",
                       help="LIP-format data folder (default: the built-in synthetic people)")
    group.add_argument("--synthetic-train", type=int, default=defaults.get("synthetic_train", 2000))
    group.add_argument("--synthetic-val", type=int, default=defaults.get("synthetic_val", 200))
    group.add_argument("--synthetic-seed", type=int, default=0)


def _add_train_options(parser, defaults: dict):
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=int, default=defaults.get("epochs", 250))
    group.add_argument("--batch-size", type=int, default=defaults.get("batch_size", 24),
                       help="global batch, split over torchrun processes")
    group.add_argument("--lr", type=float, default=defaults.get("lr", 0.0015))
    group.add_argument("--parsing-weight", type=float, default=0.01)
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--eval-every", type=int, default=defaults.get("eval_every", 1))
    group.add_argument("--amp", action="store_true", help="mixed precision (bfloat16 on CPU, float16 on GPU)")
    group.add_argument("--workers", type=int, default=0, help="data loading processes")
    group.add_argument("--threads", type=int, default=defaults.get("threads", 0),
                       help="torch threads per process (0: torch's default)")
    group.add_argument("--device", default="auto", help="auto, cpu or cuda")


def _configs(args):
    model = ModelConfig(backbone=args.backbone, stages=args.stages, features=args.features,
                        hourglass_depth=args.hourglass_depth, input_size=args.input_size,
                        mutual_adaptation=args.mutual_adaptation, next_stage_input=args.next_stage_input,
                        align_corners=args.align_corners, implementation=args.implementation)
    train = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                        parsing_weight=args.parsing_weight, seed=args.seed, eval_every=args.eval_every,
                        amp=args.amp, workers=args.workers, threads=args.threads)
    data = DataConfig(root=args.data, synthetic_train=args.synthetic_train, synthetic_val=args.synthetic_val,
                      synthetic_seed=args.synthetic_seed)
    return model, train, data


def _device(name: str) -> str:
    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


def command_train(args) -> dict:
    from .train import train
    model, train_config, data = _configs(args)
    return train(model, train_config, data, args.out, resume=args.resume, device=args.device)


def command_evaluate(args) -> dict:
    from .data import EvalTransform, LIPDataset
    from .evaluate import evaluate_model, format_summary, parsing_png_writer, write_outputs
    from .train import load_trained, synthetic_validation
    device = _device(args.device)
    model, config = load_trained(args.checkpoint, args.implementation, device=device)
    if args.data is None:
        dataset = synthetic_validation(DataConfig(synthetic_val=args.synthetic_val, synthetic_seed=args.synthetic_seed),
                                       config.input_size)
    else:
        dataset = LIPDataset(args.data, args.split, EvalTransform(config.input_size))
    writer = parsing_png_writer(args.out) if args.out else None
    evaluation = evaluate_model(model, dataset, args.batch_size, device, amp=args.amp, on_parsing=writer)
    if args.out:
        write_outputs(evaluation, args.out)
    summary = evaluation.summary()
    print(format_summary(summary))
    return summary


def command_predict(args) -> list:
    from .predict import predict_images
    from .train import load_trained
    device = _device(args.device)
    model, config = load_trained(args.checkpoint, args.implementation, device=device)
    paths = [path for pattern in args.images for path in sorted(glob.glob(pattern)) or [pattern]]
    written = predict_images(model, paths, args.out, config.input_size, device)
    for path in written:
        print(path)
    return written


def command_demo(args) -> dict:
    """Trains the small demo MuLA on synthetic people, evaluates it on held-out
    ones and writes a picture of its predictions."""
    from .evaluate import evaluate_model, format_summary
    from .train import LAST, load_trained, synthetic_validation, train
    from .predict import save_prediction_grid
    started = time.perf_counter()
    out = Path(args.out)
    model_config = ModelConfig(**DEMO_MODEL, implementation=args.implementation)
    train_config = TrainConfig(**DEMO_TRAIN)
    data_config = DataConfig(**DEMO_DATA)
    train(model_config, train_config, data_config, out, resume=args.resume)
    model, _ = load_trained(out / LAST, args.implementation)
    val = synthetic_validation(data_config, model_config.input_size)
    summary = evaluate_model(model, val, train_config.eval_batch_size).summary()
    picture = save_prediction_grid(out / "predictions.png", model, val, 6, model_config.input_size)
    print(f"held-out synthetic images: {len(val)}; total time {time.perf_counter() - started:.0f} s")
    print(format_summary(summary))
    print(f"predictions: {picture}")
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mula", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train MuLA (torchrun for several processes)")
    _add_model_options(train, {})
    _add_implementation(train)
    _add_data_options(train, {})
    _add_train_options(train, {})
    train.add_argument("--out", required=True, help="run folder: checkpoints, log.jsonl, config.json")
    train.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    train.set_defaults(run=command_train)

    evaluate = commands.add_parser("evaluate", help="evaluate a checkpoint with the LIP protocol")
    evaluate.add_argument("checkpoint")
    _add_implementation(evaluate)
    _add_data_options(evaluate, {})
    evaluate.add_argument("--split", default="val", choices=("train", "val"))
    evaluate.add_argument("--batch-size", type=int, default=16)
    evaluate.add_argument("--amp", action="store_true")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--out", default=None, help="write pose_predictions.csv and parsing/*.png here")
    evaluate.set_defaults(run=command_evaluate)

    predict = commands.add_parser("predict", help="predict on image files")
    predict.add_argument("checkpoint")
    predict.add_argument("images", nargs="+", help="image files or glob patterns")
    predict.add_argument("--out", required=True)
    _add_implementation(predict)
    predict.add_argument("--device", default="auto")
    predict.set_defaults(run=command_predict)

    demo = commands.add_parser("demo", help="the main job: train a small MuLA on synthetic people and evaluate it")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--resume", action="store_true")
    _add_implementation(demo)
    demo.set_defaults(run=command_demo)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"mula {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mula {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0
