"""Image folders as users bring them: broken, odd and misplaced files, written as real files with PIL."""

import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_vit.images import decode_image_file
from keras_vit.training.data import load_splits, make_pipeline

SIZE = (12, 10)  # height, width of the test images


def _rgb(seed, size=SIZE):
    """A smooth color image (JPEG keeps it within a few levels)."""
    rng = np.random.default_rng(seed)
    corners = rng.integers(0, 256, (2, 2, 3)).astype("float32")
    y, x = np.linspace(0, 1, size[0])[:, None, None], np.linspace(0, 1, size[1])[None, :, None]
    top, bottom = corners[0, 0] * (1 - x) + corners[0, 1] * x, corners[1, 0] * (1 - x) + corners[1, 1] * x
    return np.round(top * (1 - y) + bottom * y).astype("uint8")


def _encode(image, fmt, **options):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _good_folder(root, classes=("cat", "dog"), per_class=6):
    for label, name in enumerate(classes):
        os.makedirs(root / name, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(_rgb(100 * label + i)).save(root / name / f"{i}.jpg", quality=95)


def _warnings(text):
    return [line for line in text.splitlines() if line.startswith("keras-vit: warning:")]


def _count(dataset):
    return sum(int(labels.shape[0]) for _, labels in dataset)


def test_broken_files_are_skipped_before_training_with_one_line_naming_them(tmp_path, capfd):
    _good_folder(tmp_path)
    png = _encode(Image.fromarray(_rgb(7)), "PNG")
    jpeg = (tmp_path / "cat" / "0.jpg").read_bytes()
    (tmp_path / "cat" / "notes.jpg").write_text("labels were here, not pixels")  # not an image
    (tmp_path / "cat" / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])  # truncated JPEG
    (tmp_path / "cat" / "no_eoi.jpg").write_bytes(jpeg[:-2])  # only the end marker missing
    (tmp_path / "dog" / "cut.png").write_bytes(png[:-12])  # truncated PNG: no IEND chunk
    (tmp_path / "dog" / "empty.png").write_bytes(b"")
    (tmp_path / "dog" / "tiff.jpg").write_bytes(_encode(Image.fromarray(_rgb(8)), "TIFF"))  # wrong extension
    Image.fromarray(_rgb(9)).convert("P").save(tmp_path / "dog" / "palette.bmp")  # TF decodes it wrongly
    Image.fromarray(_rgb(10)).convert("1").save(tmp_path / "dog" / "bilevel.bmp")  # TF fails on it
    (tmp_path / "dog" / "readme.txt").write_text("unknown extension")
    (tmp_path / "dog" / "scan.tiff").write_bytes(_encode(Image.fromarray(_rgb(11)), "TIFF"))
    (tmp_path / "dog" / ".DS_Store").write_bytes(b"\0\0")  # hidden: not counted

    splits = load_splits(f"folder:{tmp_path}", validation_fraction=0.0, image_size=SIZE)
    lines = _warnings(capfd.readouterr().err)
    assert len(lines) == 2, lines
    ignored, skipped = lines
    assert "ignored 2 files" in ignored and ".tiff 1" in ignored and ".txt 1" in ignored
    assert "dog/readme.txt" in ignored and "dog/scan.tiff" in ignored
    assert "skipped 8 of 20 image files" in skipped and skipped.endswith("and 3 more")
    # The first five, in path order, with why.
    for name in ("cat/cut.jpg (unreadable", "cat/no_eoi.jpg (truncated JPEG: no end-of-image marker)",
                 "cat/notes.jpg (not an image)", "dog/bilevel.bmp (a 1-bit BMP", "dog/cut.png (truncated PNG: no IEND"):
        assert name in skipped, name
    assert splits.info.num_examples["train"] + splits.info.num_examples["test"] == 12
    # Every split streams through whole, in training and evaluation pipelines, without a word.
    train = make_pipeline(splits.train, SIZE, 3, 4, training=True)
    assert _count(train) == splits.info.num_examples["train"]
    assert _count(make_pipeline(splits.test, SIZE, 3, 4)) == splits.info.num_examples["test"]
    assert not _warnings(capfd.readouterr().err)


def test_corrupt_data_inside_a_file_costs_one_image_not_the_epoch(tmp_path, capfd):
    """A PNG whose header and end are intact but whose pixel data is not: the quick check
    passes it, the pipeline skips it without ending the pass, and verify_images names it."""
    _good_folder(tmp_path, per_class=5)
    data = bytearray(_encode(Image.fromarray(_rgb(3)), "PNG"))
    start = data.index(b"IDAT") + 8
    data[start:start + 6] = b"\x00" * 6
    (tmp_path / "dog" / "crc.png").write_bytes(bytes(data))
    with pytest.raises(tf.errors.InvalidArgumentError):
        decode_image_file(str(tmp_path / "dog" / "crc.png"), 3)

    splits = load_splits(f"folder:{tmp_path}", validation_fraction=0.0, image_size=SIZE)
    assert not _warnings(capfd.readouterr().err)
    train, test = splits.info.num_examples["train"], splits.info.num_examples["test"]
    # Every pass keeps its length, known in advance (Keras warns "Your input ran out of data" after
    # any dataset of unknown length): another image stands in for the corrupt one, in training
    # epochs, twice in a row, and in evaluation, where that image then counts twice.
    for split, count in ((splits.train, train), (splits.test, test)):
        for training in (True, False):
            passes = make_pipeline(split, SIZE, 3, 4, training=training)
            assert passes.cardinality() == -(-count // 4)
            assert _count(passes) == _count(passes) == count
    images = np.concatenate([np.asarray(x) for split in (splits.train, splits.test)
                             for x, _ in make_pipeline(split, SIZE, 3, 4)])
    distinct = {image.tobytes() for image in images}
    assert len(images) == train + test and len(distinct) == train + test - 1  # one readable image twice

    load_splits(f"folder:{tmp_path}", validation_fraction=0.0, image_size=SIZE, verify_images=True)
    lines = _warnings(capfd.readouterr().err)
    assert len(lines) == 1 and "skipped 1 of 11 image files" in lines[0] and "dog/crc.png (corrupt image data)" in lines[0]


def _odd_files(root):
    """Writes each odd kind of file; returns {name: expected uint8 [H, W, 3] (None: compare with PIL's RGB)}."""
    rgb = _rgb(1)
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    deep_gray = (gray.astype("uint16") * 257 + np.arange(gray.size).reshape(gray.shape) % 200).astype("uint16")
    deep_rgb = rgb.astype("uint16") * 257 + 100
    rgba = np.concatenate([rgb, np.full((*SIZE, 1), 77, "uint8")], -1)
    expected = {}

    def save(name, image, reference, **options):
        image.save(root / name, **options)
        expected[name] = reference

    save("rgb.png", Image.fromarray(rgb), rgb)
    save("rgba.png", Image.fromarray(rgba), rgb)  # alpha dropped
    save("gray_alpha.png", Image.fromarray(gray).convert("LA"), np.repeat(gray[..., None], 3, -1))
    save("gray.png", Image.fromarray(gray), np.repeat(gray[..., None], 3, -1))
    save("gray16.png", Image.fromarray(deep_gray), np.repeat((deep_gray >> 8).astype("uint8")[..., None], 3, -1))
    (root / "rgb16.png").write_bytes(tf.io.encode_png(deep_rgb).numpy())  # PIL cannot write 16-bit RGB
    expected["rgb16.png"] = (deep_rgb >> 8).astype("uint8")
    palette = Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=64)
    save("palette.png", palette, np.asarray(palette.convert("RGB")))
    save("palette.gif", palette, np.asarray(palette.convert("RGB")))
    bilevel = Image.fromarray(gray).convert("1")
    save("bilevel.png", bilevel, np.repeat(np.asarray(bilevel.convert("L"))[..., None], 3, -1))
    save("gray_palette.bmp", Image.fromarray(gray), np.repeat(gray[..., None], 3, -1))  # 8-bit, gray palette
    save("rgb.bmp", Image.fromarray(rgb), rgb)
    save("png_named.jpg", Image.fromarray(rgb), rgb, format="PNG")
    save("cmyk.jpg", Image.fromarray(rgb).convert("CMYK"), None, quality=100)
    save("gray.jpg", Image.fromarray(gray), None, quality=100)
    save("rgb.jpg", Image.fromarray(rgb), None, quality=100)
    frames = [palette, Image.fromarray(255 - rgb).convert("P")]
    frames[0].save(root / "animated.gif", save_all=True, append_images=frames[1:])
    expected["animated.gif"] = np.asarray(palette.convert("RGB"))  # the first frame
    return expected


def test_odd_channel_images_decode_to_rgb_like_a_pil_reference(tmp_path, capfd):
    folder = tmp_path / "odd"
    folder.mkdir()
    expected = _odd_files(folder)
    _good_folder(tmp_path)  # a second class of plain JPEGs
    splits = load_splits(f"folder:{tmp_path}", validation_fraction=0.0)
    assert not _warnings(capfd.readouterr().err)  # nothing skipped: every one is handled
    assert splits.info.image_shape == (*SIZE, 3)
    assert splits.info.num_examples["train"] + splits.info.num_examples["test"] == len(expected) + 12
    for name, reference in expected.items():
        decoded = decode_image_file(str(folder / name), 3, SIZE).numpy().astype(int)
        assert decoded.shape == (*SIZE, 3), name
        if reference is None:
            # JPEG: TensorFlow decodes with libjpeg's fast integer IDCT, PIL with the accurate one,
            # a few levels apart on these tiny smooth images (a CMYK mix-up would be 100s).
            with Image.open(folder / name) as image:
                error = np.abs(decoded - np.asarray(image.convert("RGB")))
            assert error.max() <= 10 and error.mean() < 3, (name, error.max(), error.mean())
        else:
            np.testing.assert_array_equal(decoded, reference, err_msg=name)  # lossless: exact


def test_a_folder_of_gray_images_has_one_channel_and_any_color_image_makes_three(tmp_path, capfd):
    gray = np.asarray(Image.fromarray(_rgb(2)).convert("L"))
    for label, name in enumerate(("a", "b")):
        os.makedirs(tmp_path / name)
        # Formats that refuse channels=1 in tf.io.decode_image (GIF, BMP) among gray PNG and JPEG.
        Image.fromarray(gray).save(tmp_path / name / "gray.png")
        Image.fromarray(gray).save(tmp_path / name / "gray.gif")
        Image.fromarray(gray).save(tmp_path / name / "gray.bmp")
        Image.fromarray(gray).convert("LA").save(tmp_path / name / "gray_alpha.png")
        Image.fromarray(gray).save(tmp_path / name / "gray.jpg", quality=100)
    splits = load_splits(f"folder:{tmp_path}", validation_fraction=0.0)
    assert splits.info.image_shape == (*SIZE, 1)
    for name in ("gray.png", "gray.gif", "gray.bmp", "gray_alpha.png"):
        np.testing.assert_array_equal(decode_image_file(str(tmp_path / "a" / name), 1).numpy()[..., 0], gray, err_msg=name)
    with Image.open(tmp_path / "a" / "gray.jpg") as image:
        reference = np.asarray(image, dtype=int)
    error = np.abs(decode_image_file(str(tmp_path / "a" / "gray.jpg"), 1).numpy()[..., 0] - reference)
    assert error.max() <= 10 and error.mean() < 3
    images = np.concatenate([x.numpy() for x, _ in make_pipeline(splits.train, SIZE, 1, 4)])
    assert images.shape[1:] == (*SIZE, 1)

    # One color image among them, the last in file order: the folder is RGB.
    Image.fromarray(_rgb(3)).save(tmp_path / "b" / "zz_color.png")
    assert load_splits(f"folder:{tmp_path}", validation_fraction=0.0).info.image_shape == (*SIZE, 3)
    assert not _warnings(capfd.readouterr().err)


def test_a_class_folder_without_images_is_an_error_naming_it(tmp_path):
    _good_folder(tmp_path)
    (tmp_path / "emu").mkdir()
    (tmp_path / "emu" / "readme.txt").write_text("photos to come")
    with pytest.raises(ValueError, match=r"class folder .*emu holds no images .*; add images or remove the folder"):
        load_splits(f"folder:{tmp_path}")
    # Only broken images: the same error, saying so.
    (tmp_path / "emu" / "broken.jpg").write_text("not a JPEG")
    with pytest.raises(ValueError, match=r"emu holds no decodable images"):
        load_splits(f"folder:{tmp_path}")


def test_mixed_sizes_decode_to_the_most_common_size(tmp_path):
    _good_folder(tmp_path)
    Image.fromarray(_rgb(5, (30, 40))).save(tmp_path / "dog" / "big.png")
    splits = load_splits(f"folder:{tmp_path}", validation_fraction=0.0)
    assert splits.info.image_shape == (*SIZE, 3)
    assert {x.shape for x, _ in splits.train} | {x.shape for x, _ in splits.test} == {(*SIZE, 3)}


def test_large_folders_are_checked_in_worker_processes_alike(tmp_path):
    from keras_vit.training.image_scan import scan_images

    _good_folder(tmp_path, per_class=3)
    (tmp_path / "cat" / "bad.jpg").write_text("not an image")
    Image.fromarray(_rgb(4)).convert("L").save(tmp_path / "dog" / "gray.png")
    paths = sorted(str(p) for p in tmp_path.rglob("*.*"))
    threads, processes = scan_images(paths), scan_images(paths, processes=2)
    assert [(c.problem, c.color, c.size) for c in threads] == [(c.problem, c.color, c.size) for c in processes]
    assert sum(c.problem is not None for c in processes) == 1 and sum(not c.color for c in processes) == 1
