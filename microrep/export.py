"""Export the embedding tower: a TensorFlow SavedModel and a native .keras file.

This module is one of the two places that need TensorFlow (with tf.data in
`pairs`): `model.export(..., format="tf_saved_model")` writes a SavedModel that
plain TensorFlow (`tf.saved_model.load`) and TF Serving reload without microrep
or Keras. Its `serve` signature takes uint8 grayscale crops (batch, S, S, 1) and
returns embeddings.
"""

import importlib.util
import shutil
import tempfile
from pathlib import Path

from microrep.errors import MicrorepError
from microrep.fileio import atomic_path, replace_dir, write_json

SAVEDMODEL = "savedmodel"
KERAS_FILE = "tower.keras"


class ExportError(MicrorepError):
    """The model cannot be exported here."""


def export_tower(tower, out_dir):
    """Write `out_dir/savedmodel/` and `out_dir/tower.keras`; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / KERAS_FILE) as tmp:
        tower.save(tmp)
    if importlib.util.find_spec("tensorflow") is None:
        raise ExportError("exporting a SavedModel needs TensorFlow: pip install tensorflow "
                          f"(the .keras file was written to {out_dir / KERAS_FILE})")
    staging = Path(tempfile.mkdtemp(prefix=".savedmodel.", dir=out_dir))
    try:
        tower.export(str(staging / "model"), format="tf_saved_model", verbose=False)
        replace_dir(staging / "model", out_dir / SAVEDMODEL)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    size = int(tower.input_shape[1])
    write_json(out_dir / "export.json", {
        "savedmodel": SAVEDMODEL, "keras": KERAS_FILE, "endpoint": "serve",
        "input": {"shape": [None, size, size, 1], "dtype": "uint8",
                  "meaning": "grayscale micrograph crops, raw pixel values 0-255"},
        "output": {"shape": [None, int(tower.output_shape[-1])], "dtype": "float32"}})
    return out_dir / SAVEDMODEL, out_dir / KERAS_FILE
