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


def test_settings_files_of_the_earlier_layout_still_load(tmp_path):
    """reproduce and demo once declared their own training settings; those files still load."""
    from microrep.config import DemoConfig, ReproduceConfig

    old_reproduce = {"data": {"data": "uhcsdb", "data_dir": "dev"}, "input_size": 96,
                     "vgg_blocks": 4, "epochs": 3, "learning_rate": 1e-3, "seed": 2, "folds": 3}
    config = from_dict(ReproduceConfig, old_reproduce)
    assert (config.train.data.data, config.train.model.input_size, config.train.model.vgg_blocks,
            config.train.epochs, config.train.seed, config.folds) == ("uhcsdb", 96, 4, 3, 2, 3)
    old_demo = {"samples_per_class": 2, "images_per_sample": 3, "image_size": 64, "epochs": 2,
                "pairs_per_epoch": 16, "embedding_dim": 8}
    demo = from_dict(DemoConfig, old_demo)
    assert (demo.train.data.synthetic_samples_per_class, demo.train.data.synthetic_image_size,
            demo.train.pairs.pairs_per_epoch, demo.train.model.embedding_dim) == (2, 64, 16, 8)
    assert demo.train.model.input_size == 48  # the demo's own default, not train's 224
    with pytest.raises(ConfigError, match="unknown setting"):
        from_dict(DemoConfig, {"samples": 2})
