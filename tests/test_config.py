import argparse
import json

import pytest

from microrep.config import TrainConfig, add_config_flags, config_from_args, from_dict
from microrep.errors import ConfigError


def parse(argv, source=("--data", "synthetic")):
    parser = argparse.ArgumentParser()
    add_config_flags(parser, TrainConfig)
    return config_from_args(TrainConfig, parser.parse_args([*source, *argv]))


def test_defaults_are_the_recipe_at_the_papers_input():
    """The paper's 224-px ImageNet VGG16 input; the recipe's frozen base, blocks 4+5 and
    residual head (not the paper's fine-tuned projection, which `paper_train_config` keeps)."""
    from microrep.config import paper_train_config

    config = parse([])
    assert config.model.input_size == 224 and config.model.weights == "imagenet"
    assert config.model.train_base is False and config.model.head == "residual"
    assert config.model.feature_layers == "auto"  # block4_conv3 and block5_conv3 at 224 px
    paper = paper_train_config()
    assert paper.model.train_base is True and paper.model.head == "projection"


def test_a_run_without_a_data_source_asks_for_one():
    with pytest.raises(ConfigError, match="which micrographs"):
        parse([], source=())
    assert parse([], source=("--images", "some/folder")).data.data == "images"


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


def test_embed_picks_the_precision_as_the_cpu_preset_does_unless_told():
    from microrep.config import EmbedConfig
    from microrep.device import cpu_has_native_bfloat16

    def embed(*argv):
        parser = argparse.ArgumentParser()
        add_config_flags(parser, EmbedConfig)
        return config_from_args(EmbedConfig, parser.parse_args(["--images", "x", *argv]))

    assert embed("--pretrained").model.mixed_precision is cpu_has_native_bfloat16()
    assert embed("--pretrained", "--no-mixed-precision").model.mixed_precision is False
    assert embed("--pretrained", "--mixed-precision").model.mixed_precision is True
