"""Two quantizers side by side: the TFLite converter (export.tflite) and Google's AI Edge Quantizer
(export.ai_edge_quantizer), per mode: test accuracy, top-1 agreement with Keras, file size, CPU
latency at 1 and 2 threads (XNNPACK; files of one model interleaved round after round, medians;
ratios to float32 of the same run) and the GPU accelerator's verdict.

    nice python bench/quantizers.py --output runs/bench/quantizers.md
    nice python bench/quantizers.py --models digits,vit_ti16,mnist --output runs/bench/quantizers.md

Models: `digits` (the default `keras-vit train --dataset digits`, seed 0, trained here in a child
process unless `runs/bench/quantizers_digits` holds it already or --digits-model names one),
`mnist` (the default command on ../shared/data/mnist.npz with `--epochs 1`), `vit_ti16` (ViT-Ti/16
at 224, random weights: latency and agreement on random pixels; accuracy n/a), `default224` (the
default command's model of a 224x224 image folder, from --default224-model, with
--default224-dataset for accuracy). One heavy thing at a time: trainings run one after another,
never beside the timing.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from bench.machine import machine_info  # noqa: E402

# (quantizer, mode, option): converter modes go through export.tflite.convert, ai-edge ones through
# export.ai_edge_quantizer.quantize of the converter's float32 file.
# `keras-vit export --quantizer ai-edge --float-ops layernorm,residual,attention`
LN_ATTENTION = ("layernorm", "residual", "attention")
VARIANTS = (
    ("converter", "float32", None),
    ("converter", "float16", None),
    ("converter", "dynamic", None),
    ("converter", "int8", None),
    ("converter", "int8", ("attention", "gelu")),
    ("converter", "int16x8", None),
    ("ai-edge", "dynamic", None),
    ("ai-edge", "weight_only", None),
    ("ai-edge", "int8", None),
    ("ai-edge", "int8", ("SOFTMAX", "BATCH_MATMUL")),
    ("ai-edge", "int8", LN_ATTENTION),
    ("ai-edge", "int16x8", None),
)


def variant_name(quantizer, mode, option):
    if option is None:
        return f"{quantizer} {mode}"
    if option == LN_ATTENTION:
        return f"{quantizer} {mode}, float LayerNorm+residual+attention"
    return f"{quantizer} {mode}, float {'+'.join(o.lower() for o in option)}"


def train_default(name, spec, extra, seed=0):
    """`keras-vit train --dataset SPEC --seed S` in a child process, once: returns its model path."""
    output = os.path.join(ROOT, "runs", "bench", f"quantizers_{name}")
    path = os.path.join(output, "model.keras")
    if not os.path.exists(path):
        print(f"training the default {name} model (once) ...", flush=True)
        command = [sys.executable, "-m", "keras_vit.training", "train", "--dataset", spec, "--seed", str(seed),
                   "--output", output, *extra]
        subprocess.run(command, cwd=ROOT, check=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
                       stdout=subprocess.DEVNULL)
    return path


def dataset_arrays(spec, image_shape, count, seed, split):
    """`count` images of a split as float32 `[N, H, W, C]` raw pixels and labels, as training prepares them."""
    from keras_vit.training.data import load_splits_for_model, make_pipeline, take_sample

    splits = load_splits_for_model(spec, image_shape, resize=True)
    images, labels = [], []
    for batch, batch_labels in make_pipeline(take_sample(getattr(splits, split), count, seed), image_shape[:2],
                                             image_shape[2], 256):
        images.append(np.asarray(batch, "float32"))
        labels.append(np.asarray(batch_labels))
    return np.concatenate(images), np.concatenate(labels)


def load_subject(name, args):
    """`(model, calibration images, test images, test labels or None, note)` of one benchmarked model."""
    from keras_vit.training.artifacts import load_keras_model

    if name == "vit_ti16":
        from bench.export_latency import ours

        model = ours(224, 10)
        rng = np.random.default_rng(0)
        calibration = rng.uniform(0, 255, (args.calibration_size // 4, 224, 224, 3)).astype("float32")
        images = rng.uniform(0, 255, (args.random_images, 224, 224, 3)).astype("float32")
        return model, calibration, images, None, "random weights, random pixels: accuracy n/a"
    if name == "digits":
        path = args.digits_model or train_default("digits", "digits", [])
        spec, note = "digits", "`keras-vit train --dataset digits --seed 0`"
    elif name == "mnist":
        path = args.mnist_model or train_default("mnist", "npz:../shared/data/mnist.npz", ["--epochs", "1"])
        spec, note = "npz:../shared/data/mnist.npz", "`keras-vit train --dataset npz:../shared/data/mnist.npz --epochs 1`"
    elif name == "default224":
        path, spec = args.default224_model, args.default224_dataset
        if not path:
            raise SystemExit("--default224-model PATH is needed for model default224")
        note = f"the default command's model of {spec or 'a 224x224 folder'}"
    else:
        raise SystemExit(f"unknown model {name}; expected digits, mnist, vit_ti16 or default224")
    if name in ("digits", "mnist") and getattr(args, f"{name}_model"):
        note = f"the default command's model at `{path}`"
    model = load_keras_model(path, float32=True)
    shape = tuple(model.inputs[0].shape[1:])
    if not spec:
        rng = np.random.default_rng(0)
        calibration = rng.uniform(0, 255, (args.calibration_size // 4,) + shape).astype("float32")
        images = rng.uniform(0, 255, (args.random_images,) + shape).astype("float32")
        return model, calibration, images, None, note + " (no dataset: random pixels, accuracy n/a)"
    calibration, _ = dataset_arrays(spec, shape, args.calibration_size, 0, "train")
    images, labels = dataset_arrays(spec, shape, args.test_limit, 0, "test")
    return model, calibration, images, labels, note


def build_files(model, calibration, skip_modes=()):
    from keras_vit.export import ai_edge_quantizer
    from keras_vit.export.tflite import convert

    contents = {}
    for quantizer, mode, option in VARIANTS:
        if mode in skip_modes:
            continue
        name = variant_name(quantizer, mode, option)
        print(f"  {name} ...", flush=True)
        if quantizer == "converter":
            # Logits out, as the Keras model's: the table compares them (files default to probabilities).
            contents[name] = convert(model, mode, calibration, float_fallback=option or (), outputs="logits")
        else:
            contents[name] = ai_edge_quantizer.quantize(contents["converter float32"], mode, calibration,
                                                        float_ops=list(option) if option else None)
    return contents


def gpu_results(contents, images, keras_logits, limit):
    from keras_vit.export.accelerator import gpu_accelerator_available, run_on_gpu

    available, reason = gpu_accelerator_available()
    if not available:
        return {name: f"not run: {reason}" for name in contents}, reason
    cells = {}
    with tempfile.TemporaryDirectory(prefix="quantizers_gpu_") as folder:
        for index, (name, content) in enumerate(contents.items()):
            path = os.path.join(folder, f"m{index}.tflite")
            with open(path, "wb") as file:
                file.write(content)
            run = run_on_gpu(path, images[:limit], check_available=False, runs=3, warmup=1)
            if run.runs:
                agree = np.mean(run.outputs.argmax(-1) == keras_logits[: len(run.outputs)].argmax(-1))
                cells[name] = f"{run.summary()}; agreement {agree:.3f}"
            else:
                cells[name] = run.summary().replace("|", "/")[:120]
    return cells, reason


def measure(name, args):
    from keras_vit.export.analysis import analyze_ops
    from keras_vit.export.report import measure_latencies
    from keras_vit.export.runtime import TFLiteRunner

    print(f"{name}: loading ...", flush=True)
    model, calibration, images, labels, note = load_subject(name, args)
    keras_logits = np.asarray(model.predict(images, batch_size=64, verbose=0))
    contents = build_files(model, calibration, args.skip_modes)
    rows = {}
    for key, content in contents.items():
        outputs = TFLiteRunner(content).predict(images)
        facts = analyze_ops(content)
        rows[key] = {
            "size_bytes": len(content),
            "accuracy": float(np.mean(outputs.argmax(-1) == labels)) if labels is not None else None,
            "agreement": float(np.mean(outputs.argmax(-1) == keras_logits.argmax(-1))),
            "max_logit_error": float(np.abs(outputs - keras_logits).max()),
            "fully_integer": facts["fully_integer"],
        }
    print(f"{name}: timing {len(contents)} files ...", flush=True)
    threads = tuple(int(t) for t in args.threads.split(","))
    latency = measure_latencies(contents, threads, rounds=args.rounds, runs=args.runs)
    for key in contents:
        rows[key]["latency"] = {str(t): latency[key][t]["median_ms"] for t in threads}
        rows[key]["x_float32"] = {str(t): latency[key][t]["median_ms"] / latency["converter float32"][t]["median_ms"]
                                  for t in threads}
    gpu_reason = "not checked (--no-gpu)"
    if args.gpu:
        print(f"{name}: GPU accelerator ...", flush=True)
        cells, gpu_reason = gpu_results(contents, images, keras_logits, args.gpu_limit)
        for key in contents:
            rows[key]["gpu"] = cells[key]
    keras_accuracy = float(np.mean(keras_logits.argmax(-1) == labels)) if labels is not None else None
    return {"model": name, "note": note, "params": int(model.count_params()),
            "input": list(model.inputs[0].shape[1:]), "images": int(len(images)),
            "keras_accuracy": keras_accuracy, "gpu": gpu_reason, "rows": rows}


def recommendation(result, tolerance=0.01):
    """Per thread count: the fastest file within `tolerance` of float32's accuracy (agreement with
    Keras where there is no accuracy)."""
    rows = result["rows"]
    metric = "accuracy" if result["keras_accuracy"] is not None else "agreement"
    reference = rows["converter float32"][metric]
    accurate = {k: r for k, r in rows.items() if r[metric] >= reference - tolerance - 1e-9}
    picks = {}
    for t in next(iter(rows.values()))["latency"]:
        best = min(accurate, key=lambda k: accurate[k]["latency"][t])
        picks[t] = (best, accurate[best]["x_float32"][t])
    return metric, picks


def format_result(result):
    threads = list(next(iter(result["rows"].values()))["latency"])
    lines = [f"### {result['model']}: {result['note']}", "",
             f"{result['params']:,} parameters, input {'x'.join(map(str, result['input']))}, "
             f"{result['images']} test images; Keras accuracy "
             + (f"{result['keras_accuracy']:.4f}" if result["keras_accuracy"] is not None else "n/a")
             + f". GPU accelerator: {result['gpu']}", ""]
    head = ["file", "test accuracy", "agreement with Keras", "max logit err", "size MB", "fully integer"]
    head += [f"{t} thr ms (x float32)" for t in threads] + ["GPU accelerator"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, r in result["rows"].items():
        cells = [key, f"{r['accuracy']:.4f}" if r["accuracy"] is not None else "n/a", f"{r['agreement']:.4f}",
                 f"{r['max_logit_error']:.3f}", f"{r['size_bytes'] / 1e6:.3f}", "yes" if r["fully_integer"] else "no"]
        cells += [f"{r['latency'][t]:.3f} ({r['x_float32'][t]:.2f})" for t in threads]
        cells.append(r.get("gpu", "not checked"))
        lines.append("| " + " | ".join(cells) + " |")
    metric, picks = recommendation(result)
    lines += ["", f"Fastest file within 1 point of float32's {metric}: "
              + "; ".join(f"{t} thr: **{k}** ({x:.2f}x float32)" for t, (k, x) in picks.items()), ""]
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="digits,vit_ti16")
    parser.add_argument("--digits-model", help="a trained default digits model (.keras or run folder)")
    parser.add_argument("--mnist-model", help="a trained default MNIST model")
    parser.add_argument("--default224-model")
    parser.add_argument("--default224-dataset")
    parser.add_argument("--calibration-size", type=int, default=200)
    parser.add_argument("--test-limit", type=int, default=1000)
    parser.add_argument("--random-images", type=int, default=32)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--gpu", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--gpu-limit", type=int, default=64)
    parser.add_argument("--output", help="write the markdown here (and the numbers beside it as .json)")
    parser.add_argument("--skip-modes", default="",
                        help="modes to leave out, e.g. int16x8 (20-50x float32: minutes of timing at 224)")
    args = parser.parse_args()
    args.skip_modes = tuple(filter(None, args.skip_modes.split(",")))

    info = machine_info()
    results = [measure(name, args) for name in args.models.split(",")]
    lines = ["## Converter vs AI Edge Quantizer", "",
             f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
             f"- command: `python bench/quantizers.py {' '.join(sys.argv[1:])}`",
             f"- machine: {info['cpu']}, {info['cores']} cores, flags {' '.join(info['cpu_flags'])}; "
             f"TensorFlow {info['tensorflow']}, Keras {info['keras']}, load average {info['load_average']}",
             "- runtime: LiteRT (ai_edge_litert) with XNNPACK; latency: median of one image, the files of a "
             "model interleaved round after round; (x float32) is the ratio to the converter's float32 file "
             "in the same run", ""]
    for result in results:
        lines += format_result(result)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as file:
            file.write(text)
        with open(os.path.splitext(args.output)[0] + ".json", "w") as file:
            json.dump({"machine": info, "results": results}, file, indent=2)


if __name__ == "__main__":
    main()
