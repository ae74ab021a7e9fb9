"""Trains a tiny hybrid ViT for a few steps under a strategy and saves its weights (run as a subprocess).

Usage: distributed_fit.py MODE OUT.npz, MODE one of `one_device`, `mirrored`, `multiworker`.
Logical CPU devices must be configured before TensorFlow starts, hence a separate process.
"""

import sys

import numpy as np
import tensorflow as tf

mode, out_path = sys.argv[1], sys.argv[2]
if mode == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

keras.config.disable_traceback_filtering()

from keras_vit import ViT  # noqa: E402
from keras_vit.training.strategy import make_strategy  # noqa: E402

GLOBAL_BATCH = 16
strategy = {
    "one_device": lambda: tf.distribute.OneDeviceStrategy("/cpu:0"),
    "mirrored": lambda: make_strategy("mirrored"),
    "multiworker": lambda: make_strategy("auto"),
}[mode]()

rng = np.random.default_rng(0)
images = rng.uniform(0, 255, (4 * GLOBAL_BATCH, 8, 8, 1)).astype("float32")
labels = keras.utils.to_categorical(rng.integers(0, 10, len(images)), 10)

with strategy.scope():
    # A hybrid: its stem's BatchNorm must see the global batch's statistics on every replica.
    model = ViT(image_size=8, channels=1, patch_size=2, stem_channels=(4,), num_layers=2, num_heads=2, hidden_dim=16,
                mlp_dim=32, num_classes=10)
    weights = [rng.normal(0, 0.2, w.shape).astype("float32") for w in model.weights]
    model.set_weights([np.abs(v) if "variance" in w.path else v for w, v in zip(model.weights, weights)])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=keras.losses.CategoricalCrossentropy(from_logits=True))
dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(GLOBAL_BATCH)
if mode == "multiworker":
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = dataset.with_options(options)
initial = [w.copy() for w in model.get_weights()]
history = model.fit(dataset, epochs=2, verbose=0, shuffle=False)
final = model.get_weights()
np.savez(
    out_path,
    replicas=strategy.num_replicas_in_sync,
    loss=np.array(history.history["loss"]),
    change=max(float(np.abs(a - b).max()) for a, b in zip(initial, final)),
    **{f"w{i}": w for i, w in enumerate(final)},
)
