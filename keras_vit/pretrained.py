"""Official ViT weights by name: google-research's checkpoints, fetched once into the Keras cache.

A name is `PRESET.WEIGHTS`, as `keras-vit presets` lists them:

    >>> WEIGHTS["vit_ti16.augreg_in21k_ft_in1k"]["image_size"]
    224
    >>> weights_name("vit_ti16", "augreg_in21k_ft_in1k")
    'vit_ti16.augreg_in21k_ft_in1k'

`ViT.from_preset("vit_ti16", weights="augreg_in21k_ft_in1k")` and `keras-vit train --init-from
vit_ti16.augreg_in21k_ft_in1k` fetch the file with `keras.utils.get_file` into
`$KERAS_HOME/vit_models/` (`~/.keras/vit_models/` by default, the bucket's own paths below it),
check its SHA-256 where one is recorded, and read it from there afterwards without network.
`KERAS_VIT_WEIGHTS_URL` replaces the bucket's address with a mirror that holds the same paths.

The weights (as data, one entry per file):
- `augreg_in21k_ft_in1k`: "How to train your ViT" (Steiner et al. 2021): pre-trained on
  ImageNet-21k for 300 epochs with the best augmentation of the paper for the size, then
  fine-tuned on ImageNet-1k at 224 px. The best starting point for fine-tuning on photos.
- `augreg_in21k`: the same pre-training, before fine-tuning: the 21,843-class head of ImageNet-21k.
- `orig_in21k`: the original paper's (Dosovitskiy et al. 2020) ImageNet-21k pre-training, with its
  pre-logits layer; the head is ImageNet-21k's.
"""

import hashlib
import os

BUCKET_URL = "https://storage.googleapis.com/vit_models/"
MIRROR_ENV = "KERAS_VIT_WEIGHTS_URL"
CACHE_SUBDIR = "vit_models"
IMAGENET21K_CLASSES = 21843

# AugReg runs: the pre-training run's name and its fine-tuning run at 224 px
# (google-research/vision_transformer, vit_jax/configs/augreg.py; timm's `augreg_in21k_ft_in1k`).
_AUGREG_RUNS = {
    "vit_ti16": ("Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0", "lr_0.03"),
    "vit_s16": ("S_16-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0", "lr_0.03"),
    "vit_b16": ("B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0", "lr_0.01"),
    "vit_b32": ("B_32-i21k-300ep-lr_0.001-aug_medium1-wd_0.03-do_0.0-sd_0.0", "lr_0.03"),
    "vit_l16": ("L_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.1-sd_0.1", "lr_0.01"),
}
# ImageNet-1k top-1 of the fine-tuned 224-px files, in percent, as timm publishes its evaluation of
# them (huggingface/pytorch-image-models, results/results-imagenet.csv).
_AUGREG_TOP1 = {"vit_ti16": 75.45, "vit_s16": 81.38, "vit_b16": 84.53, "vit_b32": 80.72, "vit_l16": 85.83}
# Parameters with the 1000-class head (the same count `ViT.count_params()` gives).
_TITLES = {"vit_ti16": "ViT-Ti/16", "vit_s16": "ViT-S/16", "vit_b16": "ViT-B/16", "vit_b32": "ViT-B/32",
           "vit_l16": "ViT-L/16"}
_PARAMETERS = {"vit_ti16": 5_717_416, "vit_s16": 22_050_664, "vit_b16": 86_567_656, "vit_b32": 88_224_232,
               "vit_l16": 304_326_632}

# SHA-256 of each file, by its path in the bucket. Only files whose digest was computed from the
# file itself are listed; a file without one is checked against the digest written beside it in
# the cache at its first download (`.sha256`), so a cached copy that changes is still refused.
SHA256 = {}


def _entries():
    weights = {}
    for preset, (run, fine_tune_lr) in _AUGREG_RUNS.items():
        weights[f"{preset}.augreg_in21k_ft_in1k"] = {
            "preset": preset,
            "path": f"augreg/{run}--imagenet2012-steps_20k-{fine_tune_lr}-res_224.npz",
            "image_size": 224,
            "num_classes": 1000,
            "imagenet_top1": _AUGREG_TOP1[preset],
            "description": "AugReg: ImageNet-21k, fine-tuned on ImageNet-1k at 224",
        }
        weights[f"{preset}.augreg_in21k"] = {
            "preset": preset,
            "path": f"augreg/{run}.npz",
            "image_size": 224,
            "num_classes": IMAGENET21K_CLASSES,
            "imagenet_top1": None,
            "description": "AugReg: ImageNet-21k pre-training",
        }
    for preset, file in (("vit_b16", "ViT-B_16"), ("vit_b32", "ViT-B_32"), ("vit_l16", "ViT-L_16")):
        weights[f"{preset}.orig_in21k"] = {
            "preset": preset,
            "path": f"imagenet21k/{file}.npz",
            "image_size": 224,
            "num_classes": IMAGENET21K_CLASSES,
            "imagenet_top1": None,
            "description": "the original paper's ImageNet-21k pre-training (pre-logits layer)",
        }
    for name, entry in weights.items():
        entry["parameters"] = _PARAMETERS[entry["preset"]]
        entry["title"] = _TITLES[entry["preset"]]
        entry["sha256"] = SHA256.get(entry["path"])
    return weights


# Name -> {preset, path (in the bucket), image_size, num_classes, imagenet_top1 (%, or None),
# parameters (with a 1000-class head), title ("ViT-Ti/16"), sha256 (or None), description}.
WEIGHTS = _entries()


class WeightsUnavailableError(FileNotFoundError):
    """The weights are neither in the cache nor downloadable: the message says where to put them."""


def weights_name(preset, weights):
    """The full name of `weights` for `preset` (`vit_ti16`, `augreg_in21k_ft_in1k`)."""
    return f"{preset}.{weights}"


def is_weights_name(text):
    """Whether `text` names registered weights (rather than a checkpoint file)."""
    return isinstance(text, str) and text in WEIGHTS


def get_weights(name):
    """The entry of `WEIGHTS` for a full name; unknown names list the known ones for that preset."""
    if name in WEIGHTS:
        return dict(WEIGHTS[name])
    preset = name.split(".", 1)[0] if isinstance(name, str) else ""
    same_preset = sorted(known for known in WEIGHTS if known.startswith(preset + "."))
    known = same_preset or sorted(WEIGHTS)
    raise ValueError(f"unknown weights {name!r}; known: {', '.join(known)} (keras-vit presets lists them all)")


def weights_url(name):
    """The address `name` is fetched from: the bucket, or the mirror in `KERAS_VIT_WEIGHTS_URL`."""
    base = os.environ.get(MIRROR_ENV) or BUCKET_URL
    return base.rstrip("/") + "/" + get_weights(name)["path"]


def cache_root(cache_dir=None):
    """The Keras cache: `cache_dir`, else `$KERAS_HOME`, else `~/.keras` (as `keras.utils.get_file`)."""
    if cache_dir:
        return os.path.abspath(os.path.expanduser(cache_dir))
    if os.environ.get("KERAS_HOME"):
        return os.path.abspath(os.path.expanduser(os.environ["KERAS_HOME"]))
    return os.path.join(os.path.expanduser("~"), ".keras")


def cached_path(name, cache_dir=None):
    """Where `name` lies once fetched: `<cache>/vit_models/<path in the bucket>`."""
    return os.path.join(cache_root(cache_dir), CACHE_SUBDIR, *get_weights(name)["path"].split("/"))


def file_sha256(path):
    """The SHA-256 of a file, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sidecar(path):
    return path + ".sha256"


def _expected_sha256(name, path):
    """The recorded digest, else the one written beside the cached file at its download."""
    recorded = get_weights(name)["sha256"]
    if recorded:
        return recorded, "recorded for it"
    try:
        with open(_sidecar(path)) as file:
            return file.read().split()[0], f"written at its download ({_sidecar(path)})"
    except (OSError, IndexError):
        return None, None


# Files this process has checked, with the (size, mtime) they had then: hashing a 1.2 GB file once
# per process is enough while it does not change.
_checked = {}


def _check_cached(name, path):
    expected, source = _expected_sha256(name, path)
    if expected is None:
        return
    stat = os.stat(path)
    if _checked.get(path) == (expected, stat.st_size, stat.st_mtime_ns):
        return
    actual = file_sha256(path)
    if actual != expected:
        raise ValueError(
            f"{path} (weights {name}) has SHA-256 {actual}, not the {expected} {source}: the file is corrupt "
            "or another one; remove it to download it again"
        )
    _checked[path] = (expected, stat.st_size, stat.st_mtime_ns)


def fetch_weights(name, cache_dir=None, verbose=True):
    """The local path of weights `name`, downloaded into the Keras cache on first use.

    A cached file is checked against its SHA-256 and used without network. A download is written
    to a temporary file beside its place and moved there only once its SHA-256 matches, so the
    cache holds the checked file or nothing.

    Raises:
        ValueError: unknown name, or a file whose SHA-256 differs from the recorded one.
        WeightsUnavailableError: not cached and not downloadable (offline): the message names the
            address and the path to put the file at.
    """
    import keras

    from keras_vit.files import atomic_path

    entry = get_weights(name)
    path = cached_path(name, cache_dir)
    if os.path.exists(path):
        _check_cached(name, path)
        return path
    url = weights_url(name)
    # `keras.utils.get_file` writes straight to its target and keeps a download whose hash does
    # not match (and, offline, deletes a file already there that fails the hash): it fetches into
    # a temporary name here, and the file is moved into place only after the check.
    with atomic_path(path) as tmp:
        try:
            keras.utils.get_file(
                fname=os.path.basename(tmp), origin=url, cache_dir=os.path.dirname(tmp), cache_subdir="",
                file_hash=None, force_download=True,  # the empty temporary is not a cached copy
            )
        except Exception as error:  # get_file raises a bare Exception for URL errors
            raise WeightsUnavailableError(
                f"weights {name} are not in the cache and could not be downloaded from {url} ({_reason(error)}): "
                f"put the file at {path}, or set {MIRROR_ENV} to a mirror of {BUCKET_URL}"
            ) from None
        actual = file_sha256(tmp)
        if entry["sha256"] and actual != entry["sha256"]:
            raise ValueError(
                f"{url} sent a file with SHA-256 {actual}, not the {entry['sha256']} recorded for {name}: "
                "refused, nothing was kept in the cache"
            )
    if not entry["sha256"]:
        from keras_vit.files import write_text_atomic

        write_text_atomic(_sidecar(path), f"{actual}  {os.path.basename(path)}\n")
        if verbose:
            print(f"weights {name}: no SHA-256 is recorded for {entry['path']}; the download's ({actual}) is "
                  f"kept beside it and checked on every later use")
    return path


def _reason(error):
    text = str(error).strip() or error.__class__.__name__
    # get_file's message repeats the address: keep its reason, on one line.
    if " -- " in text:
        text = text.rsplit(" -- ", 1)[1]
    return " ".join(text.split())


def check_weights_preset(name, preset):
    """Refuses weights of another architecture than `preset` (a ViT-S file for `vit_ti16`)."""
    if get_weights(name)["preset"] != preset:
        raise ValueError(f"weights {name} are for preset {get_weights(name)['preset']}, not {preset}")


def describe_weights(name):
    """One line for `keras-vit presets`: name, resolution, parameters, top-1, classes."""
    entry = get_weights(name)
    top1 = f"top-1 {entry['imagenet_top1']:.2f}%" if entry["imagenet_top1"] is not None else "top-1 -"
    return (
        f"{name:<31} {entry['image_size']} px  {entry['parameters'] / 1e6:6.1f}M params  {top1:<13} "
        f"{entry['num_classes']:>6,} classes  {entry['description']}"
    )
