"""The machine a benchmark ran on, and its measured float32 matrix-multiply rate."""

import os
import platform
import time

# CPU flags that decide which kernels TensorFlow/oneDNN can use.
_INTERESTING_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
    "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8",
)


def machine_info():
    """Returns a dict: CPU model, cores, relevant CPU flags, memory, Python/TF/Keras versions."""
    import keras
    import tensorflow as tf

    from keras_vit.cpuinfo import read_cpuinfo

    model, flags = read_cpuinfo()
    try:
        import keras_hub

        hub_version = keras_hub.__version__
    except ImportError:
        hub_version = None
    try:
        memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        memory_gib = None
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "cpu_flags": [f for f in _INTERESTING_FLAGS if f in flags],
        "memory_gib": round(memory_gib, 1) if memory_gib else None,
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_hub": hub_version,
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on for x86 Linux)"),
        "load_average": os.getloadavg(),
    }


class MatmulProbe:
    """Times one `[n, n] x [n, n]` float32 `tf.matmul`, to call between model timings.

    Calling it next to each model repeat measures the matmul rate under the same
    load as the model, which is what a fraction of the machine's rate needs on a
    shared machine.
    """

    def __init__(self, n=2048):
        import tensorflow as tf

        self.n = n
        a = tf.random.stateless_normal((n, n), seed=(1, 2))
        b = tf.random.stateless_normal((n, n), seed=(3, 4))
        self._matmul = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
        self._matmul().numpy()  # warm-up: trace and let oneDNN pick its kernel

    def __call__(self, iterations=2):
        """Runs the product `iterations` times; returns GFLOP/s."""
        start = time.perf_counter()
        for _ in range(iterations):
            self._matmul().numpy()
        return iterations * 2 * self.n**3 / (time.perf_counter() - start) / 1e9
