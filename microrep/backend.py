"""Starting Keras and its backend without TensorFlow's start-up chatter.

TensorFlow's C++ start-up lines (absl, oneDNN, CUDA probing on a CPU machine)
ignore Python's logging; the CLI and the notebooks (`microrep.quiet_start()`)
start the backend through here so a user's first lines are microrep's own.
"""

import os
import sys


def quiet_logs():
    """Hide TensorFlow's start-up chatter (CUDA probing on CPU machines) unless asked for."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3":
        import logging

        logging.getLogger("tensorflow").setLevel(logging.ERROR)  # e.g. retracing notices



def import_backend_quietly():
    """Import Keras and start its backend with stderr silenced at the file-descriptor level.

    Why: TensorFlow's C++ start-up lines (absl, oneDNN, CUDA probing on a CPU machine)
    ignore TF_CPP_MIN_LOG_LEVEL and would come before every command's own first line.
    If the import fails, what was silenced is printed after all. TF_CPP_MIN_LOG_LEVEL
    below 3 keeps everything visible.
    """
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") != "3":
        return
    import tempfile

    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            import keras

            if keras.backend.backend() == "tensorflow":
                import tensorflow as tf

                tf.config.list_physical_devices("GPU")
                tf.constant(0.0) + 1.0  # the first op probes the devices (and logs it)
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def quiet_start():
    """For notebooks and scripts: quiet logs, then Keras and its backend imported silently."""
    quiet_logs()
    import_backend_quietly()
