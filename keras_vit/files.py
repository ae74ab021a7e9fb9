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
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
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
    `.png`). On an error, SIGTERM or SIGINT the temporary file is removed, folders made for
    it are removed again and `path` is left as it was; a process killed outright leaves a
    temporary that the next write of `path` removes (`remove_stale_temporaries`).
    """
    folder = os.path.dirname(os.path.abspath(path))
    with terminate_as_exit():
        created = make_folders(folder)
        remove_stale_temporaries(path)
        tmp = None
        try:
            handle, tmp = tempfile.mkstemp(dir=folder, prefix=_temporary_prefix(path, "tmp"), suffix=suffix)
            os.close(handle)
            yield tmp
            apply_umask(tmp)
            os.replace(tmp, path)
        except BaseException:
            if tmp is not None and os.path.lexists(tmp):
                os.remove(tmp)
            remove_empty_folders(created)
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
    temporary folder holds, one by one (each atomic). On an error, SIGTERM or SIGINT nothing
    of it is left (nor the folders made for it). Replacing a folder whole deletes what it
    held: callers check first that it is theirs to replace (`check_output`).
    """
    parent = os.path.dirname(os.path.abspath(folder))
    name = os.path.basename(os.path.abspath(folder))
    with terminate_as_exit():
        created = make_folders(parent)
        remove_stale_temporaries(folder)
        tmp = None
        try:
            tmp = tempfile.mkdtemp(dir=parent, prefix=_temporary_prefix(folder, "tmp"))
            yield tmp
            apply_umask(tmp)
            if merge and os.path.isdir(folder):
                for entry in os.listdir(tmp):
                    os.replace(os.path.join(tmp, entry), os.path.join(folder, entry))
                os.rmdir(tmp)
            elif os.path.exists(folder):
                old = tempfile.mkdtemp(dir=parent, prefix=_temporary_prefix(folder, "old"))
                os.replace(folder, os.path.join(old, name))
                os.replace(tmp, folder)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, folder)
        except BaseException:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            remove_empty_folders(created)
            raise


@contextlib.contextmanager
def all_or_nothing(paths):
    """Writes of several files (a `.tflite` and its `.labels.txt`) that succeed or fail together.

    Each write inside is atomic on its own; on an error, SIGTERM or SIGINT every path is put
    back as it was before (the previous file restored from a hard link, a new one removed,
    folders made for them removed), so a failed export leaves neither half of a pair.
    """
    paths = [os.path.abspath(p) for p in paths]
    with terminate_as_exit():
        created = []
        for folder in dict.fromkeys(os.path.dirname(p) for p in paths):
            created += make_folders(folder)
        kept = {}
        try:
            for path in paths:
                remove_stale_temporaries(path)
                if os.path.isfile(path):
                    kept[path] = _keep_a_link(path)
            yield
        except BaseException:
            for path in paths:
                if path in kept:
                    link = kept.pop(path)
                    os.replace(link, path)
                    if os.path.lexists(link):  # rename() between two links of one file does nothing
                        os.remove(link)
                elif os.path.lexists(path):
                    os.remove(path)
            remove_empty_folders(created)
            raise
        finally:
            for link in kept.values():
                os.remove(link)


def _keep_a_link(path):
    """A second name for `path`'s current file (a hard link; a copy where links are not allowed)."""
    link = tempfile.mktemp(dir=os.path.dirname(path), prefix=_temporary_prefix(path, "old"))
    try:
        os.link(path, link)
    except OSError:
        shutil.copy2(path, link)
    return link


def make_folders(folder):
    """`os.makedirs(folder, exist_ok=True)` that returns the folders it made, outermost first."""
    missing = []
    folder = os.path.abspath(folder)
    while not os.path.isdir(folder):
        missing.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    made = []
    for path in reversed(missing):
        try:
            os.mkdir(path)
        except FileExistsError:  # made by another process meanwhile: not ours to remove
            if not os.path.isdir(path):
                raise
            continue
        made.append(path)
    return made


def remove_empty_folders(folders):
    """Removes `folders` (from `make_folders`), innermost first, where they are still empty."""
    for path in reversed(folders):
        try:
            os.rmdir(path)
        except OSError:
            return  # not empty (someone else's files went into it) or gone already


# --- temporaries and processes --------------------------------------------------------------------


def _host_tag():
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:32] or "host"


def _temporary_prefix(path, kind):
    """`.NAME.KIND-HOST-PID-`: a temporary beside `path` names the process that made it, so that
    a later run can tell a dead process's leftovers from a write in progress."""
    return f".{os.path.basename(os.path.abspath(path))}.{kind}-{_host_tag()}-{os.getpid()}-"


def process_running(pid):
    """Whether a process `pid` exists on this machine (one of another user counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path):
    """Removes the temporaries of `path` (`.NAME.tmp-...`, `.NAME.old-...`) that a process of this
    machine which no longer runs left beside it (killed outright, or the machine lost power).

    Temporaries of running processes and of other machines (a shared disk) are left alone.
    Returns the paths removed.
    """
    folder = os.path.dirname(os.path.abspath(path))
    pattern = re.compile(re.escape(f".{os.path.basename(os.path.abspath(path))}.") + r"(?:tmp|old)-"
                         + re.escape(_host_tag()) + r"-(\d+)-")
    removed = []
    try:
        entries = os.listdir(folder)
    except OSError:
        return removed
    for entry in entries:
        match = pattern.match(entry)
        if not match or process_running(int(match.group(1))):
            continue
        stale = os.path.join(folder, entry)
        if os.path.isdir(stale) and not os.path.islink(stale):
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(stale)
        removed.append(stale)
    return removed


# Exit status of a process ended by SIGTERM, as the shell reports one killed by it.
TERMINATED_EXIT_STATUS = 128 + signal.SIGTERM
_terminate_depth = 0


@contextlib.contextmanager
def terminate_as_exit():
    """While active, SIGTERM raises SystemExit(143) in the main thread instead of ending the
    process at once, so that `finally` blocks and the cleanups here run (SIGINT already raises
    KeyboardInterrupt). A handler the program installed itself is left in place; elsewhere than
    in the main thread (where Python cannot set handlers) this does nothing.
    """
    global _terminate_depth
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    install = _terminate_depth == 0 and previous in (signal.SIG_DFL, None)
    if install:
        signal.signal(signal.SIGTERM, _raise_exit)
    _terminate_depth += 1
    try:
        yield
    finally:
        _terminate_depth -= 1
        if install:
            signal.signal(signal.SIGTERM, previous)


def _raise_exit(signum, frame):
    global _terminate_pending
    # Once: a second SIGTERM during the cleanup must not interrupt it.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if _defer_depth:
        _terminate_pending = True
        return
    raise SystemExit(TERMINATED_EXIT_STATUS)


_defer_depth = 0
_terminate_pending = False


@contextlib.contextmanager
def deferred_termination():
    """Holds back the SystemExit of `terminate_as_exit` until the block is done.

    For writes that an exception would cut short into a file that is whole but incomplete (an
    HDF5 backup closed cleanly with half its weights, which Keras loads without falling back to
    the previous one); the process still ends right after them.
    """
    global _defer_depth, _terminate_pending
    _defer_depth += 1
    try:
        yield
    finally:
        _defer_depth -= 1
    if not _defer_depth and _terminate_pending:
        _terminate_pending = False
        raise SystemExit(TERMINATED_EXIT_STATUS)


# --- limits on what a file may make the process allocate ---------------------------------------

# Pixels per image above which a file is refused before it is decoded: PIL's own guard against
# decompression bombs (`PIL.Image.MAX_IMAGE_PIXELS`, 89,478,485: 268 MB as RGB uint8 and four times
# that as float32 for a resize), whose 389 kB PNG of 20000x20000 pixels would take 1.9 GB.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
MAX_IMAGE_PIXELS_VARIABLE = "KERAS_VIT_MAX_IMAGE_PIXELS"


def env_limit(variable, default):
    """A positive whole-number limit from the environment variable `variable`, else `default`."""
    text = os.environ.get(variable, "").strip().replace("_", "")
    if not text:
        return default
    try:
        value = int(float(text)) if "e" in text.lower() else int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{variable} must be a positive whole number, got {os.environ[variable]!r}")
    return value


def resolve_limit(value, name, variable, default, minimum=1):
    """A configurable limit: `value` (the argument `name`, at least `minimum`), else the
    environment variable `variable` (`env_limit`), else `default`."""
    if value is not None:
        if int(value) < minimum:
            raise ValueError(f"{name} must be at least {minimum}, got {value}")
        return int(value)
    return env_limit(variable, default)


def max_image_pixels(max_pixels=None):
    """The pixel limit per image: `max_pixels`, else $KERAS_VIT_MAX_IMAGE_PIXELS, else 89,478,485."""
    return resolve_limit(max_pixels, "max_pixels", MAX_IMAGE_PIXELS_VARIABLE, DEFAULT_MAX_IMAGE_PIXELS)


def too_many_pixels(pixels, shape=None, max_pixels=None):
    """Why an image of `pixels` pixels (`shape` "WxH" where known) is refused; None within the limit."""
    limit = max_image_pixels(max_pixels)
    if int(pixels) <= limit:
        return None
    return (f"{shape or f'{int(pixels):,}'} pixels, more than the limit of {limit:,} pixels per image "
            f"(${MAX_IMAGE_PIXELS_VARIABLE} raises it)")


def image_header_pixels(path):
    """`(pixels, "WxH")` of an image file from its header (PIL, nothing decoded), or None where PIL
    cannot read it. PIL's own decompression-bomb guard does not hide the size."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning: the caller decides
            with Image.open(path) as image:
                width, height = image.size
    except Image.DecompressionBombError as error:
        return bomb_pixels(error, path)
    except (OSError, SyntaxError, ValueError):
        return None
    return width * height, f"{width}x{height}"


def bomb_pixels(error, file):
    """`(pixels, "WxH")` of an image that PIL's DecompressionBombError refused to open.

    `Image.open` raises it before handing out the image; the format plugins themselves read the
    header without that guard. `file` is a path or a file object (rewound here).
    """
    from PIL import BmpImagePlugin, GifImagePlugin, JpegImagePlugin, PngImagePlugin

    for plugin in (PngImagePlugin.PngImageFile, JpegImagePlugin.JpegImageFile, GifImagePlugin.GifImageFile,
                   BmpImagePlugin.BmpImageFile):
        if hasattr(file, "seek"):
            file.seek(0)
        try:
            image = plugin(file)
        except (OSError, SyntaxError, ValueError, TypeError):
            continue
        width, height = image.size
        if not hasattr(file, "seek"):
            image.close()
        return width * height, f"{width}x{height}"
    found = re.search(r"\((\d+) pixels\)", str(error))  # PIL's message names the count
    return (int(found.group(1)) if found else 2**63), None


# --- outputs that never destroy ----------------------------------------------------------------


class OutputExistsError(ValueError):
    """An output path that holds something this command did not write (refused unless overwriting)."""


def same_path(a, b):
    """Whether paths `a` and `b` name the same file or folder (through links, `..` and hard links)."""
    a, b = os.fspath(a), os.fspath(b)
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)


def is_inside(path, folder):
    """Whether `path` is `folder` or lies somewhere inside it (links resolved)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_output(path, inputs=(), is_ours=None, overwrite=False, option="output", expected="a new path",
                 hint="overwrite=True"):
    """Refuses an output that would destroy what a user has: the rule of every keras-vit writer.

    - `path` must not be one of `inputs` (`(path, what it is)` pairs, e.g. `("run/model.keras",
      "the model being read")`), nor a folder that holds one, whatever `overwrite` says;
    - an existing `path` must be empty, or something this command writes (`is_ours(path)` true),
      unless `overwrite`.

    Raises ValueError (OutputExistsError for the second) naming `option`, with `expected` (what
    the output should be) and `hint` (how to allow replacing) in the message.
    """
    path = os.fspath(path)
    for source, what in inputs:
        if source is None:
            continue
        if same_path(path, source):
            raise ValueError(f"{option} {path} is {what}, an input of this command: choose {expected}")
        if os.path.isdir(path) and is_inside(source, path):
            raise ValueError(f"{option} {path} holds {what} ({source}), an input of this command: choose {expected}")
    if not os.path.lexists(path) or overwrite or _is_empty(path) or (is_ours is not None and is_ours(path)):
        return
    if os.path.isdir(path):
        entries = sorted(os.listdir(path))
        shown = ", ".join(e + ("/" if os.path.isdir(os.path.join(path, e)) else "") for e in entries[:3])
        found = f"a folder of {len(entries)} other entr{'ies' if len(entries) != 1 else 'y'} ({shown}"
        found += ", ...)" if len(entries) > 3 else ")"
    else:
        found = f"a file of {os.path.getsize(path):,} bytes that this command did not write"
    raise OutputExistsError(f"{option} {path} exists and is {found}: choose {expected}, or {hint} to replace it")


def _is_empty(path):
    if os.path.isdir(path) and not os.path.islink(path):
        return not os.listdir(path)
    return os.path.isfile(path) and os.path.getsize(path) == 0


def read_head(path, size=65536):
    """The first `size` bytes of the file `path` (b"" for a folder or an unreadable file)."""
    try:
        with open(path, "rb") as file:
            return file.read(size)
    except OSError:
        return b""


def fits_one_line(name):
    """Whether a labels file (one name per line) reads `name` back as itself: no line break in it
    (one would shift every later line's class) and not blank (readers skip blank lines)."""
    return len(str(name).splitlines()) == 1 and bool(str(name).strip())


def check_class_names(names, source="class names"):
    """Raises ValueError for a class name that a labels file cannot hold (`fits_one_line`)."""
    for name in names:
        name = str(name)
        if not fits_one_line(name):
            raise ValueError(
                f"{source} holds the name {name!r}, which a labels file (one class per line) cannot hold: "
                "class names must be one line of visible characters"
            )
    return [str(name) for name in names]


def labels_text(names):
    """The text of a labels file: one class name per line (`check_class_names` first)."""
    return "".join(f"{name}\n" for name in check_class_names(names))


# --- one process per output folder --------------------------------------------------------------

LOCK_FILE = ".keras-vit.lock"


class FolderInUseError(ValueError):
    """Another running process holds the lock of an output folder."""


class FolderLock:
    """A lock file (`.keras-vit.lock`) in a folder: one process writes the folder at a time.

    The file holds the owner's pid, host and command; it is held with `fcntl.flock`, which
    the kernel releases when the owner dies however it dies, so a lock left by a killed
    process is stale and taken over (also where `flock` is not supported: then a lock whose
    pid no longer runs on this host is stale). Released on exit, exceptions and SIGTERM
    (`terminate_as_exit`). A second process is refused with FolderInUseError naming the owner.

        >>> import tempfile
        >>> with FolderLock(tempfile.mkdtemp(), "keras-vit train") as lock:
        ...     lock.owner()["command"]
        'keras-vit train'
    """

    def __init__(self, folder, command="keras-vit"):
        self.folder = os.fspath(folder)
        self.path = os.path.join(self.folder, LOCK_FILE)
        self.command = command
        self.stale_owner = None  # the dead process whose lock this one took over, if any
        self._fd = None
        self._exit = None

    def owner(self, path=None):
        """The lock file's record (`pid`, `host`, `command`, `since`), or {}."""
        try:
            with open(path or self.path) as file:
                record = json.load(file)
            return record if isinstance(record, dict) else {}
        except (OSError, ValueError):
            return {}

    def acquire(self):
        import fcntl

        os.makedirs(self.folder, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                self._refuse(self.owner())
            except OSError:  # no flock on this file system: the pid decides
                record = self.owner()
                if record.get("host") == socket.gethostname() and process_running(int(record.get("pid", 0))) \
                        and int(record["pid"]) != os.getpid():
                    os.close(fd)
                    self._refuse(record)
            # The file may have been removed by its previous owner between our open and flock.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = self.owner()
        if previous.get("pid") and previous.get("pid") != os.getpid():
            self.stale_owner = previous
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                  "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(record) + "\n").encode())
        self._fd = fd
        return self

    def _refuse(self, record):
        pid, host = record.get("pid", "?"), record.get("host", "?")
        since = f", since {record['since']}" if record.get("since") else ""
        raise FolderInUseError(
            f"{self.folder} is in use by {record.get('command', 'another keras-vit process')} (pid {pid} on {host}"
            f"{since}): wait for it to finish, or choose another folder"
        )

    def release(self):
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)
        os.close(self._fd)  # closing releases the flock
        self._fd = None

    def __enter__(self):
        self._exit = terminate_as_exit()
        self._exit.__enter__()
        try:
            return self.acquire()
        except BaseException:
            self._exit.__exit__(None, None, None)
            raise

    def __exit__(self, *exc):
        try:
            self.release()
        finally:
            self._exit.__exit__(*exc)


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
