"""Running a model over images: tiles and reader threads, the frozen-feature cache, the archive format."""

from microrep.embedding.archive import (EMBEDDINGS, PROVENANCE, TABLE, embed_part,
                                        read_embeddings, write_embeddings)
from microrep.embedding.parts import PartsArchive, archive_status
from microrep.embedding.features import (FrozenFeatures, compute_frozen_features, crop_bank_plan,
                                         image_keys, model_key)
from microrep.embedding.towers import embed_from_tiles, head_from_tower, head_outputs, tower_from_head
from microrep.embedding.tiles import (LazyImages, default_read_workers, embed_images,
                                      iter_embeddings, iter_tile_batches)
