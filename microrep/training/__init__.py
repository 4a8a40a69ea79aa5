"""Training: `train()` (the one entry point), run folders, shared callbacks, the two ways to fit."""

from microrep.training.run_dir import (BEST, BEST_TOWER, CHECKPOINT, LOCK, LOG, STATE, TOWER,
                                       RunLock, TrainResult, differing_settings, load_tower,
                                       prepare_run_dir)
from microrep.training.train import train
