"""Convolutional stem of the hybrid ViT: a few strided 3x3 convolutions before the patches."""

import numbers

import keras


def _replicas_in_sync():
    """Replicas of the `tf.distribute` strategy in scope: 1 outside one, or off TensorFlow."""
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync


@keras.saving.register_keras_serializable(package="keras_vit")
class ConvStem(keras.layers.Layer):
    """3x3 convolutions of stride 2, each followed by BatchNorm and ReLU.

    The ViT paper's hybrid model (section 3.1) takes its patches from a CNN feature
    map instead of raw pixels; Xiao et al. 2021 ("Early Convolutions Help Transformers
    See Better") showed that a stem this small, in place of the linear patch
    embedding, makes a ViT train faster and more robustly. Each convolution halves the
    resolution, so a token still covers `patch_size` pixels when the patches are taken
    `patch_size / 2**len(filters)` feature-map positions wide.

    In training, each BatchNorm normalizes with the statistics of the global batch: built
    under a `tf.distribute` strategy of several replicas, it synchronizes them.

    Shapes: `[B, H, W, C]` -> `[B, ceil(H / 2**n), ceil(W / 2**n), filters[-1]]`,
    `n = len(filters)` ("same" padding).

    Args:
        filters: output channels of each convolution, e.g. `(32, 64)`.
        kernel_size: side of every convolution kernel.
        batch_norm_momentum: momentum of the BatchNorm moving statistics.

    Example:
    >>> tuple(ConvStem((32, 64))(keras.random.uniform((2, 32, 32, 3))).shape)
    (2, 8, 8, 64)
    """

    def __init__(self, filters, kernel_size=3, batch_norm_momentum=0.9, **kwargs):
        super().__init__(**kwargs)
        filters = tuple(filters) if isinstance(filters, (list, tuple)) else ()
        if not filters or any(isinstance(f, bool) or not isinstance(f, numbers.Integral) or f < 1 for f in filters):
            raise ValueError(f"filters must be a non-empty list of positive ints, got {filters!r}")
        if int(kernel_size) < 1:
            raise ValueError(f"kernel_size must be positive, got {kernel_size!r}")
        self.filters = tuple(int(f) for f in filters)
        self.kernel_size = int(kernel_size)
        self.batch_norm_momentum = float(batch_norm_momentum)
        # No bias: the BatchNorm after each convolution has its own offset.
        self.convolutions = [
            keras.layers.Conv2D(
                f, self.kernel_size, strides=2, padding="same", use_bias=False,
                kernel_initializer="he_normal", dtype=self.dtype_policy, name=f"conv_{i}",
            )
            for i, f in enumerate(self.filters)
        ]
        # Under tf.distribute each replica would otherwise normalize with the statistics of its
        # own share of the batch, so two replicas of 64 would not train like one device of 128
        # (tests/test_distributed.py). Only then: Keras' synchronized moments (E[x^2] - E[x]^2)
        # would change one device's arithmetic for nothing.
        synchronized = _replicas_in_sync() > 1
        self.norms = [
            keras.layers.BatchNormalization(
                momentum=self.batch_norm_momentum, epsilon=1e-5, synchronized=synchronized,
                dtype=self.dtype_policy, name=f"batch_norm_{i}",
            )
            for i in range(len(self.filters))
        ]

    @property
    def stride(self):
        """How many pixels one feature-map position steps over."""
        return 2 ** len(self.filters)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                f"ConvStem expects images of shape [batch, height, width, channels], got shape {tuple(input_shape)}"
            )
        shape = tuple(input_shape)
        for convolution, norm in zip(self.convolutions, self.norms):
            convolution.build(shape)
            shape = convolution.compute_output_shape(shape)
            norm.build(shape)
        self.built = True

    def call(self, images, training=None):
        x = images
        for convolution, norm in zip(self.convolutions, self.norms):
            x = keras.ops.relu(norm(convolution(x), training=training))
        return x

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for convolution in self.convolutions:
            shape = convolution.compute_output_shape(shape)
        return shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {"filters": list(self.filters), "kernel_size": self.kernel_size,
             "batch_norm_momentum": self.batch_norm_momentum}
        )
        return config
