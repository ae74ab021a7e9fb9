"""Where `keras-vit train` spends its time: `model.fit`'s compiled training and validation calls
and each callback's hooks, timed from outside by wrapping them (nothing in the package changes).

    python bench/experiments/fit_profile.py train --epochs 20 --quiet --output /tmp/fit_profile [OPTIONS]

Takes `keras-vit train`'s arguments; prints to stderr the first training call (tracing and the
first step), the median step, and the seconds in each part, largest first.
"""

import collections
import functools
import statistics
import sys
import time

import keras

HOOKS = ("on_epoch_begin", "on_epoch_end", "on_train_batch_begin", "on_train_batch_end", "on_test_begin",
         "on_test_end")
seconds = collections.defaultdict(float)
train_calls = []


def _timed(function, key, calls=None):
    @functools.wraps(function)
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent = time.perf_counter() - start
            seconds[key] += spent
            if calls is not None:
                calls.append(spent)

    timed.is_timed = True
    return timed


def _timing_maker(model, maker_name, function_name, key, calls=None):
    """Wraps the compiled function each time Keras makes it (once: a made one is returned again)."""
    make = getattr(model, maker_name)

    def maker(force=False):
        make(force)
        function = getattr(model, function_name)
        if not getattr(function, "is_timed", False):
            setattr(model, function_name, _timed(function, key, calls))
        return getattr(model, function_name)

    setattr(model, maker_name, maker)


_fit = keras.Model.fit


def _profiled_fit(self, *args, callbacks=None, **kwargs):
    for callback in callbacks or []:
        for hook in HOOKS:
            if hasattr(callback, hook):
                setattr(callback, hook, _timed(getattr(callback, hook), f"{type(callback).__name__}.{hook}"))
    _timing_maker(self, "make_train_function", "train_function", "training calls", train_calls)
    _timing_maker(self, "make_test_function", "test_function", "validation calls")
    return _timed(_fit, "fit, in all")(self, *args, callbacks=callbacks, **kwargs)


def main(argv):
    from keras_vit.training.cli import main as cli

    keras.Model.fit = _profiled_fit
    status = cli(argv)
    if train_calls:
        print(f"training calls: {len(train_calls)}, the first {train_calls[0]:.2f} s, median "
              f"{statistics.median(train_calls) * 1000:.1f} ms", file=sys.stderr)
    for key, value in sorted(seconds.items(), key=lambda item: -item[1]):
        if value >= 0.01:
            print(f"{value:8.2f} s  {key}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
