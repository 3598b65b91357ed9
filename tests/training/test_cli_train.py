"""`register_train_commands`: train / eval / synth sub-commands, config errors."""
from __future__ import annotations

import argparse
import json


from training_helpers import CONFIGS
from ovsam_core.cli_train import main, register_train_commands


def test_commands_register_on_a_parent_parser():
    p = argparse.ArgumentParser(prog="ovsam")
    sub = p.add_subparsers(dest="command", required=True)
    register_train_commands(sub)
    a = p.parse_args(["train", "clip2sam", "cfg.yaml", "--set", "optim.lr=1e-3", "--resume", "none"])
    assert a.train_command == "clip2sam" and a.overrides == ["optim.lr=1e-3"] and callable(a.func)
    a = p.parse_args(["train", "distill", "cfg.yaml"])
    assert a.train_command == "distill"
    a = p.parse_args(["eval", "--images", "i", "--annotations", "a.json", "--out", "o", "--baselines", "image-crop"])
    assert a.model == "ovsam-lvis-eval" and a.sam == "vit_h"
    a = p.parse_args(["synth", "out", "--splits", "train:2"])
    assert a.seed == 0


def test_synth_and_print_config(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "d"), "--splits", "train:3,val:2", "--seed", "1"]) == 0
    doc = json.loads((tmp_path / "d" / "annotations" / "instances_val.json").read_text())
    assert len(doc["images"]) == 2
    capsys.readouterr()
    assert main(["train", "clip2sam", str(CONFIGS / "clip2sam_coco_rn50x16.yaml"), "--print-config",
                 "--set", "run.batch_size=3"]) == 0
    out = capsys.readouterr().out
    assert "batch_size: 3" in out and "num_points: 12544" in out


def test_user_errors_exit_2(tmp_path, capsys):
    assert main(["train", "clip2sam", str(CONFIGS / "clip2sam_coco_rn50x16.yaml"), "--set", "optim.nope=1"]) == 2
    assert "unknown config key 'optim.nope'" in capsys.readouterr().err
    assert main(["train", "distill", str(tmp_path / "missing.yaml")]) == 2
    assert main(["synth", str(tmp_path / "x"), "--splits", "train"]) == 2
