"""Peak memory of `fit` steps against `training.memory`'s estimate, one configuration per process.

    python bench/training_memory.py [--steps 3]

Each child builds a ViT, runs `fit` on random images of its size and reports its peak
resident memory (`ru_maxrss`) minus the resident memory after building the model and
the data: what the training steps themselves took. The ratio measured / estimated
calibrates `training.memory.BYTES_PER_ACTIVATION`.
"""

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.machine import machine_info  # noqa: E402

# name: (ViT arguments, batch size)
CONFIGS = {
    "photos_224_auto_3k": (dict(image_size=224, channels=3, patch_size=16, hidden_dim=64, num_layers=4, num_heads=4,
                                mlp_dim=128), 64),
    "photos_224_vit_ti16": (dict(image_size=224, channels=3, patch_size=16, hidden_dim=192, num_layers=12, num_heads=3,
                                 mlp_dim=768), 32),
    "photos_224_patch8": (dict(image_size=224, channels=3, patch_size=8, hidden_dim=64, num_layers=4, num_heads=4,
                               mlp_dim=128), 16),
    "mnist_auto": (dict(image_size=32, channels=1, patch_size=8, stem_channels=(16, 32), hidden_dim=128, num_layers=4,
                        num_heads=4, mlp_dim=256), 128),
}

_CHILD = """
import json, resource, sys, numpy as np, keras
from keras_vit import ViT
from keras_vit.training.memory import training_step_bytes
args, batch, steps = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
model = ViT(num_classes=10, **args)
model.compile(optimizer="adamw", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
size = args["image_size"]
x = np.random.default_rng(0).uniform(0, 255, (batch * steps, size, size, args["channels"])).astype("float32")
y = np.zeros(len(x), "int64")
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))
before = rss()
model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"measured": peak - before, "estimated": training_step_bytes(args, batch), "peak": peak}))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    info = machine_info()
    print(f"machine: {info['cpu']}, {info['cores']} cores, flags {' '.join(info['cpu_flags'])}")
    print("| configuration | batch | estimated | measured (peak - before fit) | measured / estimated |\n|---|---|---|---|---|")
    for name, (model_args, batch) in CONFIGS.items():
        done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(model_args), str(batch), str(args.steps)],
                              capture_output=True, text=True, env=env, check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        gib = 2**30
        print(f"| {name} | {batch} | {result['estimated'] / gib:.2f} GB | {result['measured'] / gib:.2f} GB | "
              f"{result['measured'] / result['estimated']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
