import argparse
import json

import pytest

from microrep.config import TrainConfig, add_config_flags, config_from_args, from_dict
from microrep.errors import ConfigError


def parse(argv):
    parser = argparse.ArgumentParser()
    add_config_flags(parser, TrainConfig)
    return config_from_args(TrainConfig, parser.parse_args(argv))


def test_defaults_follow_the_paper():
    config = parse([])
    assert config.model.input_size == 224 and config.model.weights == "imagenet"


def test_file_then_flags(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("epochs: 3\nmodel:\n  input_size: 64\n  l2_normalize: false\ndata:\n  task: 3phase\n")
    config = parse(["--config", str(path), "--epochs", "5"])
    assert config.epochs == 5 and config.model.input_size == 64
    assert config.model.l2_normalize is False and config.data.task == "3phase"
    json_path = tmp_path / "run.json"
    json_path.write_text(json.dumps({"margin": 2}))
    assert parse(["--config", str(json_path), "--no-augment"]).pairs.augment is False
    assert parse(["--config", str(json_path)]).margin == 2.0


def test_unknown_setting_bad_type_and_bad_choice_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="epoch_count"):
        from_dict(TrainConfig, {"epoch_count": 3})
    with pytest.raises(ConfigError, match="epochs"):
        from_dict(TrainConfig, {"epochs": "many"})
    with pytest.raises(ConfigError, match="task"):
        from_dict(TrainConfig, {"data": {"task": "hardness"}})


def test_unreadable_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        parse(["--config", str(tmp_path / "missing.yaml")])
    broken = tmp_path / "broken.yaml"
    broken.write_text("epochs: [3\n")
    with pytest.raises(ConfigError, match="not valid"):
        parse(["--config", str(broken)])
