"""The digits job's training step with Keras' AdamW against `FusedAdamW`, and with no update at all.

    python bench/experiments/optimizer_step.py [--rounds 10] [--steps 100] [--batch-size 64] [--preset vit_digits]

One process, one model per variant (the `vit_digits` preset at batch 64 by default: the main
job's step), the variants timed in turns for `--rounds` rounds of `--steps` steps; prints each
variant's median step and its ratio to Keras' AdamW, with the CPU and its flags (bench/machine.py).
TensorFlow's thread counts are the environment's (`TF_NUM_INTRAOP_THREADS`): the main job
uses one intra-op thread for this model (training/threads.py).
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_vit  # noqa: E402
from bench.machine import machine_info  # noqa: E402
from keras_vit.training.fused_adamw import FusedAdamW  # noqa: E402
from keras_vit.training.optimization import no_decay_variables, warmup_cosine  # noqa: E402


def _step_function(variant, preset, images, labels):
    keras.utils.set_random_seed(0)
    model = keras_vit.ViT.from_preset(preset, image_size=images.shape[1], channels=images.shape[3])
    loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    optimizer = None
    if variant != "gradients only":
        optimizer_class = FusedAdamW if variant == "FusedAdamW" else keras.optimizers.AdamW
        # The main job's recipe: warm-up + cosine, decay 0.1 off biases/norms/tokens, clipping at 1.
        optimizer = optimizer_class(warmup_cosine(2e-3, 100_000, 1_000), weight_decay=0.1, global_clipnorm=1.0)
        optimizer.exclude_from_weight_decay(var_list=no_decay_variables(model))
        optimizer.build(model.trainable_variables)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(images, training=True))
        gradients = tape.gradient(loss, model.trainable_variables)
        if optimizer is None:
            return tf.add_n([tf.reduce_sum(g) for g in gradients])  # keeps every gradient computed
        optimizer.apply(gradients, model.trainable_variables)
        return loss

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--preset", default="vit_digits")
    args = parser.parse_args()
    config = keras_vit.get_preset(args.preset)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.random((args.batch_size, config["image_size"], config["image_size"], 3), "float32"))
    labels = tf.constant(np.eye(10, dtype="float32")[rng.integers(0, 10, args.batch_size)])
    variants = ("Keras AdamW", "FusedAdamW", "gradients only")
    steps = {name: _step_function(name, args.preset, images, labels) for name in variants}
    times = {name: [] for name in variants}
    for step in steps.values():
        for _ in range(20):  # tracing and warm-up
            step().numpy()
    for _ in range(args.rounds):
        for name, step in steps.items():
            for _ in range(args.steps):
                start = time.perf_counter()
                step().numpy()
                times[name].append(time.perf_counter() - start)
    machine = machine_info()
    print(f"{machine['cpu']}, {machine['cores']} cores, flags {' '.join(machine['cpu_flags'])},"
          f" load {machine['load_average'][0]:.1f}")
    print(f"{args.preset}, batch {args.batch_size}, TF_NUM_INTRAOP_THREADS="
          f"{os.environ.get('TF_NUM_INTRAOP_THREADS', 'unset')}, {args.rounds} x {args.steps} steps each")
    baseline = statistics.median(times["Keras AdamW"])
    for name in variants:
        median = statistics.median(times[name])
        print(f"{name:15s} median step {median * 1e3:6.2f} ms  {median / baseline:5.2f}x Keras AdamW")


if __name__ == "__main__":
    main()
