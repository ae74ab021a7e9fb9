"""The pre-training check of image files: can TensorFlow decode each one? (PIL only, no TensorFlow.)

`check_image_file` reads a file's header with PIL (no pixel decode) and its last bytes:
non-images, truncated JPEG/PNG/GIF/BMP files and formats TensorFlow does not decode (or
decodes wrongly: palette and 1-bit BMPs) are found before training instead of mid-epoch.
It imports no TensorFlow, so that the worker processes of a large folder's check start fast.
"""

import concurrent.futures
import json
import os
import subprocess
import sys
import warnings

from PIL import Image

from keras_vit.files import bomb_pixels, max_image_pixels, too_many_pixels

# What tf.io.decode_image reads by content; training.image_folder adds WEBP where TensorFlow has it.
DECODABLE_FORMATS = ("JPEG", "PNG", "GIF", "BMP")
# PIL modes without color; "P"/"PA" (palette) count as gray only when every palette entry is gray.
_GRAY_MODES = {"1", "L", "LA", "La", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"}
# Enough of a file's end to hold its end marker behind a little padding.
_TAIL_BYTES = 1024
# Folders this large are checked by several processes.
PROCESS_SCAN_FROM = 100_000


class ImageCheck:
    """What the pre-training check found in one file: `problem` (None if decodable), color, size."""

    __slots__ = ("problem", "color", "size")

    def __init__(self, problem=None, color=True, size=None):
        self.problem, self.color, self.size = problem, color, tuple(size) if size else None  # (height, width)


def check_image_file(path, formats=DECODABLE_FORMATS, max_pixels=None):
    """Checks that TensorFlow can decode `path`, from its header and last bytes only, and that its
    header declares no more than `max_pixels` (`keras_vit.files.max_image_pixels`)."""
    max_pixels = max_image_pixels(max_pixels)
    try:
        file_size = os.path.getsize(path)
        if file_size == 0:
            return ImageCheck("empty file")
        with open(path, "rb") as file:
            head = file.read(32)
            file.seek(0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # DecompressionBombWarning: large but decodable
                try:
                    image = Image.open(file)
                except Image.DecompressionBombError as error:  # PIL's guard, at twice its own limit
                    return ImageCheck(too_many_pixels(*bomb_pixels(error, file), max_pixels=max_pixels))
                fmt, mode, (width, height) = image.format, image.mode, image.size
                # Decoding it (mid-epoch, in tf.data) would allocate every pixel: refused here instead.
                too_large = too_many_pixels(width * height, f"{width}x{height}", max_pixels)
                if too_large:
                    return ImageCheck(too_large)
                color = _is_color(image)
            file.seek(max(file_size - _TAIL_BYTES, 0))
            tail = file.read()
            problem = _format_problem(fmt, mode, head, tail, file_size, file, formats)
    except Image.UnidentifiedImageError:
        return ImageCheck("not an image")
    except (OSError, SyntaxError, ValueError) as error:  # PIL raises all three on broken headers
        return ImageCheck(f"unreadable: {str(error).splitlines()[0] if str(error) else type(error).__name__}")
    return ImageCheck(problem, color, (height, width))


def _is_color(image):
    if image.mode in _GRAY_MODES:
        return False
    if image.mode in ("P", "PA"):
        palette = image.getpalette() or []
        return any(palette[i] != palette[i + 1] or palette[i] != palette[i + 2] for i in range(0, len(palette) - 2, 3))
    return True


def _format_problem(fmt, mode, head, tail, file_size, file, formats):
    """Why TensorFlow cannot decode this file (None if it can), from its format and bytes."""
    if fmt not in formats:
        return f"a {fmt} image; TensorFlow decodes {', '.join(formats)}"
    if fmt == "JPEG":
        # TensorFlow fails without the end-of-image marker, even when only it is missing.
        if b"\xff\xd9" in tail:
            return None
        data = _read_all(file)  # data after the marker is allowed: find the last scan's end
        return None if data.rfind(b"\xff\xd9") > data.rfind(b"\xff\xda") else "truncated JPEG: no end-of-image marker"
    if fmt == "PNG":
        return None if b"IEND" in tail or b"IEND" in _read_all(file) else "truncated PNG: no IEND chunk"
    if fmt == "GIF":
        if tail.rstrip(b"\0").endswith(b";"):
            return None
        return _pil_load_problem(file, "truncated GIF")  # TensorFlow reads GIFs without their trailer
    if fmt == "BMP":
        return _bmp_problem(mode, head, file_size)
    return None


def _read_all(file):
    file.seek(0)
    return file.read()


def _pil_load_problem(file, problem):
    file.seek(0)
    try:
        with Image.open(file) as image:
            image.load()
    except (OSError, SyntaxError, ValueError):
        return problem
    return None


def _bmp_problem(mode, head, file_size):
    declared = int.from_bytes(head[2:6], "little")
    if declared and file_size < declared:
        return "truncated BMP"
    header_size = int.from_bytes(head[14:18], "little")
    if header_size >= 40:
        bits, compression = int.from_bytes(head[28:30], "little"), int.from_bytes(head[30:34], "little")
    else:  # OS/2 core header
        bits, compression = int.from_bytes(head[24:26], "little"), 0
    # TensorFlow's BMP decoder reads bytes as 1, 3 or 4 channels and ignores palettes and compression.
    if compression not in (0, 3):
        return "a compressed BMP, which TensorFlow decodes wrongly"
    if bits in (24, 32) or bits == 8 and mode == "L":  # PIL's "L": the palette is the identity gray ramp
        return None
    if bits == 8:
        return "an 8-bit palette BMP, which TensorFlow decodes wrongly"
    return f"a {bits}-bit BMP, which TensorFlow cannot decode"


def _check_chunk(paths, formats, threads):
    max_pixels = max_image_pixels()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda path: check_image_file(path, formats, max_pixels), paths))


def scan_images(paths, formats=DECODABLE_FORMATS, threads=8, processes=None):
    """`check_image_file` on every path: a list of `ImageCheck`, in order.

    Threads overlap file reads; PIL's header parsing holds the GIL (about 50 us a file), so
    folders of `PROCESS_SCAN_FROM` files or more are split over worker processes too
    (`python -m keras_vit.training.image_scan`: they import PIL only, neither TensorFlow nor the
    caller's main module, and are not forks of a process running TensorFlow's threads).
    """
    paths = [os.fspath(p) for p in paths]
    if processes is None:
        processes = min(os.cpu_count() or 1, 16) if len(paths) >= PROCESS_SCAN_FROM else 1
    if processes <= 1:
        return _check_chunk(paths, formats, threads)
    parts = [paths[i::processes] for i in range(processes)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "keras_vit.training.image_scan", ",".join(formats), str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=_ROOT + os.pathsep
                                                                   + os.environ.get("PYTHONPATH", "")),
        )
        for _ in parts
    ]
    outputs = []
    for worker, part in zip(workers, parts):  # each reads all its paths before it writes
        worker.stdin.write(b"\0".join(os.fsencode(p) for p in part))
        worker.stdin.close()
    for worker in workers:
        outputs.append(worker.stdout.read().decode().splitlines())
        if worker.wait():
            raise RuntimeError(f"the image check worker failed with exit status {worker.returncode}")
    checks = [None] * len(paths)
    for i, lines in enumerate(outputs):
        checks[i::processes] = [ImageCheck(*json.loads(line)) for line in lines]
    return checks


def _worker(formats, threads):
    """Checks the NUL-separated paths on stdin; one JSON line `[problem, color, size]` per path on stdout."""
    data = sys.stdin.buffer.read()
    paths = [os.fsdecode(p) for p in data.split(b"\0")] if data else []
    for check in _check_chunk(paths, formats.split(","), int(threads)):
        sys.stdout.write(json.dumps([check.problem, check.color, check.size]) + "\n")


_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

if __name__ == "__main__":
    _worker(*sys.argv[1:3])
