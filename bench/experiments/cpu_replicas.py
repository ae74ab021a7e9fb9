"""`keras-vit train` with the CPU split into logical devices, one replica each (a study of CPU use).

    /usr/bin/time python bench/experiments/cpu_replicas.py 2 -- --quiet --epochs 20 --batch-size 32 --output /tmp/r2

A small model's training step is bound by dispatching its few hundred small ops on one thread
(BENCHMARKS.md, "Digits": one TensorFlow thread trains as fast as two). `MirroredStrategy` over
N logical CPU devices gives the executor N independent chains of ops per step to run at once;
`--batch-size` is per replica, so N replicas of 64/N keep the recipe's global batch.

Found (BENCHMARKS.md, "Digits", machine A): two replicas train 20 digits epochs in 30-36 s
against 15 s for one, at the same 100-110% CPU: the second core stays idle either way.
"""

import sys

import tensorflow as tf

replicas = int(sys.argv[1])
args = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
if replicas > 1:
    # Must happen before TensorFlow initializes its devices.
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
    args = ["--strategy", "mirrored", *args]

from keras_vit.training.cli import main  # noqa: E402

sys.exit(main(["train", *args]))
