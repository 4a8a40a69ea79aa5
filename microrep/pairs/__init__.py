"""Training pairs: seeded NumPy samplers, relations and validation splits, feeds, hard pairs."""

from microrep.pairs.feeds import make_pydataset, make_tf_dataset, pair_batches
from microrep.pairs.mining import hard_pairs
from microrep.pairs.relations import pair_relations, similarity_relations, validation_split
from microrep.pairs.samplers import (PLAN_FIELDS, GradedPairSampler, PairSampler,
                                     check_images_fit, crop, crops_from_plan, pair_levels,
                                     random_crop_plan, sampler_for)
