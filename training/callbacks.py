"""Callbacks that keep a user's files whole when a run is killed."""

import json
import os
import time

import keras


class AtomicBestModel(keras.callbacks.Callback):
    """Saves the best model (by `monitor`) to a `.keras` file atomically.

    Keras' `ModelCheckpoint` writes the archive in place, so a run killed while
    saving leaves a truncated `model.keras`; this writes a temporary file in the
    same folder and renames it over the old one. The best score so far is kept
    beside the model, so a resumed run does not overwrite a better model.
    """

    def __init__(self, path, monitor="val_accuracy", mode="max"):
        super().__init__()
        self.path = path
        self.monitor = monitor
        self.mode = mode
        self.state_path = f"{path}.best.json"
        self.best = None
        if os.path.exists(self.state_path) and os.path.exists(path):
            with open(self.state_path) as file:
                self.best = json.load(file).get(monitor)

    def _better(self, value):
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not self._better(float(value)):
            return
        self.best = float(value)
        tmp = f"{self.path}.tmp-{os.getpid()}.keras"
        self.model.save(tmp)
        os.replace(tmp, self.path)
        tmp_state = f"{self.state_path}.tmp"
        with open(tmp_state, "w") as file:
            json.dump({self.monitor: self.best, "epoch": epoch + 1}, file)
        os.replace(tmp_state, self.state_path)


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
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as file:
            json.dump({"seconds": self.total_seconds}, file)
        os.replace(tmp, self.path)
