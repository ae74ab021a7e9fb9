"""One throughput measurement, run in its own process so that its peak resident memory is its own.

    python -m bench.throughput --impl ours --config cifar --mode xla --batch 32

prints one JSON line: images/s of each timed repeat (after warm-up), the process
CPU time of each repeat, the float32 matmul rate measured between repeats (same
load as the model), the FLOPs per image and the peak resident memory.

Modes (inference unless named fit):
  predict      `model.predict` on 4 batches (Keras' default, no XLA on CPU)
  compiled     `tf.function(model(x, training=False))`, TensorFlow graph
  xla          the same with `jit_compile=True`
  savedmodel   the `serve` endpoint of the exported SavedModel (loaded without Keras code)
  tflite       the float32 `.tflite` file in LiteRT's interpreter, all cores
  fit          `model.fit`, AdamW, batch from tf.data with prefetch, Keras' default compile
  fit_xla      the same with `compile(jit_compile=True)`
  fit_mixed    `fit` under mixed precision (bfloat16 on CPU, float16 on GPU)
  fit_mixed_xla  both
"""

import argparse
import json
import os
import resource
import sys
import time

INFERENCE_MODES = ("predict", "compiled", "xla", "savedmodel", "tflite")
TRAINING_MODES = ("fit", "fit_xla", "fit_mixed", "fit_mixed_xla")
MODES = INFERENCE_MODES + TRAINING_MODES


def peak_rss_mib():
    """Peak resident memory of this process so far, in MiB.

    Reads VmHWM, which `execve` resets; `getrusage`'s ru_maxrss is inherited from
    the parent across fork and exec on Linux, so it would report the parent's peak.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _images(batch, size, count=1, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, size=(count * batch, size, size, 3)).astype("float32")


def _timed_repeats(step, images_per_step, repeats, min_time, probe):
    """Calls `step` until `min_time` seconds have passed, `repeats` times, with a matmul
    probe after each; returns (images/s, CPU images/s, matmul GFLOP/s) lists."""
    ips, cpu_ips, matmul = [], [], []
    cores = os.cpu_count() or 1
    for _ in range(repeats):
        steps, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
        while True:
            step()
            steps += 1
            wall = time.perf_counter() - wall0
            if wall >= min_time:
                break
        cpu = time.process_time() - cpu0
        ips.append(steps * images_per_step / wall)
        # Images per second of this process's own CPU time, scaled to all cores:
        # what the model would reach alone on the machine (less sensitive to the
        # other processes on a shared machine than wall time).
        cpu_ips.append(steps * images_per_step / cpu * cores)
        matmul.append(probe())
    return ips, cpu_ips, matmul


def _inference_step(mode, model_or_path, batch, size):
    import numpy as np

    x = _images(batch, size)
    if mode == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=model_or_path, num_threads=os.cpu_count())
        index = interpreter.get_input_details()[0]["index"]
        interpreter.resize_tensor_input(index, list(x.shape))
        interpreter.allocate_tensors()
        output = interpreter.get_output_details()[0]["index"]

        def step():
            interpreter.set_tensor(index, x)
            interpreter.invoke()
            return np.array(interpreter.get_tensor(output))

        return step, batch
    import tensorflow as tf

    if mode == "predict":
        data = _images(batch, size, count=4)
        return (lambda: model_or_path.predict(data, batch_size=batch, verbose=0)), len(data)
    if mode in ("compiled", "xla"):
        model = model_or_path
        call = tf.function(lambda t: model(t, training=False), jit_compile=(mode == "xla"))
        tensor = tf.constant(x)
        return (lambda: call(tensor).numpy()), batch
    if mode == "savedmodel":
        loaded = tf.saved_model.load(model_or_path)
        tensor = tf.constant(x)
        return (lambda: loaded.serve(tensor).numpy()), batch
    raise ValueError(f"not an inference mode: {mode!r}")


def _training_runner(mode, model, batch, size, num_classes):
    """Compiles `model` for `mode`; returns `run(steps)` that fits that many steps."""
    import keras
    import numpy as np
    import tensorflow as tf

    model.compile(
        optimizer=keras.optimizers.AdamW(1e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=mode.endswith("_xla"),
    )
    images = _images(batch, size, count=4)
    labels = np.random.default_rng(1).integers(0, num_classes, size=len(images))
    dataset = (
        tf.data.Dataset.from_tensor_slices((images, labels))
        .repeat()
        .batch(batch, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )

    def run(steps, epochs=1, callbacks=None):
        model.fit(dataset, steps_per_epoch=steps, epochs=epochs, verbose=0, shuffle=False,
                  callbacks=callbacks)

    return run


def _timed_epochs(run, steps, batch, repeats, probe):
    """One `fit` of `repeats` epochs of `steps` steps (as training runs: no per-call
    set-up in the timings); each epoch is one timed repeat, the probe runs between."""
    import keras

    ips, cpu_ips, matmul = [], [], []
    cores = os.cpu_count() or 1

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = (time.perf_counter(), time.process_time())

        def on_epoch_end(self, epoch, logs=None):
            wall = time.perf_counter() - self.start[0]
            cpu = time.process_time() - self.start[1]
            ips.append(steps * batch / wall)
            cpu_ips.append(steps * batch / cpu * cores)
            matmul.append(probe())

    run(steps, epochs=repeats, callbacks=[Timer()])
    return ips, cpu_ips, matmul


def mixed_policy():
    """The mixed precision that applies here: float16 on GPUs, bfloat16 on CPUs."""
    import tensorflow as tf

    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"


def measure(implementation, config_name, mode, batch, repeats=5, min_time=1.0, artifacts=None,
            seed=0):
    """Runs one measurement; returns a JSON-ready dict (see the module docstring)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    from bench.machine import MatmulProbe
    from bench.models import forward_flops, get_config, training_flops

    config = get_config(config_name)
    size = config["image_size"]
    result = {
        "impl": implementation, "config": config_name, "mode": mode, "batch": batch,
        "dtype": "float32",
    }
    build_start = time.perf_counter()
    if mode in ("savedmodel", "tflite"):
        from bench.convert import artifact_paths

        if not artifacts:
            raise ValueError(f"mode {mode!r} needs --artifacts (made by python -m bench.convert)")
        path = artifact_paths(artifacts, implementation, config_name)[
            "saved_model" if mode == "savedmodel" else "tflite"
        ]
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} does not exist; run python -m bench.convert first")
        target, params = path, None
        result["file_mib"] = _size_mib(path)
    else:
        import keras

        from bench.models import build_model

        keras.utils.set_random_seed(seed)
        dtype = None
        if mode.startswith("fit_mixed"):
            dtype = mixed_policy()
            result["dtype"] = dtype
        target = build_model(implementation, config, dtype=dtype)
        params = int(target.count_params())
    result["params"] = params

    if mode == "tflite":
        # Timed before TensorFlow is imported, so the peak RSS is LiteRT's and the
        # file's alone; the matmul probes then run right after, one per repeat.
        step, images = _inference_step(mode, target, batch, size)
        warm = time.perf_counter()
        step()
        step()
        result["warmup_s"] = time.perf_counter() - warm
        ips, cpu_ips, _ = _timed_repeats(step, images, repeats, min_time, lambda: None)
        result["peak_rss_mib"] = peak_rss_mib()
        probe = MatmulProbe()
        matmul = [probe() for _ in range(repeats)]
        result["build_s"] = warm - build_start
        result["images_per_s"], result["cpu_images_per_s"], result["matmul_gflops"] = ips, cpu_ips, matmul
        result["flops_per_image"] = forward_flops(config)
        return result
    probe = MatmulProbe()
    if mode in TRAINING_MODES:
        run = _training_runner(mode, target, batch, size, config["num_classes"])
        warm = time.perf_counter()
        run(2)  # trace, compile, first steps
        result["warmup_s"] = time.perf_counter() - warm
        start = time.perf_counter()
        run(3)
        one = max((time.perf_counter() - start) / 3, 1e-3)
        steps = max(2, int(round(min_time / one)))
        samples = _timed_epochs(run, steps, batch, repeats, probe)
        result["flops_per_image"] = training_flops(config)
    else:
        step, images = _inference_step(mode, target, batch, size)
        warm = time.perf_counter()
        step()
        step()
        result["warmup_s"] = time.perf_counter() - warm
        samples = _timed_repeats(step, images, repeats, min_time, probe)
        result["flops_per_image"] = forward_flops(config)
    result["build_s"] = warm - build_start
    result["images_per_s"], result["cpu_images_per_s"], result["matmul_gflops"] = samples
    result["peak_rss_mib"] = peak_rss_mib()
    return result


def _size_mib(path):
    if os.path.isfile(path):
        return os.path.getsize(path) / 2**20
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total / 2**20


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impl", required=True, choices=("ours", "keras_hub"))
    parser.add_argument("--config", required=True)
    parser.add_argument("--mode", required=True, choices=MODES)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=1.0,
                        help="seconds of work in each timed repeat")
    parser.add_argument("--artifacts", help="folder of the SavedModel/TFLite files")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.repeats < 1:
        parser.error("--batch and --repeats must be positive")
    result = measure(args.impl, args.config, args.mode, args.batch, args.repeats, args.min_time,
                     args.artifacts)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
