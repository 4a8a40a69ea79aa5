"""What the processor computes fast: used to choose a precision for CPU work.

Why: on a CPU with AMX or AVX-512 BF16 (Intel Sapphire Rapids and later, AMD
Zen 4 and later), VGG16 runs about four times faster in bfloat16 than in
float32 (12.5 vs 52.7 images/s up to block 4 on 2 cores), with pooled features
within cosine 0.99996 of float32; elsewhere bfloat16 is emulated and slower.
"""

from pathlib import Path

NATIVE_BFLOAT16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The processor's feature flags (Linux); empty where they cannot be read."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_has_native_bfloat16(cpuinfo="/proc/cpuinfo"):
    """True where the CPU multiplies bfloat16 matrices natively (AMX or AVX-512 BF16)."""
    return bool(cpu_flags(cpuinfo) & set(NATIVE_BFLOAT16_FLAGS))


def precision_words(mixed_precision):
    """How a setting's precision reads in a plan line: 'bfloat16 (this CPU multiplies
    bfloat16 natively)' or 'float32', so every command says it the same way."""
    if not mixed_precision:
        return "float32"
    return "bfloat16" + (" (this CPU multiplies bfloat16 natively)" if cpu_has_native_bfloat16()
                         else "")


def accelerator():
    """The Keras backend's first GPU/TPU as 'platform:name', or None on a CPU-only machine."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return None if device.platform == "cpu" else f"{device.platform}:{device.device_kind}"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return f"gpu:{tf.config.experimental.get_device_details(gpus[0]).get('device_name', gpus[0].name)}" \
            if gpus else None
    if backend == "torch":
        import torch

        return f"gpu:{torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else None
    return None


def is_out_of_memory(error):
    """True for the device-memory errors of JAX/XLA, TensorFlow and PyTorch (and host MemoryError)."""
    if isinstance(error, MemoryError):
        return True
    text = f"{type(error).__name__}: {error}".lower()
    return any(mark in text for mark in ("resource_exhausted", "resourceexhausted",
                                         "out of memory", "outofmemory", "oom when allocating"))
