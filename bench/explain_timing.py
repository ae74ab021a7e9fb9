"""Time per explanation for each method on vit_ti16 at 224x224.

Random weights (no checkpoint is needed for timing); the zero-initialized head is
replaced by a random one so that gradients are not all zero. Each method is run
once to build and trace (the "first call" column, which includes tf-keras-vis
cloning the model), then timed on `--repeats` single images; the table gives the
median seconds per image. Writes a Markdown table (atomically) to `--output`.

    nice -n 10 python bench/explain_timing.py --output bench/results_explain.md
"""

import argparse
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_vit import ViT  # noqa: E402
from keras_vit.explain import METHODS, Explainer  # noqa: E402

COMMAND = "nice -n 10 python bench/explain_timing.py --output bench/results_explain.md"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="vit_ti16")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--smooth-samples", type=int, default=20)
    parser.add_argument("--output", default="bench/results_explain.md")
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(0)
    model = ViT.from_preset(args.preset, image_size=args.image_size, num_classes=1000)
    head = model.get_layer("head")
    head.kernel.assign(keras.random.normal(head.kernel.shape, stddev=0.02, seed=1))
    explainer = Explainer(model, smooth_samples=args.smooth_samples)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (args.repeats + 1, args.image_size, args.image_size, 3)).astype("float32")

    rows = []
    for method in args.methods.split(","):
        start = time.perf_counter()
        explainer.explain(images[:1], method)
        first = time.perf_counter() - start
        times = []
        for index in range(1, args.repeats + 1):
            start = time.perf_counter()
            maps = explainer.explain(images[index : index + 1], method).maps[method]
            times.append(time.perf_counter() - start)
            assert maps.shape == (1, args.image_size, args.image_size) and np.isfinite(maps).all()
        rows.append((method, statistics.median(times), min(times), first))
        print(f"{method:<11} median {rows[-1][1]:.3f} s  min {rows[-1][2]:.3f} s  first call {first:.2f} s", flush=True)

    lines = [
        "# Time per explanation",
        "",
        f"`{args.preset}` at {args.image_size}x{args.image_size}, **random weights** (head re-drawn so gradients "
        f"flow), one image per call, through `keras_vit.explain.Explainer.explain` (includes the class "
        f"prediction). Median and minimum of {args.repeats} calls after a first call that builds and "
        f"traces (for tf-keras-vis methods it also clones the model once, shared by all of them).",
        "",
        f"Machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), no GPU, shared "
        f"with other jobs (timings are noisy); TensorFlow {tf.__version__}, Keras {keras.__version__}. "
        f"SmoothGrad uses {args.smooth_samples} samples; Score-CAM runs all {model.hidden_dim} token channels "
        f"(one masked forward pass each).",
        "",
        "The first-call column is cumulative in the order shown: rollout's includes tracing the model and the "
        "attention model (reused by attention), saliency's includes tf-keras-vis cloning the model (reused by "
        "the other tf-keras-vis methods).",
        "",
        "| method | median s / image | min s / image | first call s |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {m} | {median:.3f} | {low:.3f} | {first:.2f} |" for m, median, low, first in rows]
    lines += ["", "Reproduce:", "", "```", COMMAND, "```", ""]
    tmp = f"{args.output}.tmp-{os.getpid()}"
    with open(tmp, "w") as file:
        file.write("\n".join(lines))
    os.replace(tmp, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
