"""Files that keras-vit writes and reads: atomic writes with the user's permissions, and
safe loading of `.keras` files.

A write goes to a temporary file beside its target and is renamed over it only when
complete, so a reader (a server, a resumed run, `adb push`) never sees half a file and a
crash never destroys the previous version. Temporary files are created private (0600,
folders 0700); before the rename they get the permissions the user's umask gives any new
file (usually 0644 / 0755), so a serving account can read what was exported.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "labels.txt")
    >>> write_text_atomic(path, "cat\\ndog\\n")
    >>> open(path).read().split()
    ['cat', 'dog']
"""

import contextlib
import json
import os
import shutil
import tempfile
import zipfile


def user_umask():
    """The process umask (read without changing it, where /proc allows)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # the portable way to read it sets it: put it straight back
    os.umask(mask)
    return mask


def apply_umask(path):
    """Gives `path` (a file, or a folder and everything in it) the permissions a new one gets."""
    mask = user_umask()
    if os.path.isdir(path):
        for root, folders, files in os.walk(path):
            os.chmod(root, 0o777 & ~mask)
            for name in files:
                os.chmod(os.path.join(root, name), 0o666 & ~mask)
    else:
        os.chmod(path, 0o666 & ~mask)


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yields a temporary path beside `path` to write; on success it replaces `path`.

    `suffix` ends the temporary name where a writer infers the format from it (`.keras`,
    `.png`). On an error the temporary file is removed and `path` is left as it was.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=f".tmp{suffix}")
    os.close(handle)
    try:
        yield tmp
        apply_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_bytes_atomic(path, data):
    """Writes bytes to `path` atomically (see the module docstring)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        file.write(data)


def write_text_atomic(path, text):
    """Writes UTF-8 text to `path` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path, data):
    """Writes `data` as indented, key-sorted JSON to `path` atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def atomic_folder(folder, merge=False):
    """Yields a temporary folder beside `folder` to fill; on success it replaces `folder` whole.

    `merge=True` keeps the other files of an existing `folder` and replaces only those the
    temporary folder holds, one by one (each atomic). On an error nothing of it is left.
    """
    parent = os.path.dirname(os.path.abspath(folder))
    name = os.path.basename(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{name}.tmp-")
    try:
        yield tmp
        apply_umask(tmp)
        if merge and os.path.isdir(folder):
            for entry in os.listdir(tmp):
                os.replace(os.path.join(tmp, entry), os.path.join(folder, entry))
            os.rmdir(tmp)
        elif os.path.exists(folder):
            old = tempfile.mkdtemp(dir=parent, prefix=f".{name}.old-")
            os.replace(folder, os.path.join(old, name))
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_keras_file(path, float32=False):
    """Loads a `.keras` file safely (`safe_mode=True`), with one-line errors for bad files.

    `float32=True` returns a keras_vit ViT trained in mixed precision as its float32 twin
    (`ViT.as_float32`): the reference that exports are made from and compared with.
    """
    import keras

    import keras_vit.model  # noqa: F401  (registers the custom layers for deserialization)

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model not found: {path}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a valid .keras file (not a zip archive; corrupt or foreign file)")
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises many types for a damaged archive
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"could not load {path} as a Keras model: {first_line}") from None
    if float32 and hasattr(model, "as_float32"):
        model = model.as_float32()
    return model
