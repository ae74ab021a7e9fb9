"""Training a ViT with `model.fit`: strategy, data, optimizer, callbacks, final evaluation."""

import contextlib
import dataclasses
import json
import math
import os
import re
import shutil
import types
import sys

import keras
import tensorflow as tf

from keras_vit.files import LOCK_FILE, FolderLock, OutputExistsError, is_inside, same_path
from keras_vit.layers.patches import int_pair
from keras_vit.training import artifacts
from keras_vit.training.augment import make_augmenter
from keras_vit.training.callbacks import AtomicBestModel, ElapsedTime, EpochTensorBoard, PeriodicBackup, TimeBudget
from keras_vit.training.data import load_splits, make_pipeline, take_sample, worker_shard
from keras_vit.training.memory import OutOfMemoryError, check_training_memory, out_of_memory_message
from keras_vit.training.model_choice import (
    PRETRAINED_IMAGE_SIZE,
    cached_pretrained,
    choose_model,
    describe_choice,
    describe_fine_tune,
    how_to_get_pretrained,
    wants_pretrained,
)
from keras_vit.training.optimization import make_optimizer
from keras_vit.training.plots import plot_curves
from keras_vit.training.strategy import is_chief, make_strategy, read_tf_config, set_precision

BACKUP_DIR = "backup"


# What `preset="auto"` assumes of a dataset whose images vary in size (some tfds datasets).
VARIABLE_SIZE_SHAPE = (224, 224, 3)


def model_config(config, info, num_train=None):
    """The ViT arguments for a run: preset, the data's choice or checkpoint, then overrides.

    `preset="auto"` chooses the model from the dataset's image shape and `num_train`
    (`training.model_choice`); the user's model options still win. A patch size set without
    a stem drops the chosen stem, so that `--patch-size` alone gives the plain ViT.
    """
    from keras_vit.presets import get_preset

    if config.init_from:
        from keras_vit.checkpoint import checkpoint_config, read_checkpoint

        # The checkpoint decides the architecture and its channels; the pipeline
        # converts the dataset's images (e.g. gray to RGB) to match.
        model = checkpoint_config(read_checkpoint(checkpoint_file(config.init_from)))
    elif config.preset == "auto":
        model = choose_model(_auto_image_shape(config, info), num_train or 1)
        if "patch_size" in config.model and "stem_channels" not in config.model:
            model["stem_channels"] = None
    else:
        model = get_preset(config.preset)
        if info.image_shape is not None:
            model["channels"] = int(info.image_shape[-1])
        if config.preset == "vit_digits" and info.image_shape is not None:
            model["image_size"] = tuple(info.image_shape[:2])
    model["num_classes"] = info.num_classes
    model.update(config.model)
    if model["num_classes"] < info.num_classes:
        raise ValueError(
            f"the model has {model['num_classes']} classes but dataset {info.spec} has {info.num_classes}"
        )
    # Named here in the training options' words; the ViT's own error speaks of its arguments.
    if not model.get("use_class_token", True) and model.get("pooling", "token") == "token":
        raise ValueError("no class token (--no-class-token) needs average pooling (--pooling gap)")
    return model


def _auto_image_shape(config, info):
    shape = tuple(info.image_shape) if info.image_shape is not None else VARIABLE_SIZE_SHAPE
    size = _image_size(config)
    if size is not None:
        shape = (*size, shape[-1])
    return shape


def checkpoint_file(init_from):
    """The `.npz` file behind `init_from`: the file itself, or official weights by name
    (`keras_vit.pretrained`), fetched into the Keras cache on first use."""
    from keras_vit import pretrained

    if pretrained.is_weights_name(init_from):
        return pretrained.fetch_weights(init_from)
    if not os.path.exists(init_from) and os.sep not in init_from and not init_from.lower().endswith(".npz"):
        # A mistyped name, rather than a missing file: say both, with the names of its preset.
        preset = init_from.split(".", 1)[0]
        known = sorted(name for name in pretrained.WEIGHTS if name.startswith(preset + ".")) or sorted(pretrained.WEIGHTS)
        raise ValueError(f"--init-from {init_from} is neither a file nor known weights; known: {', '.join(known)} "
                         "(keras-vit presets lists them all)")
    return init_from


def training_device():
    """`"gpu"` where TensorFlow sees a GPU, else `"cpu"`: what the automatic choices depend on."""
    return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"


def named_pretrained(config):
    """`config` for `--pretrained NAME`: `init_from` is the weights, fine-tuned at the device's
    default resolution (`PRETRAINED_IMAGE_SIZE`) unless `--image-size` says otherwise."""
    from keras_vit import pretrained

    if config.pretrained in (None, "auto", "none"):
        return config
    if config.init_from:
        raise ValueError(f"--pretrained {config.pretrained} and --init-from {config.init_from} both name the "
                         "starting weights: give one")
    pretrained.get_weights(config.pretrained)
    return _fine_tune_config(config, config.pretrained)


def _fine_tune_config(config, name):
    model = dict(config.model)
    model.setdefault("image_size", PRETRAINED_IMAGE_SIZE[training_device()])
    return dataclasses.replace(config, init_from=name, model=model)


def automatic_pretrained(config, info):
    """`pretrained="auto"`: `config` fine-tuning the weights found in the Keras cache for photos (of
    `model_choice.SMALL_IMAGE` pixels and more) when nothing else chose the model, and the words
    that say so; photos without weights get the words that say how to get them."""
    if config.pretrained != "auto" or config.init_from or config.preset != "auto":
        return config, None
    if set(config.model) - {"image_size", "dropout_rate", "attention_dropout_rate", "drop_path_rate"}:
        return config, None  # the user shaped the model: a from-scratch run
    if not wants_pretrained(_auto_image_shape(dataclasses.replace(config, model={}), info)):  # the images' own size
        return config, None
    name = cached_pretrained(training_device())
    if name is None:
        return config, how_to_get_pretrained(training_device())
    return _fine_tune_config(config, name), "found in the Keras cache; images of 64 pixels and more"


# Options that may differ from the checkpoint when fine-tuning (regularization).
FINE_TUNE_OPTIONS = ("dropout_rate", "attention_dropout_rate", "drop_path_rate", "representation_size")


def build_model(config, model_args):
    """A fresh ViT, or one initialized from an official checkpoint (`init_from`)."""
    from keras_vit import ViT

    if config.init_from:
        from keras_vit.checkpoint import load_checkpoint

        overrides = {k: v for k, v in config.model.items() if k in FINE_TUNE_OPTIONS}
        if overrides.get("representation_size") == 0:
            # 0 on the command line or in a config drops the checkpoint's pre-logits layer, as the
            # paper does when fine-tuning (None there would mean "unset").
            overrides["representation_size"] = None
        return load_checkpoint(
            checkpoint_file(config.init_from),
            num_classes=model_args["num_classes"],
            image_size=model_args["image_size"],
            **overrides,
        )
    return ViT(**model_args)


def train(config, verbose=1, overwrite=False):
    """Trains, writes the output folder and returns the metrics dict.

    The folder holds `config.json`, `model.keras` (best validation accuracy),
    `history.csv`, `curves.png`, `metrics.json` and TensorBoard `logs/`. A run
    killed at any point resumes when `train` is called again with the same output.

    One process trains into a folder at a time (`keras_vit.files.FolderLock`). A folder that
    holds a finished run, or files that are not a run's, is refused unless `overwrite`:
    then the earlier run's files go (its `tflite/` and evaluations too) and other files stay.
    The output is never the dataset, nor inside a dataset folder.
    """
    with contextlib.ExitStack() as held:
        return _train(config, verbose, overwrite, held)


def _train(config, verbose, overwrite, held):
    tf_config = read_tf_config()
    chief = is_chief(tf_config)
    multi_worker = bool(tf_config) and len(tf_config.get("cluster", {}).get("worker", [])) > 1
    if config.time_budget_minutes and multi_worker:
        # Each worker would read its own clock and anneal the learning rate differently.
        raise ValueError("--time-budget needs a single worker; with several, use --epochs")
    output = config.output if chief else os.path.join(config.output, f".worker-{tf_config['task']['index']}")
    def lock():
        run_lock = held.enter_context(FolderLock(output, "keras-vit train"))
        if run_lock.stale_owner and verbose:
            print(f"keras-vit train: note: {output} was locked by pid {run_lock.stale_owner.get('pid')}, which no "
                  "longer runs: taking the run over", file=sys.stderr)
        return run_lock

    # The lock first: the folder of a run in progress is that run's, whatever it holds yet.
    run_lock = lock() if os.path.isdir(output) else None
    if chief:
        check_run_output(config, overwrite)
    config = named_pretrained(config)
    threads = _configure_threads(config)  # before make_strategy, which starts TensorFlow
    strategy = make_strategy(config.strategy)
    keras.utils.set_random_seed(config.seed)

    def load():
        return load_splits(
            config.dataset,
            data_dir=config.data_dir,
            validation_fraction=config.validation_fraction,
            seed=config.seed,
            image_size=_image_size(config),
            # Each worker of several reads its own share of the training files.
            shard=worker_shard(tf_config),
            manual_dir=config.manual_dir,
            verify_images=config.verify_images,
        )

    splits = load()
    info = splits.info
    data_shape = _auto_image_shape(dataclasses.replace(config, model={}), info)  # the images' own size
    config, pretrained_words = automatic_pretrained(config, info)
    if config.init_from and config.dataset.startswith("folder:") and _image_size(config) != tuple(info.image_shape[:2]):
        # Folder images are decoded at the model's size: read them again at the fine-tuning size.
        splits = load()
        info = splits.info
    if chief and not overwrite:  # with it, a backup there is discarded once the new run is sure to start
        # After the automatic choices, which config.json records as they were made.
        _check_resumable(output, config)
    classes = info.train_classes if info.train_classes is not None else info.num_classes
    if classes < 2:
        # One class trains to a meaningless 100%: every image is that class.
        raise ValueError(f"dataset {info.spec} has training images of {classes} class{'es' * (classes != 1)} only; "
                         "a classifier needs at least 2 classes"
                         + (", one sub-folder of images each" if config.dataset.startswith("folder:") else ""))
    num_train = info.num_examples.get("train")
    if config.limit_train:
        num_train = min(num_train or config.limit_train, config.limit_train)
    if num_train is None:
        num_train = int(splits.train.reduce(0, lambda n, _: n + 1))
    model_args = model_config(config, info, num_train)
    image_size = model_args["image_size"]
    image_size = int_pair(image_size, "image_size", "(height, width)")
    config = config.resolve(num_train, image_size, allow_time_budget=not multi_worker,
                            channels=model_args.get("channels"))
    if verbose and chief:
        if config.init_from:
            why = pretrained_words or ("--init-from" if config.pretrained in ("auto", "none") else "--pretrained")
            print(describe_fine_tune(config.init_from, checkpoint_file(config.init_from), num_train, data_shape,
                                     image_size, config.to_dict(), why))
        elif config.preset == "auto" and not config.init_from:
            line = describe_choice(model_args, num_train, data_shape, config.to_dict())
            if threads:
                line += f"; {threads} intra-op thread (a small step: training.threads)"
            print(line + (f"; {pretrained_words}" if pretrained_words else ""))
    channels = model_args.get("channels", 3)
    precision = set_precision(config.precision, strategy, hidden_dim=model_args.get("hidden_dim"))
    check_training_memory(model_args, config.batch_size)

    replicas = strategy.num_replicas_in_sync
    global_batch = config.batch_size * replicas
    steps_per_epoch = max(num_train // global_batch if replicas > 1 else math.ceil(num_train / global_batch), 1)

    augmenter = make_augmenter(
        image_size, config.crop_padding, config.flip, config.randaugment, config.mixup, config.cutmix, config.seed,
        crop_fill=config.crop_fill,
    )
    pipeline = dict(image_size=image_size, channels=channels, num_classes=model_args["num_classes"],
                    cache_file=config.cache_file)
    # One memory budget for the decoded training and validation images together.
    cache_budget = int(config.cache_memory_mb * 2**20)
    train_bytes = num_train * image_size[0] * image_size[1] * channels
    train_ds = make_pipeline(
        take_sample(splits.train, config.limit_train, config.seed), batch_size=global_batch, training=True,
        augmenter=augmenter, seed=config.seed, drop_remainder=replicas > 1, cache_memory_bytes=cache_budget,
        **pipeline,
    )
    if train_bytes <= cache_budget:
        cache_budget -= train_bytes
    val_ds = None
    if splits.validation is not None and info.num_examples.get("validation") == 0:
        # A few images per class round to an empty held-out share: validating on nothing
        # would leave no best epoch (and no model.keras) to keep.
        if verbose and chief:
            print(f"no validation images at --validation-fraction {config.validation_fraction:g} "
                  f"for {num_train} training images: keeping the last model")
        splits.validation = None
    if splits.validation is not None:
        val_ds = make_pipeline(splits.validation, batch_size=global_batch, cache_memory_bytes=cache_budget, **pipeline)
    # Read once at the end: no cache.
    test_ds = make_pipeline(take_sample(splits.test, config.limit_test), batch_size=global_batch,
                            **dict(pipeline, cache_file=None))

    with strategy.scope():
        model = build_model(config, model_args)
        time_progress = None
        if config.time_budget_minutes:
            time_progress = keras.Variable(0.0, dtype="float32", trainable=False, name="time_progress")
        optimizer = make_optimizer(
            model,
            learning_rate=config.learning_rate,
            total_steps=steps_per_epoch * config.epochs,
            warmup_steps=int(config.warmup_epochs * steps_per_epoch),
            weight_decay=config.weight_decay,
            clipnorm=config.clipnorm,
            ema=config.ema,
            time_progress=time_progress,
            optimizer=config.optimizer,
            momentum=config.momentum,
            # A fine-tuned model's new head starts at zero: decaying it only slows it down.
            decay_head=not config.init_from,
        )
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=config.label_smoothing),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
            jit_compile=_jit(config.jit_compile),
            steps_per_execution=config.steps_per_execution,
        )

    # Only now, with the data read and the model built: a run refused for bad input leaves no folder.
    os.makedirs(output, exist_ok=True)
    if run_lock is None:
        lock()
        if chief:
            check_run_output(config, overwrite)  # another process may have used the new folder meanwhile
    if chief:
        remove_run_files(output, keep_backup=not overwrite)
    if chief:
        record = config.to_dict()
        # The keys of RUN_RECORD_KEYS, which `read_config_file` drops again.
        record.update(
            {"model_config": model.get_config(), "class_names": info.class_names, "num_classes": info.num_classes,
             "precision_used": precision, "intra_op_threads": threads or "default"}
        )
        artifacts.write_json_atomic(os.path.join(output, artifacts.CONFIG_FILE), record)

    backup_dir = os.path.join(output, BACKUP_DIR)
    resumed_epoch = _backup_epoch(backup_dir)
    if resumed_epoch is not None and verbose:
        print(f"Resuming from the backup in {backup_dir}: epoch {resumed_epoch + 1} of {config.epochs}")

    elapsed = ElapsedTime(os.path.join(backup_dir, "elapsed.json"))
    best_model = None
    if chief:
        best_model = AtomicBestModel(
            os.path.join(output, artifacts.MODEL_FILE),
            # Without a validation split there is no best epoch to pick: the final model is kept.
            keep=config.keep_model if val_ds is not None else "last",
            min_seconds=config.backup_seconds,
        )
    backup = PeriodicBackup(
        backup_dir, config.backup_every, config.backup_seconds, double_checkpoint=True,
        before_backup=best_model.flush if best_model else None,
    )
    # The epoch-end backup comes after the history row and the best model of its epoch, so a
    # run killed between them repeats the epoch rather than losing its row. Under EMA it must
    # come before the swap to the averaged weights, which would otherwise be backed up as the
    # training weights.
    callbacks = [backup] if config.ema else []
    callbacks += [keras.callbacks.TerminateOnNaN(), elapsed]
    budget = None
    if config.time_budget_minutes:
        budget = TimeBudget(60.0 * config.time_budget_minutes, elapsed, time_progress)
        callbacks.append(budget)
    if config.ema:
        # Before the checkpoint callbacks: validation and the saved models see the averaged weights.
        callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    if chief:
        callbacks += [
            best_model,
            keras.callbacks.CSVLogger(os.path.join(output, "history.csv"), append=resumed_epoch is not None),
            EpochTensorBoard(os.path.join(output, "logs")),
        ]
    if config.early_stopping:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_accuracy", patience=config.early_stopping, restore_best_weights=True
            )
        )
    if not config.ema:
        callbacks.append(backup)
    if resumed_epoch is not None and chief:
        # The resumed run repeats the backup's epoch: its row (if logged before the kill) goes.
        artifacts.truncate_history(os.path.join(output, "history.csv"), resumed_epoch)
    train_ds = _repeated(train_ds, steps_per_epoch, config.steps_per_execution)
    try:
        model.fit(
            train_ds, validation_data=val_ds, epochs=config.epochs, steps_per_epoch=steps_per_epoch,
            callbacks=callbacks, verbose=verbose, shuffle=False,  # the pipeline shuffles
        )
    except tf.errors.ResourceExhaustedError:
        raise OutOfMemoryError(out_of_memory_message(config.batch_size)) from None
    train_seconds = elapsed.total_seconds

    if not chief:
        return {}
    best = artifacts.load_keras_model(output) if os.path.exists(os.path.join(output, artifacts.MODEL_FILE)) else model
    with strategy.scope():
        best.compile(
            loss=keras.losses.CategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        )
    test_loss, test_accuracy = best.evaluate(test_ds, verbose=0)
    metrics = {
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "num_params": int(model.count_params()),
        "train_seconds": float(train_seconds),
        "epochs": int(config.epochs),
        "epochs_run": _epochs_run(os.path.join(output, "history.csv"), config.epochs),
        "stopped_by_time_budget": bool(budget and budget.stopped_early),
        "time_budget_minutes": float(config.time_budget_minutes or 0.0),
        "precision": precision,
        "dataset": config.dataset,
        "replicas": int(replicas),
        "global_batch_size": int(global_batch),
    }
    artifacts.write_json_atomic(os.path.join(output, "metrics.json"), metrics)
    history_path = os.path.join(output, "history.csv")
    if os.path.exists(history_path):
        plot_curves(history_path, os.path.join(output, "curves.png"))
    if config.export_tflite:
        from keras_vit.training.export_after_training import export_tflite_after_training

        export_tflite_after_training(output, splits, config.dataset, config.limit_test,
                                     log=print if verbose else lambda *_: None)
    return metrics


# What a run writes into its folder (besides config.json), all of it from one model: a new run
# replaces these. Evaluations (`keras-vit evaluate`) and `tflite/` describe that model too.
RUN_FILES = (artifacts.MODEL_FILE, artifacts.MODEL_FILE + ".best.json", "history.csv", "metrics.json", "curves.png",
             "logs", "tflite")
RUN_FILE_PATTERNS = (re.compile(r"metrics_eval.*\.json$"), re.compile(r"\.worker-\d+$"),
                     re.compile(r"\..+\.(tmp|old)-"), re.compile(re.escape(LOCK_FILE) + "$"))


def is_run_entry(name):
    """Whether an entry of a run folder is one that `keras-vit train` (or evaluate, export) wrote there."""
    return name in RUN_FILES + (artifacts.CONFIG_FILE, BACKUP_DIR) or any(p.match(name) for p in RUN_FILE_PATTERNS)


def check_run_output(config, overwrite=False):
    """Refuses an output folder that training would damage, in one line: a file, the dataset itself
    (or a folder inside a dataset folder, which would become a class), a finished run or a folder
    of other files (both unless `overwrite`). A run to resume, or a new or empty folder, passes."""
    output = config.output
    if os.path.lexists(output) and not os.path.isdir(output):
        raise ValueError(f"--output {output} is a file; a run needs a folder (a new one, or a run's to resume)")
    kind, _, rest = config.dataset.partition(":")
    if kind == "folder" and rest and os.path.isdir(rest) and is_inside(output, rest):
        where = "is the dataset folder" if same_path(output, rest) else "is inside the dataset folder"
        raise ValueError(f"--output {output} {where} {rest}, whose sub-folders are the classes: "
                         "choose a folder outside it")
    for path, what in ((rest if kind == "npz" else None, "the dataset"), (config.init_from, "the checkpoint")):
        if path and same_path(output, path):
            raise ValueError(f"--output {output} is {what}, an input of this run: choose another folder")
    if not os.path.isdir(output) or overwrite:
        return
    entries = os.listdir(output)
    if _backup_epoch(os.path.join(output, BACKUP_DIR)) is not None:
        return  # a killed run: resumed by the same command
    finished = [name for name in (artifacts.MODEL_FILE, "metrics.json") if name in entries]
    if finished:
        accuracy = ""
        try:
            with open(os.path.join(output, "metrics.json")) as file:
                accuracy = f", test accuracy {float(json.load(file)['test_accuracy']):.4f}"
        except (OSError, ValueError, KeyError, TypeError):
            pass
        raise OutputExistsError(
            f"--output {output} holds a finished run ({', '.join(finished)}{accuracy}): choose another folder, "
            "or --overwrite to replace it"
        )
    others = sorted(name for name in entries if not is_run_entry(name))
    if others:
        shown = ", ".join(name + ("/" if os.path.isdir(os.path.join(output, name)) else "") for name in others[:3])
        raise OutputExistsError(
            f"--output {output} is a folder of other files ({shown}{', ...' if len(others) > 3 else ''}), not a "
            "keras-vit run: choose a new or empty folder, or --overwrite to write the run into it (other files are kept)"
        )


def remove_run_files(output, keep_backup=True):
    """Removes an earlier run's files from `output` (`RUN_FILES`, evaluations), and its crash backup
    unless `keep_backup`; other files stay. A resumed run keeps everything of its own."""
    if keep_backup and _backup_epoch(os.path.join(output, BACKUP_DIR)) is not None:
        return
    for name in os.listdir(output):
        if name in RUN_FILES or name == BACKUP_DIR or RUN_FILE_PATTERNS[0].match(name):
            path = os.path.join(output, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)


# The options a crash backup depends on: its weights only fit the same data and architecture.
RUN_IDENTITY = ("dataset", "preset", "model", "init_from")


def _check_resumable(output, config):
    """Refuses to resume another run's backup in `output` (a clear error, not a Keras shape mismatch)."""
    config_path = os.path.join(output, artifacts.CONFIG_FILE)
    if _backup_epoch(os.path.join(output, BACKUP_DIR)) is None or not os.path.exists(config_path):
        return
    with open(config_path) as file:
        previous = json.load(file)
    current = json.loads(json.dumps(config.to_dict()))  # tuples as JSON lists, like the saved file
    changed = [key for key in RUN_IDENTITY if previous.get(key) != current.get(key)]
    if changed:
        differences = "; ".join(f"{key} {previous.get(key)!r} there, {current.get(key)!r} now" for key in changed)
        raise ValueError(
            f"{output} holds the crash backup of a different run ({differences}): run the same command to resume "
            "it, or choose another --output"
        )


def _epochs_run(history_path, default):
    """Epochs logged in history.csv (the first and any resumed processes), else `default`."""
    if not os.path.exists(history_path):
        return int(default)
    with open(history_path) as file:
        return max(sum(1 for line in file if line.strip()) - 1, 0)


def _image_size(config):
    size = config.model.get("image_size")
    if size is None:
        return None
    return int_pair(size, "image_size", "(height, width)")


def _repeated(dataset, steps_per_epoch, steps_per_execution=1):
    """`dataset.repeat()` where one pass of `dataset` is `steps_per_epoch` batches, else `dataset`.

    Given a finite dataset, `fit` makes a new iterator at every epoch, about 16 ms each on 2
    cores: 1.6 s of the digits job's 100 half-second epochs. Repeated, with the steps of one
    pass, the iterator lives across epochs and each epoch is still one pass: the shuffle before
    the batch reshuffles at every repetition. (Validation gains nothing from the same: `evaluate`
    resets its iterator on every call.) Left finite where a compiled call of
    `steps_per_execution` steps would run past the epoch's end: on a finite pass the last call
    stops at the end of the data, on a repeated one it would take the next epoch's batches.

    Not `make_pipeline(repeat=True)`: that repeats before batching (a sharded worker needs an
    endless stream), so the last partial batch of a pass joins the next pass's first images.
    Repeating the batches keeps every epoch the same batches as the finite pipeline's, so the
    weights stay those of the finite pipeline
    (`test_several_steps_per_execution_train_the_same_model` compares the two).
    """
    if dataset is None or steps_per_epoch is None or steps_per_epoch < 1:
        return dataset
    if steps_per_epoch % steps_per_execution:
        return dataset
    if int(dataset.cardinality()) != steps_per_epoch:  # unknown, infinite, or not one pass per epoch
        return dataset
    return dataset.repeat()


def _configure_threads(config):
    """One intra-op thread for a small training step (`training.threads`), decided from what an
    array dataset's headers say before TensorFlow starts; None where TensorFlow's default stays."""
    from keras_vit.training.threads import array_dataset_shape, configure_intra_op_threads

    if config.init_from or config.limit_train:
        return None  # a checkpoint's model, or a sample of unknown size: TensorFlow's default
    found = array_dataset_shape(config.dataset, config.validation_fraction)
    if found is None:
        return None
    num_train, shape = found
    info = types.SimpleNamespace(spec=config.dataset, image_shape=shape, num_classes=1)
    model_args = model_config(config, info, num_train)
    image_size = int_pair(model_args["image_size"], "image_size", "(height, width)")
    batch_size = config.resolve(num_train, image_size, channels=model_args.get("channels")).batch_size
    return configure_intra_op_threads(model_args, batch_size)


def _jit(value):
    if isinstance(value, bool) or value == "auto":
        return value
    return {"true": True, "false": False}.get(str(value).lower(), "auto")


def _backup_epoch(backup_dir):
    path = os.path.join(backup_dir, "training_metadata.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path) as file:
            return int(json.load(file)["epoch"])
    except (ValueError, KeyError):
        return None
