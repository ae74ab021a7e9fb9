"""Peak memory of the export report against the number of test images, at a photo's size.

`train --export-tflite` and `keras-vit export --mode all` run every file on the test images
held in memory; each count runs in a fresh process (peak RSS is per process), on random
224x224 RGB pixels and a small ViT (patch 32, the cost is in the images, not the model):

    python bench/export_memory.py --counts 100,400,1600 --modes float32,float16
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child(count, modes, folder):
    import resource

    import numpy as np

    import keras_vit
    from keras_vit.export.bundle import export_modes

    model = keras_vit.ViT(image_size=224, patch_size=32, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                          num_classes=10)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (count, 224, 224, 3), dtype="uint8")
    labels = rng.integers(0, 10, count)
    calibration = images[:16]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    export_modes(model, folder, modes, calibration_images=calibration, test_images=images, test_labels=labels,
                 gpu_check=False, thread_counts=(1,), rounds=1, runs=5, log=lambda _: None)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"count": count, "images_mb": images.nbytes / 2**20, "rss_before_export_mb": before,
                      "peak_rss_mb": peak}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="100,400,1600")
    parser.add_argument("--modes", default="float32,float16")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    modes = tuple(args.modes.split(","))
    if args.child:
        child(args.child, modes, args.folder)
        return
    from bench.machine import machine_info

    print(json.dumps(machine_info()))
    print("| test images | images (MB) | RSS before the export (MB) | peak RSS (MB) | growth over the images' own size (MB) |")
    print("|---:|---:|---:|---:|---:|")
    for count in (int(c) for c in args.counts.split(",")):
        with tempfile.TemporaryDirectory() as folder:
            done = subprocess.run([sys.executable, "-m", "bench.export_memory", "--child", str(count), "--modes",
                                   args.modes, "--folder", os.path.join(folder, "export")],
                                  capture_output=True, text=True, cwd=REPO_ROOT,
                                  env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
            if done.returncode:
                print(done.stderr[-2000:], file=sys.stderr)
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"| {row['count']} | {row['images_mb']:.0f} | {row['rss_before_export_mb']:.0f} | "
                  f"{row['peak_rss_mb']:.0f} | {row['peak_rss_mb'] - row['rss_before_export_mb'] - row['images_mb']:.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
