"""Input pipeline speed and memory on folders of 224x224 JPEGs: keras-vit's against Keras'.

Generates folders of synthetic photos (smooth random color fields with texture, JPEG
quality 90, about 18 KB each, 10 classes) outside the repository, then measures each
pipeline in its own subprocess, so that peak RSS (`ru_maxrss` of the child) is per
pipeline: images/s over one and over two epochs (decode + resize to 224 + batches of 64,
no model) and the peak RSS. Each pipeline runs `--repeats` times, interleaved, and the
table shows medians with the 1-minute load average before each run (a shared machine).

    python -m bench.input_pipeline --root /tmp/keras_vit_bench --counts 3000 20000

Pipelines:
    keras_vit           load_splits("folder:...") + make_pipeline(training=True), the memory
                        cache at train's default budget (1024 MiB: taken when the split fits)
    keras_vit_stream    the same with no cache (cache_memory_bytes=0): pure streaming
    keras_vit_stream_nd the same with deterministic=False (parallel decoding delivers out of order)
    keras_dir           keras.utils.image_dataset_from_directory(image_size=(224, 224), batch_size=64)
    float32_cache       the previous make_pipeline(cache=True): decoded float32 images cached
                        in memory and a 10,000-image shuffle buffer (only up to --old-max images)

Writes runs/bench/input_pipeline_<count>.json and prints a markdown table.
"""

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE_SIZE = 224
BATCH = 64
CLASSES = 10
PIPELINES = ("keras_vit", "keras_vit_stream", "keras_vit_stream_nd", "keras_dir", "float32_cache")


# --- data ------------------------------------------------------------------------------


def _photo(index, size=IMAGE_SIZE):
    """JPEG bytes of a smooth random color field with mid and fine texture (~18 KB at quality 90)."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(index)
    base = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((size, size), Image.BICUBIC)
    mid = Image.fromarray(rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)).resize(
        (size, size), Image.BILINEAR
    )
    pixels = np.asarray(Image.blend(base, mid, 0.35), dtype=np.float32) + rng.normal(0, 6, (size, size, 1))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _write_photos(job):
    folder, indices = job
    for index in indices:
        path = os.path.join(folder, f"class_{index % CLASSES:02d}", f"{index:07d}.jpg")
        with open(path, "wb") as file:
            file.write(_photo(index))


def make_folder(root, count):
    """`root/jpeg224_<count>` with `count` JPEGs in 10 class folders; reused when complete."""
    from multiprocessing import Pool

    folder = os.path.join(root, f"jpeg224_{count}")
    done = os.path.join(folder, ".complete")
    if os.path.exists(done):
        return folder
    if os.path.abspath(folder).startswith(REPO_ROOT + os.sep):
        raise ValueError(f"generate the images outside the repository, not in {folder}")
    for label in range(CLASSES):
        os.makedirs(os.path.join(folder, f"class_{label:02d}"), exist_ok=True)
    start = time.perf_counter()
    jobs = [(folder, range(i, min(i + 500, count))) for i in range(0, count, 500)]
    with Pool(os.cpu_count()) as pool:
        pool.map(_write_photos, jobs)
    open(done, "w").close()
    size = sum(e.stat().st_size for d in os.scandir(folder) if d.is_dir() for e in os.scandir(d.path))
    print(f"wrote {count:,} JPEGs ({size / count / 1024:.1f} KB each) to {folder} in {time.perf_counter() - start:.0f} s",
          file=sys.stderr)
    return folder


# --- one pipeline, in a child process --------------------------------------------------


def _rss_mib():
    with open("/proc/self/status") as file:
        for line in file:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _old_float32_pipeline(dataset, batch_size, seed=0):
    """The previous make_pipeline(training=True, cache=True): float32 after resize, cached, 10,000-image buffer."""
    import tensorflow as tf

    ds = dataset.map(lambda image, label: (tf.cast(image, tf.float32), tf.cast(label, tf.int32)),
                     num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.cache().shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def run_child(pipeline, folder, epochs, count, deterministic):
    """Builds one pipeline, iterates `epochs` epochs, prints a JSON line of its timings and memory."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    rss_start = _rss_mib()
    setup = time.perf_counter()
    steps = math.ceil(count / BATCH)
    if pipeline == "keras_dir":
        import keras

        dataset = keras.utils.image_dataset_from_directory(
            folder, image_size=(IMAGE_SIZE, IMAGE_SIZE), batch_size=BATCH, seed=0, verbose=False
        )
    else:
        from keras_vit.training.data import load_splits, make_pipeline
        from keras_vit.training.pipeline import FileSource, source_of

        splits = load_splits(f"folder:{folder}", validation_fraction=0.0, image_size=(IMAGE_SIZE, IMAGE_SIZE))
        # All `count` images in one train split: the folder's held-out test split folded back in.
        train, test = source_of(splits.train), source_of(splits.test)
        whole = FileSource(
            list(train.paths) + list(test.paths), list(train.labels) + list(test.labels), train.channels,
            train.decode_size, "bench",
        ).as_split()
        if pipeline == "float32_cache":
            dataset = _old_float32_pipeline(whole, BATCH)
        else:
            budget = 1024 * 2**20 if pipeline == "keras_vit" else 0
            dataset = make_pipeline(
                whole, (IMAGE_SIZE, IMAGE_SIZE), 3, BATCH, training=True, num_classes=CLASSES, seed=0,
                cache_memory_bytes=budget, deterministic=False if pipeline.endswith("_nd") else deterministic,
            )
    setup = time.perf_counter() - setup
    seconds, seen = [], []
    for epoch in range(epochs):
        # A fresh iterator when the epoch starts, as Keras' fit makes one for a dataset of known length.
        start, images = time.perf_counter(), 0
        iterator = iter(dataset)
        for _ in range(steps):
            try:
                batch, _ = next(iterator)
            except StopIteration:
                break
            images += int(batch.shape[0])
        seconds.append(time.perf_counter() - start)
        seen.append(images)
        assert batch.dtype == tf.float32 and tuple(batch.shape[1:]) == (IMAGE_SIZE, IMAGE_SIZE, 3)
    print(json.dumps({
        "pipeline": pipeline,
        "images": count,
        "setup_seconds": setup,
        "epoch_seconds": seconds,
        "epoch_images": seen,
        "rss_before_mib": rss_start,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


# --- the parent: every pipeline, a table ------------------------------------------------


def _run(pipeline, folder, count, epochs, deterministic):
    command = [sys.executable, "-m", "bench.input_pipeline", "--child", pipeline, "--folder", folder,
               "--epochs", str(epochs), "--counts", str(count)]
    if deterministic is False:
        command.append("--nondeterministic")
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    load = os.getloadavg()[0]
    out = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    if out.returncode:
        raise RuntimeError(f"{pipeline} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["one_epoch_images_per_s"] = result["epoch_images"][0] / result["epoch_seconds"][0]
    result["two_epochs_images_per_s"] = sum(result["epoch_images"]) / sum(result["epoch_seconds"])
    result["load_average_before"] = load
    print(f"  {pipeline}: {result['one_epoch_images_per_s']:.0f} img/s (1 epoch), "
          f"{result['two_epochs_images_per_s']:.0f} img/s ({epochs} epochs), peak RSS {result['peak_rss_mib']:.0f} MiB, "
          f"load {load:.1f}", file=sys.stderr)
    return result


def measure(folder, count, pipelines, epochs, deterministic, repeats):
    """Each pipeline `repeats` times, interleaved (a shared machine's load hits them alike); medians."""
    import statistics

    runs = {pipeline: [] for pipeline in pipelines}
    for _ in range(repeats):
        for pipeline in pipelines:
            runs[pipeline].append(_run(pipeline, folder, count, epochs, deterministic))
    results = []
    for pipeline, repeated in runs.items():
        summary = {"pipeline": pipeline, "images": count, "repeats": repeated}
        for key in ("setup_seconds", "one_epoch_images_per_s", "two_epochs_images_per_s", "peak_rss_mib",
                    "rss_before_mib", "load_average_before"):
            summary[key] = statistics.median(r[key] for r in repeated)
        results.append(summary)
    return results


def table(results):
    lines = [
        "| images | pipeline | setup s | img/s, epoch 1 | img/s, 2 epochs | peak RSS MiB | RSS before MiB | load |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['images']:,} | {r['pipeline']} | {r['setup_seconds']:.1f} | {r['one_epoch_images_per_s']:.0f} | "
            f"{r['two_epochs_images_per_s']:.0f} | {r['peak_rss_mib']:.0f} | {r['rss_before_mib']:.0f} | "
            f"{r['load_average_before']:.1f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/tmp/keras_vit_bench", help="where the JPEG folders are written (not the repo)")
    parser.add_argument("--counts", type=int, nargs="+", default=[3000, 20000])
    parser.add_argument("--pipelines", nargs="+", default=list(PIPELINES), choices=PIPELINES)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each pipeline, interleaved; medians reported")
    parser.add_argument("--old-max", type=int, default=5000, help="largest folder the float32-cache pipeline runs on")
    parser.add_argument("--nondeterministic", action="store_true", help="make_pipeline(deterministic=False)")
    parser.add_argument("--output", default=os.path.join(REPO_ROOT, "runs", "bench"))
    parser.add_argument("--child", choices=PIPELINES, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    deterministic = False if args.nondeterministic else None
    if args.child:
        return run_child(args.child, args.folder, args.epochs, args.counts[0], deterministic)

    from bench.machine import machine_info

    machine = machine_info()
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, flags {' '.join(machine['cpu_flags'])}, "
          f"{machine['memory_gib']} GiB, TensorFlow {machine['tensorflow']}, Keras {machine['keras']}", file=sys.stderr)
    os.makedirs(args.output, exist_ok=True)
    everything = []
    for count in args.counts:
        folder = make_folder(args.root, count)
        pipelines = [p for p in args.pipelines if p != "float32_cache" or count <= args.old_max]
        results = measure(folder, count, pipelines, args.epochs, deterministic, args.repeats)
        record = {"machine": machine, "images": count, "image_size": IMAGE_SIZE, "batch_size": BATCH,
                  "epochs": args.epochs, "deterministic": deterministic is not False, "results": results}
        suffix = "_nondeterministic" if deterministic is False else ""
        path = os.path.join(args.output, f"input_pipeline_{count}{suffix}.json")
        with open(path, "w") as file:
            json.dump(record, file, indent=2)
        everything += results
    print(table(everything))


if __name__ == "__main__":
    main()
