"""Model parts: layers, the VGG16 backbone, poolings, heads, the tower, losses.

Poolings, heads and losses are registries (`microrep.registry`): a new one is
one entry. Importing this package registers microrep's Keras layers and losses,
so saved towers and checkpoints load.
"""

from microrep.nn import heads, layers, losses, pooling  # noqa: F401  (registrations)
from microrep.nn.backbone import (AUTO_FEATURE_LAYERS, MIN_INPUT_SIZE, MIXED_POLICY,
                                  check_input_size, check_weights_source, dtype_policy,
                                  feature_layer_names)
from microrep.nn.losses import (ContrastiveLoss, GradedContrastiveLoss, PairAccuracy,
                                contrastive_loss, graded_contrastive_loss, pair_loss)
from microrep.nn.tower import (build_feature_tower, build_head, build_siamese, build_tower,
                               head_layers, precision_policy)
