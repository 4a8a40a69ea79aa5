"""Presets: named, typed overrides of a stage's settings that store differences only.

`microrep train --preset cpu|gpu` fills the settings a user did not give;
`microrep reproduce --quick` replaces the model and training settings. Each
preset holds only what differs from its stage's defaults; `Preset.check`
(run by the tests for every preset) refuses one that names a setting that does
not exist or carries a value out of range.
"""

import dataclasses

from microrep.config.fields import from_dict, nest_flat_keys
from microrep.config.stages import EmbedConfig, ReproduceConfig, TrainConfig
from microrep import device
from microrep.errors import ConfigError

#: A preset value resolved when the preset is applied: the processor's bfloat16 support.
NATIVE_BFLOAT16 = "native bfloat16"


@dataclasses.dataclass(frozen=True)
class Preset:
    """Nested overrides of a stage's settings (only those that differ from its defaults)."""

    stage: type
    overrides: dict
    description: str = ""

    def resolved(self):
        """The overrides with values chosen at run time (NATIVE_BFLOAT16) filled in."""
        def resolve(node):
            return {key: resolve(value) if isinstance(value, dict) else
                    (device.cpu_has_native_bfloat16() if value == NATIVE_BFLOAT16 else value)
                    for key, value in node.items()}

        return resolve(self.overrides)

    def fill(self, values):
        """`values` (nested) with the preset's settings wherever they do not set them."""
        values = nest_flat_keys(self.stage, values)
        _merge_under(values, self.resolved())
        return values

    def replace(self, config):
        """`config` (of this preset's stage) with the preset's settings replacing its own."""
        return from_dict(self.stage, self.resolved(), "preset", base=config)

    def check(self):
        """ConfigError unless every override names a setting of the stage, in range."""
        from_dict(self.stage, {key: value for key, value in
                               Preset(self.stage, self.overrides).resolved().items()})
        return self


def _merge_under(values, overrides):
    for key, value in overrides.items():
        if isinstance(value, dict):
            _merge_under(values.setdefault(key, {}), value)
        else:
            values.setdefault(key, value)


#: `microrep train --preset NAME`. TrainConfig's defaults are the recipe measured on the
#: UHCSDB development copy (frozen VGG16 at 224 px, blocks 4+5 pooled, residual head,
#: graded loss, hard pairs); 'cpu' adds the precision chosen from the processor at start,
#: 'gpu' fine-tunes the whole base (not measured on a GPU yet).
PRESETS = {
    "cpu": Preset(TrainConfig, {"model": {"mixed_precision": NATIVE_BFLOAT16}},
                  "the defaults, in bfloat16 where the CPU computes it natively"),
    "gpu": Preset(TrainConfig, {"model": {"train_base": True, "mixed_precision": True},
                                "learning_rate": 1e-5},
                  "the same head and loss while fine-tuning all of VGG16"),
}

#: `reproduce --quick`: 96x96 crops of images shrunk so 4 crops span the shorter side, four
#: VGG16 blocks kept frozen (their features of 16 crops per image and of every tile computed
#: once), a contrastive projection head trained per fold, 3 folds. Chosen on the UHCSDB
#: development copy against 48x48 crops with three blocks (baseline 3phase / constituent /
#: processing 88.6 / 79.9 / 52.5% there, 94.5 / 87.7 / 61.7% here).
QUICK = Preset(ReproduceConfig, {
    "train": {"model": {"input_size": 96, "vgg_blocks": 4, "train_base": False, "embedding_dim": 128},
              "pairs": {"pairs_per_epoch": 1024},
              "feature_bank": 16, "epochs": 30, "learning_rate": 1e-3,
              "image_view": {"view": "tiles"}},
    "image_scale": 0.0, "folds": 3, "processing_folds": 3})


#: `microrep embed` fills what a user did not give: --pretrained computes in bfloat16 where
#: the CPU does natively, as `train --preset cpu` (VGG16 to block4 runs about twice as fast;
#: held-out accuracy on the UHCSDB dev copy checked against float32 in docs/speed.md).
#: --no-mixed-precision keeps float32.
EMBED_DEFAULTS = Preset(EmbedConfig, {"model": {"mixed_precision": NATIVE_BFLOAT16}},
                        "the pretrained pass in bfloat16 where the CPU computes it natively")


def apply_preset(values):
    """Fill a TrainConfig settings dict with its preset's values wherever it does not set them."""
    values = nest_flat_keys(TrainConfig, values)
    name = values.get("preset") or "none"
    if name == "none":
        return values
    if name not in PRESETS:
        raise ConfigError(f"preset must be one of {', '.join(PRESETS)}, got {name!r}")
    return PRESETS[name].fill(values)


def reproduce_preset(values, accelerator=None):
    """(values, base) of a `microrep reproduce` settings dict: which training each fold runs.

    --preset cpu (the default without a GPU): microrep's recipe, its VGG16 base frozen at
    full resolution, so every image's features are computed once and cached and each
    fold trains only the head (on the whole-frame pieces it embeds, REPRODUCE_CPU); --preset gpu (the default with one): the paper's
    fine-tuning of the whole base in every fold. Flags given still override either;
    --quick replaces both. `accelerator` is device.accelerator()'s answer.
    """
    values = nest_flat_keys(ReproduceConfig, values)
    if values.get("quick"):
        return values, ReproduceConfig()
    train = values.setdefault("train", {})
    name = train.get("preset") or "none"
    if name == "none":
        name = "gpu" if accelerator else "cpu"
    train["preset"] = name
    if name not in PRESETS:
        raise ConfigError(f"preset must be one of {', '.join(PRESETS)}, got {name!r}")
    values["train"] = PRESETS[name].fill(train)
    if name == "gpu":
        return values, ReproduceConfig()
    _merge_under(values["train"], REPRODUCE_CPU)
    return values, ReproduceConfig(train=TrainConfig())


#: What `reproduce --preset cpu` changes in the recipe: each head trains on the whole-frame
#: pieces it embeds (--feature-bank 0) instead of 16 native-resolution crops. On the UHCSDB
#: dev copy (micrograph folds) 97.4 / 91.5 / 85.0 % against 97.1 / 92.1 / 83.3 % (3 phases,
#: all classes, processing), and the base runs over the frames only: half the cold time.
REPRODUCE_CPU = {"feature_bank": 0}
