"""The command line is generated from the config dataclasses: every field is
a flag, defaults round-trip, and a new field needs no CLI code."""
import argparse
import dataclasses
from typing import Optional, Tuple

from mula_model.cli import _configs, build_parser
from mula_model.config import DataConfig, ModelConfig, TrainConfig
from mula_model.config_flags import add_config_options, config_from_args


def test_train_defaults_are_the_dataclass_defaults():
    args = build_parser().parse_args(["train", "--out", "run"])
    model, train, data = _configs(args)
    assert (model, train, data) == (ModelConfig(), TrainConfig(), DataConfig())


def test_every_config_field_is_settable_from_the_train_command():
    args = build_parser().parse_args(["train", "--out", "run", "--stages", "3", "--no-mutual-adaptation",
                                      "--data", "lip", "--scale-range", "0.5", "2", "--lr-milestones", "0.5",
                                      "--lr-factors", "0.1", "--amp", "--heatmap-sigma", "3.5"])
    model, train, data = _configs(args)
    assert model.stages == 3 and not model.mutual_adaptation
    assert data.root == "lip" and data.scale_range == (0.5, 2.0) and data.heatmap_sigma == 3.5
    assert train.lr_milestones == (0.5,) and train.lr_factors == (0.1,) and train.amp
    for config in (ModelConfig, TrainConfig, DataConfig):
        assert all(hasattr(args, field.name) for field in dataclasses.fields(config)), config.__name__


def test_a_new_field_becomes_a_flag():
    Extra = dataclasses.make_dataclass("Extra", [
        ("new_size", int, 3), ("switch", bool, False), ("pair", Tuple[float, float], (1.0, 2.0)),
        ("maybe", Optional[int], None), ("name", str, "a")])
    parser = argparse.ArgumentParser()
    add_config_options(parser, Extra, "extra", choices={"name": ("a", "b")})
    assert config_from_args(Extra, parser.parse_args([])) == Extra()
    parsed = config_from_args(Extra, parser.parse_args(["--new-size", "5", "--switch", "--pair", "3", "4",
                                                        "--maybe", "7", "--name", "b"]))
    assert parsed == Extra(5, True, (3.0, 4.0), 7, "b")
