"""Callbacks that keep a user's files whole when a run is killed."""

import json
import os
import time

import keras

from keras_vit.files import atomic_path, deferred_termination, write_json_atomic


class AtomicBestModel(keras.callbacks.Callback):
    """Saves the model atomically at the end of an epoch: the best one, or the last.

    `keep="best"`: the epoch with the highest `val_accuracy`; among equal accuracies the
    later epoch, which the warm-up + cosine schedule has annealed further. On small
    validation sets accuracy takes few distinct values, so ties are common (digits:
    144 images; a GPU sweep of the digits recipe over 8 seeds gave 98.1% test accuracy
    with later-epoch ties against 97.9% with ties broken by `val_loss`).
    `keep="last"`: every epoch, so the file ends as the final model (98.3% there).

    Keras' `ModelCheckpoint` writes the archive in place, so a run killed while
    saving leaves a truncated `model.keras`; this writes a temporary file in the
    same folder and renames it over the old one. The best scores so far are kept
    beside the model, so a resumed run does not overwrite a better model.

    Writes are at most `min_seconds` apart: one `.keras` archive costs 0.3-0.45 s on two
    CPU cores even for the 138k-parameter digits model, and that job improves its
    validation score 19-40 times in its 2 minutes. A better model found sooner is kept
    in memory (its weights and optimizer state) and written by `flush()`: at the end of
    training, at the next epoch past the time floor, and before each crash backup
    (`PeriodicBackup(before_backup=...)`), so a resumed run never lacks a best model
    from before its backup.
    """

    KEEP = ("best", "last")

    def __init__(self, path, keep="best", min_seconds=0.0):
        super().__init__()
        if keep not in self.KEEP:
            raise ValueError(f"keep must be one of {self.KEEP}, got {keep!r}")
        if min_seconds < 0:
            raise ValueError(f"min_seconds must be 0 or more, got {min_seconds}")
        self.path = path
        self.keep = keep
        self.min_seconds = float(min_seconds)
        self.state_path = f"{path}.best.json"
        self.best = None
        self.files_written = 0
        self._pending = None  # (scores, values of _state_variables()) not yet on disk
        self._last_write = None
        if os.path.exists(self.state_path) and os.path.exists(path):
            with open(self.state_path) as file:
                self.best = json.load(file)

    def _better(self, accuracy, loss):
        if self.best is None or self.keep == "last":
            return True
        return accuracy >= self.best["val_accuracy"]

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if "val_accuracy" not in logs and self.keep == "best":
            return
        accuracy, loss = logs.get("val_accuracy"), logs.get("val_loss")
        accuracy = None if accuracy is None else float(accuracy)
        loss = None if loss is None else float(loss)
        if not self._better(accuracy, loss):
            return
        self.best = {"val_accuracy": accuracy, "val_loss": loss, "epoch": epoch + 1}
        if self._last_write is None or time.monotonic() - self._last_write >= self.min_seconds:
            self._pending = None
            self._write(self.best)
        else:
            self._pending = (self.best, [variable.numpy() for variable in self._state_variables()])

    def on_train_end(self, logs=None):
        self.flush()

    def flush(self):
        """Writes the best model still held in memory, if any; the model keeps its current state."""
        if self._pending is None:
            return
        scores, values = self._pending
        self._pending = None
        variables = self._state_variables()
        current = [variable.numpy() for variable in variables]
        self._assign(variables, values)
        try:
            self._write(scores)
        finally:
            self._assign(variables, current)

    def _state_variables(self):
        optimizer = getattr(self.model, "optimizer", None)
        return list(self.model.variables) + (list(optimizer.variables) if optimizer is not None else [])

    @staticmethod
    def _assign(variables, values):
        for variable, value in zip(variables, values):
            variable.assign(value)

    def _write(self, scores):
        with deferred_termination():  # the model and its scores together, also on SIGTERM
            with atomic_path(self.path, ".keras") as tmp:
                self.model.save(tmp)
            write_json_atomic(self.state_path, scores)
        self.files_written += 1
        self._last_write = time.monotonic()


class ElapsedTime(keras.callbacks.Callback):
    """Training seconds summed over the runs that a resumed training took."""

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.previous = 0.0
        if os.path.exists(path):
            with open(path) as file:
                self.previous = float(json.load(file).get("seconds", 0.0))
        self.start = None

    @property
    def total_seconds(self):
        return self.previous + (time.perf_counter() - self.start if self.start else 0.0)

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        write_json_atomic(self.path, {"seconds": self.total_seconds})


class TimeBudget(keras.callbacks.Callback):
    """Ends training once `budget_seconds` of training time are spent (summed over resumes).

    Before each step it sets the schedule's `time_progress` (see
    `training.optimization.ProgressWarmupCosine`) to the share of the budget spent, so
    the learning rate reaches 0 when the time does (with `steps_per_execution=N`,
    before each call of N steps). The step that crosses the budget is
    the last; validation and the best-model save of that epoch still run.
    """

    def __init__(self, budget_seconds, elapsed, time_progress):
        super().__init__()
        if budget_seconds <= 0:
            raise ValueError(f"the time budget must be positive, got {budget_seconds} seconds")
        self.budget_seconds = float(budget_seconds)
        self.elapsed = elapsed
        self.time_progress = time_progress
        self.stopped_early = False

    def on_train_batch_begin(self, batch, logs=None):
        self.time_progress.assign(min(self.elapsed.total_seconds / self.budget_seconds, 1.0))

    def on_train_batch_end(self, batch, logs=None):
        if self.elapsed.total_seconds >= self.budget_seconds:
            self.stopped_early = True
            self.model.stop_training = True


class PeriodicBackup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` at epoch ends and every `every_steps` steps within an epoch, at most
    once per `min_seconds`.

    A backup writes every variable and the optimizer state to HDF5 and copies the
    previous one, about 0.8 s on two CPU cores whatever the model's size: every 50 steps
    of the default digits job (45 ms steps) that was 20 s of its 122 s of training
    (`BENCHMARKS.md`, section 2). The time floor bounds both the cost and the
    work a killed run loses; big models, whose 50 steps take longer, are unaffected.

    Resuming is Keras': the weights and optimizer of the last backup, from the start of
    the epoch it was taken in (after an epoch-end backup, the next epoch). `keras-vit train`
    puts this callback after the history and best-model callbacks, so that a finished
    epoch's row and model are written before the backup that skips it. `before_backup` (a function of no arguments) runs before
    each backup: `AtomicBestModel.flush`, so that epochs a resumed run will not repeat
    have their best model on disk.

    Steps are counted from the batch indices Keras reports, so `every_steps` stays a
    number of steps when the model runs several per call (`steps_per_execution`).
    """

    def __init__(self, backup_dir, every_steps=50, min_seconds=30.0, before_backup=None, **kwargs):
        # save_freq=1: the parent saves each time its batch hook runs; this class decides when.
        super().__init__(backup_dir, save_freq=1, **kwargs)
        if int(every_steps) < 1:
            raise ValueError(f"every_steps must be at least 1, got {every_steps}")
        if min_seconds < 0:
            raise ValueError(f"min_seconds must be 0 or more, got {min_seconds}")
        self.every_steps = int(every_steps)
        self.min_seconds = float(min_seconds)
        self.before_backup = before_backup
        self.backups_written = 0
        self._steps_since_backup = 0
        self._last_step = -1
        self._last_backup = time.monotonic()

    def _save_model(self):
        # SIGTERM (`keras_vit.files.terminate_as_exit`) waits for the backup: cut short, its HDF5 file
        # would be closed cleanly with weights missing, and Keras only falls back to the previous
        # backup from a file it cannot open.
        with deferred_termination():
            super()._save_model()

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._steps_since_backup = 0
        self._last_step = -1
        self._last_backup = time.monotonic()

    def on_train_end(self, logs=None):
        # The parent deletes the backup here: the best model must be on disk first.
        if self.before_backup is not None:
            self.before_backup()
        super().on_train_end(logs)

    def on_epoch_end(self, epoch, logs=None):
        # At an epoch's end once the time floor has passed, so that a run killed later resumes
        # at the next epoch. Within the floor the epoch is not backed up: the digits job's
        # 0.5 s epochs spent 0.26 s each on a backup and its best-model write, and a kill then
        # repeats at most `min_seconds` of training (BENCHMARKS.md, "Digits").
        super().on_epoch_end(epoch, logs)
        if time.monotonic() - self._last_backup < self.min_seconds:
            return
        if self.before_backup is not None:
            self.before_backup()
        self._save_model()
        self.backups_written += 1
        self._steps_since_backup = 0
        self._last_backup = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        # `batch` is the index of the epoch's last step run: with `steps_per_execution=N`
        # in `compile`, this hook runs once per N steps. Keras reports a full N for an
        # epoch's last, shorter call, so the count can run up to N-1 steps ahead.
        self._steps_since_backup += batch + 1 if batch <= self._last_step else batch - self._last_step
        self._last_step = batch
        if self._steps_since_backup < self.every_steps or time.monotonic() - self._last_backup < self.min_seconds:
            return
        if self.before_backup is not None:
            self.before_backup()
        super().on_train_batch_end(batch, logs)
        self.backups_written += 1
        self._steps_since_backup = 0
        self._last_backup = time.monotonic()


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """`TensorBoard` logs written at epoch ends only (and the model graph once), at no cost per step.

    Keras' `TensorBoard(update_freq="epoch")` still calls `tf.summary.scalar` on every batch's logs
    (with no writer set, nothing is written): 1.5 ms a step, 3 s of the digits job's 2,100 steps
    (`bench/experiments/fit_profile.py`).
    """

    def __init__(self, log_dir, **kwargs):
        super().__init__(log_dir, update_freq="epoch", profile_batch=0, **kwargs)
        self._first_batch_done = False

    def on_train_batch_end(self, batch, logs=None):
        if not self._first_batch_done:  # the parent writes the graph at the first batch's end
            super().on_train_batch_end(batch, logs)
            self._first_batch_done = True

