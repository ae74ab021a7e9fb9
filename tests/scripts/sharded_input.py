"""Reads a sharded train split on one worker of a MultiWorkerMirroredStrategy cluster (run as a subprocess).

Usage: sharded_input.py FOLDER OUT.json, with TF_CONFIG naming the cluster and this worker.
Every image of FOLDER is one flat color that encodes its file id: (id // 256, id % 256, 0).
Writes the ids this worker saw in one epoch of its own training pipeline (`local`), in
`steps_per_epoch` distributed steps of the endless training pipeline (`distributed`),
and in the (unsharded) validation split, with the labels that came with them.
"""

import json
import sys

import numpy as np
import tensorflow as tf

from keras_vit.training.data import load_splits, make_pipeline, shard_options, worker_shard
from keras_vit.training.strategy import make_strategy

GLOBAL_BATCH = 8
folder, out_path = sys.argv[1], sys.argv[2]
strategy = make_strategy("auto")
assert isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)

splits = load_splits(f"folder:{folder}", validation_fraction=0.2, seed=0, shard=worker_shard())
info = splits.info
size, channels = info.image_shape[:2], info.image_shape[2]


def ids(images):
    return tf.cast(images[:, 0, 0, 0] * 256 + images[:, 0, 0, 1], tf.int32)


def collect(dataset):
    seen = [(int(i), int(y)) for images, labels in dataset for i, y in zip(ids(images), labels)]
    return [i for i, _ in seen], [y for _, y in seen]


# One pass of this worker's training pipeline (shuffled file list, decoded after the shuffle).
local_ids, local_labels = collect(make_pipeline(splits.train, size, channels, GLOBAL_BATCH, training=True, repeat=False))
val_ids, val_labels = collect(make_pipeline(splits.validation, size, channels, GLOBAL_BATCH))

# What fit does: the endless training pipeline, global batches split over workers. make_pipeline
# turned auto-sharding off for the sharded split (applying shard_options() again is harmless).
train = make_pipeline(splits.train, size, channels, GLOBAL_BATCH, training=True, drop_remainder=True, seed=0)
assert train.options().experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.OFF
batches = iter(strategy.experimental_distribute_dataset(train.with_options(shard_options())))


@tf.function
def step(batch):
    def replica(images, labels):
        count = tf.cast(tf.shape(labels)[0], tf.float32)
        # Both workers must take part in this all-reduce in every step.
        return ids(images), labels, tf.distribute.get_replica_context().all_reduce("sum", count)

    return strategy.run(replica, args=batch)


distributed_ids, distributed_labels, global_counts = [], [], []
for _ in range(info.num_examples["train"] // GLOBAL_BATCH):
    step_ids, step_labels, total = step(next(batches))
    for i, y in zip(strategy.experimental_local_results(step_ids), strategy.experimental_local_results(step_labels)):
        distributed_ids += [int(v) for v in np.asarray(i)]
        distributed_labels += [int(v) for v in np.asarray(y)]
    global_counts.append(float(strategy.experimental_local_results(total)[0]))

with open(out_path, "w") as file:
    json.dump({
        "num_train": info.num_examples["train"], "local_ids": local_ids, "local_labels": local_labels,
        "distributed_ids": distributed_ids, "distributed_labels": distributed_labels, "global_counts": global_counts,
        "validation_ids": val_ids, "validation_labels": val_labels, "class_names": info.class_names,
    }, file)
