"""What keras-vit's commands print besides their own lines: by default only those and Keras'
progress bars; `--verbose` shows TensorFlow's, absl's, the converter's and LiteRT's own
logging too; `--quiet` (for scripts) hides the progress bars as well.

Two kinds of noise need two remedies. TensorFlow's, gRPC's and the converter's native logging
obeys `TF_CPP_MIN_LOG_LEVEL`, read once when TensorFlow loads, so it is set before anything
imports it (a level the user exported is left as it is). But the lines logged while TensorFlow
itself loads ("oneDNN custom operations are on", "Could not find cuda drivers", each twice)
come before absl is initialized and ignore it; LiteRT's interpreter logs "Created TensorFlow
Lite XNNPACK delegate for CPU" through a logger with no switch; and the converter's calibrator
prints with printf. Those are caught at the file descriptor: while a command runs, its stderr
(native code's, Python's and its child processes') passes through a pipe, line by line as it
comes, and only the lines known to be noise are dropped, so that no real error is hidden.

Library callers see everything, as TensorFlow prints it: only the command line changes anything.
"""

import contextlib
import logging
import os
import re
import sys
import threading
import warnings

_QUIET_NATIVE_LOGGING = {"TF_CPP_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR"}
# Native lines that say nothing about the user's job.
NATIVE_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} [\d:. ]+\d+ \S+:\d+\] .*"  # absl's INFO and WARNING lines (I0000 ..., W0000 ...)
    r"|To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\."
    r"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU\."
    r"|fully_quantize: \d+, inference_type: \d+, input_inference_type: \w+, output_inference_type: \w+)\s*$"
)
# Libraries whose Python warnings are about their own internals, not about the user's input.
_LIBRARY_WARNINGS = (r"(tensorflow|keras|tf_keras_vis|absl|google|ai_edge_litert|ai_edge_quantizer"
                     r"|tensorflow_datasets|h5py)(\.|$)")

_state = {"quiet": False}


@contextlib.contextmanager
def command_console(verbose=False, quiet=False):
    """The console of one command (see the module docstring); enter it before TensorFlow is imported."""
    _state["quiet"] = quiet and not verbose
    if verbose:
        yield
        return
    for name, value in _QUIET_NATIVE_LOGGING.items():
        os.environ.setdefault(name, value)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=_LIBRARY_WARNINGS)
        # TensorFlow's Python logger and absl's (the converter's and tf.data's warnings).
        for name in ("tensorflow", "absl"):
            logging.getLogger(name).setLevel(logging.ERROR)
        with native_noise_filtered():
            if quiet:
                import keras

                # Keras then sends its progress bars to absl's INFO log, hidden just above.
                keras.config.disable_interactive_logging()
            yield


def is_quiet():
    """True under `--quiet`: commands print no progress lines of their own either."""
    return _state["quiet"]


@contextlib.contextmanager
def native_noise_filtered(stream_fd=2):
    """Passes what is written to file descriptor `stream_fd` inside the block through a pipe,
    forwarding each line as it comes except the `NATIVE_NOISE` lines."""
    if stream_fd == 2:
        sys.stderr.flush()
    reader, writer = os.pipe()
    saved = os.dup(stream_fd)
    forwarder = threading.Thread(target=_forward, args=(reader, saved), daemon=True)
    forwarder.start()
    os.dup2(writer, stream_fd)
    os.close(writer)
    try:
        yield
    finally:
        if stream_fd == 2:
            sys.stderr.flush()
        os.dup2(saved, stream_fd)  # closes the pipe's last writer of ours: the forwarder drains and ends
        forwarder.join(timeout=10)
        os.close(saved)


def _forward(reader, target):
    pending = b""
    with os.fdopen(reader, "rb", buffering=0) as pipe:
        while True:
            chunk = pipe.read(65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                _write_unless_noise(line + b"\n", target)
    if pending:
        _write_unless_noise(pending, target)


def _write_unless_noise(line, target):
    if not NATIVE_NOISE.match(line.decode("utf-8", "replace")):
        os.write(target, line)
