"""Official ViT checkpoints at ViT-B/16 scale: load and save times, and the logits against the
NumPy reference of the Flax model's equations.

    TF_CPP_MIN_LOG_LEVEL=3 nice -n 10 python bench/checkpoint_timing.py [--folder /tmp/ckt]

Writes a random checkpoint with the official names and ViT-B/16 shapes (224x224, 1000 classes, no
pre-logits; 86.6M parameters, about 330 MiB) with the tests' `random_checkpoint`, then times
`load_checkpoint`, `save_checkpoint` and a load at 384 with a new 10-class head, and prints the
largest logit difference from `tests/test_checkpoint.py::flax_reference` (float64) with exact and
with tanh GELU (Flax's `nn.gelu` default). Needs about 700 MiB under `--folder`.
"""

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default="/tmp/ckt")
    args = parser.parse_args()

    import numpy as np
    from test_checkpoint import flax_reference, images, random_checkpoint, write_npz

    from keras_vit.checkpoint import load_checkpoint, save_checkpoint

    os.makedirs(args.folder, exist_ok=True)
    params = random_checkpoint(image_size=224, patch_size=16, hidden_dim=768, num_layers=12,
                               num_heads=12, mlp_dim=3072, num_classes=1000)
    path = write_npz(os.path.join(args.folder, "b16.npz"), params)
    print(f"file {os.path.getsize(path) / 2**20:.0f} MiB")
    start = time.perf_counter()
    model = load_checkpoint(path)
    print(f"load_checkpoint B/16 at 224: {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    save_checkpoint(model, os.path.join(args.folder, "b16-saved.npz"))
    print(f"save_checkpoint: {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    load_checkpoint(path, image_size=384, num_classes=10)
    print(f"load_checkpoint at 384, 10 classes: {time.perf_counter() - start:.1f} s")
    x = images(2, size=224)
    ours = model.predict(x, verbose=0)
    for approximate in (False, True):
        reference = flax_reference(params, x / 127.5 - 1.0, approximate_gelu=approximate)
        print(f"{'tanh' if approximate else 'exact'} GELU: max |ours - reference| "
              f"{np.abs(ours - reference).max():.2g}, max |reference| {np.abs(reference).max():.3g}")


if __name__ == "__main__":
    main()
