"""VGG16's convolutional base: weights from ImageNet, a file or none, cut after some blocks.

The base keeps VGG16's layer names (block4_conv3, ...), so a tower's tapped
layers are named as in the paper and in DeCost et al.; its max-pooling is
`ReshapeMaxPool` (same values, faster gradient).
"""

import contextlib
import socket
from pathlib import Path

import keras

from microrep.config.stages import is_random_weights
from microrep.errors import ConfigError, WeightsError
from microrep.nn.layers import ReshapeMaxPool

MIN_INPUT_SIZE = 32  # VGG16 halves the side five times
#: Seconds to wait for the ImageNet weights' server before giving up (offline machines).
DOWNLOAD_TIMEOUT = 15

#: feature_layers "auto": blocks 4 and 5 together (on the UHCSDB development copy their
#: pooled maps trained best; block 4 alone beats block 5 as pretrained features), else
#: the last convolution of the last block kept.
AUTO_FEATURE_LAYERS = {1: ("block1_conv2",), 2: ("block2_conv2",), 3: ("block3_conv3",),
                       4: ("block4_conv3",), 5: ("block4_conv3", "block5_conv3")}

#: The Keras dtype policy of --mixed-precision: bfloat16 compute, float32 weights (on every
#: backend and device microrep runs on; float16 would need loss scaling).
MIXED_POLICY = "mixed_bfloat16"


def with_reshape_pooling(model):
    """`model` with every MaxPooling2D((2, 2)) replaced by ReshapeMaxPool, same weights."""

    def swap(layer):
        if isinstance(layer, keras.layers.MaxPooling2D) and tuple(layer.pool_size) == (2, 2) \
                and tuple(layer.strides) == (2, 2) and layer.padding == "valid":
            return ReshapeMaxPool(name=layer.name, dtype=layer.dtype_policy.name)
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=swap)
    copy.set_weights(model.get_weights())
    return copy


def policy_for(mixed_precision):
    """The Keras dtype policy of a `mixed_precision` setting: the one answer every model
    builder, feature cache and embedder uses (so their precision keys agree)."""
    return MIXED_POLICY if mixed_precision else "float32"


@contextlib.contextmanager
def dtype_policy(name):
    """Build layers under a dtype policy, restoring the previous one afterwards.

    keras.applications models take their policy from Keras' global setting; this
    keeps the change local to model building instead of leaking into the process.
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def build_vgg16_base(input_size, weights, blocks=5):
    """VGG16's convolutional base, cut after `blocks` blocks.

    Weights are 'imagenet', 'none' or a local file of the full base; cutting
    after loading keeps the pretrained values of the blocks that remain.
    """
    if blocks not in (1, 2, 3, 4, 5):
        raise ConfigError(f"vgg_blocks must be 1 to 5, got {blocks}")
    base = load_vgg16(input_size, weights)
    if blocks < 5:
        base = keras.Model(base.input, base.get_layer(f"block{blocks}_pool").output, name="vgg16")
    return with_reshape_pooling(base)


def load_vgg16(input_size, weights):
    """The full VGG16 convolutional base with weights 'imagenet', 'none' or a local file."""
    shape = (input_size, input_size, 3)
    if is_random_weights(weights):
        return keras.applications.VGG16(include_top=False, weights=None, input_shape=shape)
    if weights == "imagenet":
        base = keras.applications.VGG16(include_top=False, weights=None, input_shape=shape)
        base.load_weights(fetch_imagenet_weights())
        return base
    path = Path(weights)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=shape)
    try:
        base.load_weights(path)
    except Exception as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WeightsError(f"cannot load VGG16 weights from {path}: {first_line} (is it a "
                           "VGG16 notop weights file?)") from None
    return base


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


#: Where Keras keeps VGG16's ImageNet convolutional weights (keras.applications.VGG16's own).
IMAGENET_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
                "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
IMAGENET_MD5 = "6d6bbae143d832006294945121d1f1fc"


def fetch_imagenet_weights(url=IMAGENET_URL, file_hash=IMAGENET_MD5, cache_dir=None):
    """The local path of VGG16's ImageNet weights: Keras' cached copy, downloaded first if
    missing (58 MB, into ~/.keras/models), or a WeightsError in seconds when offline."""
    name = Path(url).name
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)  # offline, fail in seconds rather than minutes
    try:
        return keras.utils.get_file(name, url, cache_subdir="models", file_hash=file_hash,
                                    cache_dir=cache_dir)
    except Exception as error:  # urllib/http/ssl/hash errors vary by platform
        reason = str(getattr(error, "reason", "") or error).strip().splitlines()
        raise WeightsError(
            "could not download the ImageNet VGG16 weights (58 MB, kept in ~/.keras/models "
            f"once downloaded): {type(error).__name__}"
            f"{': ' + reason[0][:200] if reason else ''}; when offline pass --weights FILE with a "
            "local vgg16 *_notop.weights.h5 (or .h5) file, or --weights none") from None
    finally:
        socket.setdefaulttimeout(previous)


def check_weights_source(weights):
    """WeightsError now, before a stage reads an image or writes anything, for weights that
    cannot be had: ImageNet's are fetched here (once; offline that fails in seconds, not
    after the images are read), a file must exist and be HDF5 (Keras' .weights.h5 and .h5);
    whether it holds VGG16's layers is known only when it is loaded."""
    if is_random_weights(weights):
        return
    if weights == "imagenet":
        fetch_imagenet_weights()
        return
    path = Path(weights)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    with open(path, "rb") as handle:
        if handle.read(len(HDF5_SIGNATURE)) != HDF5_SIGNATURE:
            raise WeightsError(f"cannot load VGG16 weights from {path}: not an HDF5 "
                               "(.weights.h5 or .h5) file")


def check_input_size(size):
    """ConfigError for crops VGG16 cannot take (it halves the side five times)."""
    if int(size) < MIN_INPUT_SIZE:
        raise ConfigError(f"input size {size} is below VGG16's minimum of {MIN_INPUT_SIZE} pixels")


def feature_layer_names(config):
    """The VGG16 layers whose maps are pooled: `feature_layers`, or the base's last block."""
    layers = getattr(config, "feature_layers", "")
    if layers == "auto":
        return list(AUTO_FEATURE_LAYERS[config.vgg_blocks])
    return [name.strip() for name in layers.split(",") if name.strip()]


