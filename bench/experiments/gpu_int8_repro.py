"""Why the int8 and int16x8 files of `keras-vit export --mode all` aborted on LiteRT's GPU accelerator.

    python bench/experiments/gpu_int8_repro.py    # ~2 min on 2 shared cores; needs the GPU accelerator

Symptom (ai-edge-litert 2.3.0, WebGPU accelerator on Mesa 25 lavapipe): `CompiledModel.from_file(
model_int8.tflite, hardware_accel=GPU)` kills the process with `object_reader.cc:373 Check failed:
CanReadValue(node_input_index)`, while float32, float16 and dynamic ran fully accelerated.

Finding: it is not int8 at all. The culprit is a SPLIT op with `num_splits=1` (a no-op split into one
part): LiteRT's GPU delegate aborts on it while building its graph, in any precision, float32 included.
The smallest reproducer is a hand-built float32 file holding that single op
(`export.accelerator.tiny_model_bytes("one_way_split")`); `tf.split(x, 1)` converted by the TFLite
converter aborts alike as float32, float16, int8 with float32 I/O and int8 with uint8 I/O, while
`tf.split(x, 2)` runs in every one of them (but see the side findings). A single int8 Dense (FULLY_CONNECTED) runs fully accelerated
with float32, int8 and uint8 input/output, so no converter setting (`inference_input_type=tf.float32`,
per-tensor weights, ...) matters. Bisecting the int8 ViT (cutting its graph after op k) pointed at the
same op: the first one-way SPLIT.

Only the int8/int16x8 files had one because only they use the per-head fully-connected attention of
`export.graph.folded_forward`, which split the query/key/value per image (`tf.split(query, batch_size)`)
and per head: one part at batch size 1 (every default export) or with one head. The float modes use
4-D BATCH_MATMUL attention and have no such split. In int16x8 the same SPLITs are int16, which the GPU
delegate leaves to the CPU; on the digits model here the old int16x8 file ran (93 of 99 ops on the CPU),
so its abort in the issue was not reproduced here, but it held the same one-way SPLITs.

Fix (export/graph.py, `_split`): a split into one part is the tensor itself, so no one-way SPLIT is
emitted; the function and the CPU numbers are unchanged. Since then every mode runs on the GPU
accelerator (tests/test_export_accelerator.py checks it). What remains, measured here on the digits ViT:
- int8 runs fully accelerated, but the GPU computes a quantized model in float (it dequantizes; its
  logits differ from the CPU interpreter's int8 logits by 0.1-0.7 at logits of several units, top-1
  agreement with the CPU 0.9-1.0): float16 is the file for the GPU, int8 the one for the CPU (XNNPACK)
  and integer NPUs.
- int16x8 runs, but almost entirely on the CPU: the GPU delegate has no INT16 kernels (6 of 95 ops
  on the GPU).
- `--graph keras` int8 (the Keras layout, BATCH_MATMUL attention in int8) runs partly on the CPU and
  gives wrong top-1 on the GPU (agreement with the CPU interpreter 0.0 on random weights): the export
  report's GPU section shows it; the default folded graph does not have this problem.
- Side findings, not in our graphs (whose op outputs are all used, and whose split parts are
  concatenated in order): an int8 SPLIT with an unused part ("split into 2 parts, take the 2nd")
  now and then kills the process with SIGSEGV while running (2 of 6 runs here, no CHECK message);
  a SPLIT followed by a CONCATENATION of its parts in another order ("concat swapped") runs "fully
  accelerated" but returns wrong values in float32 and float16 (max error ~2e2 on 0..255 inputs, at 4
  to 16 channels); the int8 file of the same function is right.
- `GpuOptions(enforce_f32=True)` on the float16 file gives wrong logits (max error ~4), while the default
  (float16 arithmetic) is within about 1e-2; the report uses the default, as an app would.

Run it to see each case's verdict; every case runs in a child process (an abort is reported, not fatal).
"""

import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _convert(fn, shape, mode, io="float32"):
    """`fn` (float32 `shape` -> tensor) as a .tflite of `mode` (float32, float16, int8), through a
    SavedModel as export.tflite does (constants frozen)."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as folder:
        module = tf.Module()
        module.serve = tf.function(fn, input_signature=[tf.TensorSpec(shape, tf.float32)])
        tf.saved_model.save(module, folder, signatures={"serving_default": module.serve})
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        if mode != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if mode == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if mode == "int8":
            rng = np.random.default_rng(0)
            converter.representative_dataset = lambda: ([rng.uniform(0, 255, shape).astype("float32")] for _ in range(20))
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = converter.inference_output_type = getattr(tf, io)
        return converter.convert()


def _verdict(name, content, images):
    from keras_vit.export.accelerator import run_on_gpu
    from keras_vit.export.analysis import analyze_ops
    from keras_vit.export.runtime import TFLiteRunner

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.tflite")
        with open(path, "wb") as file:
            file.write(content)
        result = run_on_gpu(path, images, runs=3, warmup=1)
    extra = ""
    if result.runs:
        cpu = TFLiteRunner(content).predict(images).reshape(len(images), -1)
        extra = (f"; max err vs CPU {np.abs(result.outputs - cpu).max():.2e}, "
                 f"top-1 agreement {np.mean(result.outputs.argmax(-1) == cpu.argmax(-1)):.2f}")
    ops = ", ".join(f"{k} x{v}" for k, v in analyze_ops(content)["ops"].items())
    print(f"{name:<34} {result.summary()}{extra}   [{ops}]", flush=True)
    return result


def main():
    import tensorflow as tf

    from keras_vit.export.accelerator import gpu_accelerator_available, tiny_model_bytes

    available, reason = gpu_accelerator_available()
    print(f"GPU accelerator: {reason}")
    if not available:
        return 1
    images = np.random.default_rng(0).uniform(0, 255, (4, 2, 2, 4)).astype("float32")

    print("\n1. One op, hand-built float32 files (no converter):")
    _verdict("add (x + x)", tiny_model_bytes("add"), images[:, :, :, :1])
    _verdict("split into 1 part", tiny_model_bytes("one_way_split"), images[:, :, :, :1])

    print("\n2. Converted by the TFLite converter, per mode and int8 I/O type:")
    weight = tf.constant(np.random.default_rng(1).normal(0, 0.1, (4, 4)).astype("float32"))
    cases = {
        "dense": lambda x: tf.reshape(tf.matmul(tf.reshape(x, (4, 4)), weight), (1, 16)),
        "split into 1 part": lambda x: tf.split(x + 1.0, 1)[0],
        "split into 2 parts, take the 2nd": lambda x: tf.split(x + 1.0, 2, axis=-1)[1],
        "split into 2, concat swapped": lambda x: tf.concat(tf.split(x + 1.0, 2, axis=-1)[::-1], -1),
        "dense, then split into 1 part": lambda x: tf.reshape(tf.split(tf.matmul(tf.reshape(x, (4, 4)), weight), 1)[0],
                                                              (1, 16)),
    }
    for mode, io in (("float32", "float32"), ("float16", "float32"), ("int8", "float32"), ("int8", "uint8")):
        for name, fn in cases.items():
            content = _convert(fn, (1, 2, 2, 4), mode, io)
            _verdict(f"{name} [{mode}, {io} I/O]", content, images[:1])

    print("\n3. The int8 digits-size ViT, with and without one-way SPLITs (export/graph.py `_split`):")
    from keras_vit.export import graph
    from keras_vit.export.tflite import convert
    from keras_vit import ViT

    model = ViT(image_size=28, channels=1, patch_size=14, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                num_classes=10)
    rng = np.random.default_rng(1)
    for w in model.weights:  # random non-trivial values (the head starts at zero)
        value = rng.normal(0, 0.2, w.shape) + (1.0 if "gamma" in w.path else 0.0)
        w.assign(value.astype("float32"))
    vit_images = rng.uniform(0, 255, (32, 28, 28, 1)).astype("float32")
    fixed = graph._split
    try:
        graph._split = lambda x, count, axis=0: tf.split(x, count, axis=axis)  # the graph before the fix
        _verdict("ViT int8, one-way SPLITs (before)", convert(model, "int8", vit_images, input_type="uint8"),
                 vit_images)
        _verdict("ViT int8, float32 I/O (before)", convert(model, "int8", vit_images), vit_images)
    finally:
        graph._split = fixed
    _verdict("ViT int8 (after the fix)", convert(model, "int8", vit_images, input_type="uint8"), vit_images)
    _verdict("ViT int16x8 (after the fix)", convert(model, "int16x8", vit_images), vit_images)
    _verdict("ViT float16", convert(model, "float16"), vit_images)
    return 0


if __name__ == "__main__":
    sys.exit(main())
