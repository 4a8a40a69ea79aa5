"""Settings: fields and parsing, one dataclass per stage, presets, command-line flags.

Nothing here is global: each stage receives its settings as an argument.
"""

from microrep.config.fields import (AUTO, check_bounds, count_option, from_dict, group,
                                    nest_flat_keys, option, parse_batch_size, read_config_file,
                                    save_config, setting_name, to_dict, validate)
from microrep.config.flags import add_config_flags, config_example, config_from_args, stored_run
from microrep.config.presets import PRESETS, QUICK, Preset, apply_preset
from microrep.config.stages import (STAGE_OWNED, TASKS, DataConfig, DemoConfig, EmbedConfig,
                                    EvalConfig, ExploreConfig, ExportConfig, FetchConfig,
                                    ModelConfig, PairConfig, PredictConfig, ReproduceConfig, SearchConfig, StatusConfig, IndexConfig,
                                    TrainConfig, ViewConfig, demo_train_config,
                                    paper_train_config, recipe_model_config)
