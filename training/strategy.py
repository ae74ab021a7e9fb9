"""Choosing a `tf.distribute` strategy and a mixed-precision policy."""

import json
import os

import tensorflow as tf

from keras_vit.cpuinfo import read_cpuinfo
from keras_vit.training.choices import PRECISIONS, STRATEGIES

# CPU flags of bfloat16 arithmetic, with which oneDNN runs bf16 matmuls faster than float32
# (ViT fit 1.29-1.58x on AVX512-BF16; BENCHMARKS.md section 1). Without them bf16 is emulated.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def read_tf_config():
    """The parsed `TF_CONFIG` environment variable, or `{}` when unset."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return {}
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}); expected e.g. "
                         '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}') from None
    example = '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}'
    if not isinstance(config, dict):
        raise ValueError(f"TF_CONFIG must be a JSON object like {example}, got {type(config).__name__}")
    cluster, task = config.get("cluster", {}), config.get("task", {})
    if not isinstance(cluster, dict) or not all(isinstance(v, list) for v in cluster.values()):
        raise ValueError(f"TF_CONFIG's cluster must map job names to lists of host:port, like {example}")
    if not isinstance(task, dict):
        raise ValueError(f"TF_CONFIG's task must be an object like {example}")
    if task:
        kind, index = task.get("type"), task.get("index", 0)
        if kind not in cluster:
            raise ValueError(f"TF_CONFIG's task type {kind!r} is not a job of its cluster ({', '.join(cluster) or 'none'})")
        if not isinstance(index, int) or not 0 <= index < len(cluster[kind]):
            raise ValueError(f"TF_CONFIG's task index {index!r} is not one of the {len(cluster[kind])} {kind} "
                             f"addresses (0..{len(cluster[kind]) - 1})")
    return config


def num_workers(tf_config):
    cluster = tf_config.get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def is_chief(tf_config):
    """Whether this process writes the outputs (the chief, or worker 0 without a chief)."""
    task = tf_config.get("task", {})
    if not tf_config or task.get("type") == "chief":
        return True
    has_chief = bool(tf_config.get("cluster", {}).get("chief"))
    return not has_chief and task.get("type") == "worker" and int(task.get("index", 0)) == 0


def make_strategy(name="auto", tpu_address=None):
    """Returns a `tf.distribute.Strategy`.

    `auto`: `MultiWorkerMirroredStrategy` when `TF_CONFIG` names several workers,
    `MirroredStrategy` with several GPUs, the default strategy otherwise.
    `mirrored` with no GPU mirrors over every (logical) CPU device.
    """
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")
    tf_config = read_tf_config()
    if name == "auto":
        if num_workers(tf_config) > 1:
            name = "multiworker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            return tf.distribute.get_strategy()
    if name == "cpu":
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    if name == "gpu":
        if not tf.config.list_logical_devices("GPU"):
            raise ValueError("--strategy gpu was asked for, but TensorFlow sees no GPU")
        return tf.distribute.OneDeviceStrategy("/gpu:0")
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multiworker":
        if not tf_config:
            raise ValueError("--strategy multiworker needs TF_CONFIG naming the cluster and this task")
        _patch_keras_multiworker_build()
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def cpu_flags():
    """The CPU feature flags of /proc/cpuinfo (empty where it cannot be read)."""
    return read_cpuinfo()[1]


# Under this width `auto` keeps float32: the digits model (hidden 64) trained no faster in bf16
# on an AVX512-BF16 CPU (66-83 s against 49-70 s for 60 epochs) and lost accuracy (seeds 0-4:
# 97.44% mean against 97.94%), while the MNIST default (hidden 128) trained 2x faster.
LOW_PRECISION_MIN_WIDTH = 128


def resolve_precision(precision, strategy=None, gpu_capabilities=None, flags=None, hidden_dim=None):
    """The dtype policy that `precision` means here; `auto` picks the fastest that computes well.

    `auto`: `mixed_bfloat16` on TPUs, on GPUs of compute capability 8.0+ and on CPUs with
    bf16 instructions; `mixed_float16` on GPUs of capability 7.x (Tensor Cores without bf16);
    `float32` otherwise, and for models narrower than `LOW_PRECISION_MIN_WIDTH` (`hidden_dim`),
    whose matrix products are too small to gain. `gpu_capabilities` (list of `(major, minor)`)
    and `flags` default to what TensorFlow and /proc/cpuinfo report.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if hidden_dim is not None and hidden_dim < LOW_PRECISION_MIN_WIDTH:
        return "float32"
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "mixed_bfloat16"
    if gpu_capabilities is None:
        gpu_capabilities = [
            tuple(tf.config.experimental.get_device_details(gpu).get("compute_capability") or (0, 0))
            for gpu in tf.config.list_physical_devices("GPU")
        ]
    if gpu_capabilities:
        oldest = min(gpu_capabilities)
        return "mixed_bfloat16" if oldest >= (8, 0) else "mixed_float16" if oldest >= (7, 0) else "float32"
    flags = cpu_flags() if flags is None else flags
    return "mixed_bfloat16" if any(flag in flags for flag in BF16_CPU_FLAGS) else "float32"


def set_precision(precision, strategy=None, hidden_dim=None):
    """Sets Keras' global dtype policy (resolving `auto`) and returns it; logits stay float32."""
    import keras

    precision = resolve_precision(precision, strategy, hidden_dim=hidden_dim)
    keras.config.set_dtype_policy(precision)
    return precision


def _patch_keras_multiworker_build():
    """Lets Keras' `fit` build a model under `MultiWorkerMirroredStrategy`.

    Keras 3's TensorFlow trainer (checked on 3.13-3.15) takes the first batch's
    shapes by `strategy.reduce("MEAN", batch)` in eager mode; the collective
    strategy cannot reduce `PerReplica` values there ("Attempt to convert a value
    (PerReplica...) to a Tensor") and `fit` fails before the first step. One
    local replica's batch has the same shapes, so it is used instead.
    """
    from keras import tree
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    if getattr(TensorFlowTrainer, "_keras_vit_multiworker_patch", False):
        return
    original = TensorFlowTrainer._maybe_symbolic_build

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return original(self, iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            data_batch = tree.map_structure(
                lambda x: strategy.experimental_local_results(x)[0]
                if isinstance(x, tf.distribute.DistributedValues) else x,
                next(it),
            )
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    TensorFlowTrainer._keras_vit_multiworker_patch = True

    # The same trainer averages each step's scalar logs with
    # `strategy.reduce("MEAN", v, axis=0)`, which fails on 0-d values under the
    # collective strategy ("Invalid reduction dimension 0"); scalars need axis=None.
    from keras.src.backend.tensorflow import trainer as trainer_module

    original_reduce = trainer_module.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and reduction in ("mean", "auto"):
            return tree.map_structure(
                lambda v: strategy.reduce("MEAN", v, axis=None)
                if isinstance(v, tf.distribute.DistributedValues) or tf.is_tensor(v) else v,
                values,
            )
        return original_reduce(values, strategy, reduction)

    trainer_module.reduce_per_replica = reduce_per_replica
