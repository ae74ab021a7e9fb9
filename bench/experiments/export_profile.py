"""Per-op LiteRT profile of ViT-Ti/16 at 224 (random weights): where the time goes in
float32 and in int8, with the Keras graph and with export.graph's int8-friendly graph.

    nice python bench/experiments/export_profile.py [--modes float32,int8] [--image-size 224]

Each operator is cut out into a one-op model and timed alone (export.profile); the table
groups them by op, output dtype and whether XNNPACK ran them.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--plan", default="float32:keras,int8:keras,int8:folded,dynamic:keras")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import numpy as np

    from bench.export_latency import ours
    from keras_vit.export.profile import format_profile, profile_ops, summarize_profile
    from keras_vit.export.tflite import convert

    model = ours(args.image_size, 10)
    calibration = np.random.default_rng(0).uniform(0, 255, (16, args.image_size, args.image_size, 3)).astype("float32")
    for item in args.plan.split(","):
        mode, graph = item.split(":")
        content = convert(model, mode, calibration, graph=graph)
        rows = profile_ops(content, num_threads=args.threads)
        total = sum(row["ms"] or 0.0 for row in rows)
        print(f"\n### {mode}, {graph} graph: {len(rows)} ops, sum of one-op times {total:.1f} ms\n")
        print(format_profile(summarize_profile(rows)))


if __name__ == "__main__":
    main()
