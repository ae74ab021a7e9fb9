"""Keras ViT -> SavedModel for TF Serving, with an image signature and an encoded-bytes one.

Signatures:
    serving_default(images: uint8 or float32 [None, H, W, C] raw pixels)
    serving_bytes(image_bytes: string [None] JPEG/PNG/BMP/GIF, decoded and resized in graph)
both return `probabilities` [None, num_classes], `top_k_ids` int32 [None, k],
`top_k_probabilities` [None, k] and `top_k_classes` string [None, k]. The class names
are the asset `assets/labels.txt`, read by a lookup table inside the graph.
"""

import os
import tempfile

SERVING_DEFAULT = "serving_default"
SERVING_BYTES = "serving_bytes"
LABELS_ASSET = "labels.txt"
INPUT_DTYPES = ("float32", "uint8")


def outputs_are_probabilities(model):
    return getattr(model, "classifier_activation", None) == "softmax"


class ServingModule:
    """Builds the `tf.Module` saved by `export_savedmodel` (see the module docstring)."""

    def __new__(cls, model, class_names, labels_file, top_k=5, input_dtype="float32"):
        import tensorflow as tf

        from keras_vit.images import decode_image, model_image_shape, prepare_images

        if input_dtype not in INPUT_DTYPES:
            raise ValueError(f"input dtype must be one of {INPUT_DTYPES}, got {input_dtype!r}")
        height, width, channels = model_image_shape(model)
        num_classes = int(model.outputs[0].shape[-1])
        if len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for a model with {num_classes} outputs")
        top_k = max(1, min(int(top_k), num_classes))
        probabilities_out = outputs_are_probabilities(model)

        module = tf.Module()
        module.model = model
        # Keras 3 variables are not tf.Module-trackable; tracking their values saves them.
        module.keras_variables = [variable.value for variable in model.variables]
        module.labels_asset = tf.saved_model.Asset(labels_file)
        module.table = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                module.labels_asset,
                key_dtype=tf.int64,
                key_index=tf.lookup.TextFileIndex.LINE_NUMBER,
                value_dtype=tf.string,
                value_index=tf.lookup.TextFileIndex.WHOLE_LINE,
            ),
            default_value="",
        )

        def classify(images):
            outputs = module.model(tf.cast(images, tf.float32), training=False)
            probabilities = outputs if probabilities_out else tf.nn.softmax(outputs, axis=-1)
            top_probabilities, top_ids = tf.math.top_k(probabilities, k=top_k)
            return {
                "probabilities": probabilities,
                "top_k_ids": top_ids,
                "top_k_probabilities": top_probabilities,
                "top_k_classes": module.table.lookup(tf.cast(top_ids, tf.int64)),
            }

        @tf.function(input_signature=[tf.TensorSpec([None, height, width, channels], getattr(tf, input_dtype), name="images")])
        def serve_images(images):
            return classify(images)

        def decode(data):
            # The same decoding and resize (bilinear, rounded) as the input pipeline and `keras-vit predict`.
            image = decode_image(data, channels)
            image.set_shape([None, None, channels])
            return prepare_images(image, (height, width), channels)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
        def serve_bytes(image_bytes):
            images = tf.map_fn(
                decode, image_bytes, fn_output_signature=tf.TensorSpec([height, width, channels], tf.float32)
            )
            return classify(images)

        module.serve_images = serve_images
        module.serve_bytes = serve_bytes
        return module


# What a SavedModel folder holds (tf.saved_model.save).
SAVED_MODEL_ENTRIES = {"saved_model.pb", "saved_model.pbtxt", "fingerprint.pb", "variables", "assets"}


def is_savedmodel_folder(path):
    """Whether `path` is a SavedModel folder and nothing else: the folder `export_savedmodel` replaces."""
    if not os.path.isdir(path):
        return False
    entries = set(os.listdir(path))
    return "saved_model.pb" in entries and entries <= SAVED_MODEL_ENTRIES


def export_savedmodel(model, path, class_names=None, top_k=5, input_dtype="float32", tta="none", overwrite=False):
    """Writes a serving SavedModel to `path` (a folder), replacing it only when complete.

    An existing `path` is replaced whole: it must be empty or a SavedModel (`is_savedmodel_folder`),
    unless `overwrite`; anything else there is refused, never deleted.

    Args:
        model: Keras model taking `[B, H, W, C]` raw pixels, returning logits or
            probabilities.
        path: output folder.
        class_names: names of the classes (default "0", "1", ...).
        top_k: how many top classes the signatures return.
        input_dtype: `float32` or `uint8` for `serving_default`.
        tta: `none`, or `flip`: both signatures return the mean class probabilities of each
            image and its mirror image (`keras_vit.flip_averaged`; two forward passes).
    """
    import tensorflow as tf

    from keras_vit.files import atomic_folder, check_class_names, check_output, labels_text
    from keras_vit.test_time_augmentation import check_tta

    check_output(path, (), is_savedmodel_folder, overwrite, "path", "a new folder or a SavedModel's", "overwrite=True")
    check_tta(tta)
    if tta == "flip":
        from keras_vit import flip_averaged

        model = flip_averaged(model)

    num_classes = int(model.outputs[0].shape[-1])
    class_names = check_class_names(class_names or range(num_classes))
    with atomic_folder(path) as tmp, tempfile.TemporaryDirectory() as scratch:
        labels_file = os.path.join(scratch, LABELS_ASSET)
        with open(labels_file, "w") as file:
            file.write(labels_text(class_names))
        module = ServingModule(model, class_names, labels_file, top_k=top_k, input_dtype=input_dtype)
        tf.saved_model.save(
            module, tmp, signatures={SERVING_DEFAULT: module.serve_images, SERVING_BYTES: module.serve_bytes}
        )
    return path
