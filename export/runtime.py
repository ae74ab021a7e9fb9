"""Running a `.tflite` model under LiteRT (XNNPACK on CPU): predictions and latency."""

import time

import numpy as np

from keras_vit.export.analysis import check_tflite_bytes, interpreter_class


def check_image_shape(images, image_shape, name="images", model="the model"):
    """Raises ValueError, naming `name` and `model`, unless `images` are `[N, *image_shape]`."""
    shape = tuple(np.shape(images))
    if len(shape) != 4 or shape[1:] != tuple(image_shape):
        got = "x".join(str(s) for s in shape[1:]) if len(shape) == 4 else f"an array of shape {shape}"
        raise ValueError(
            f"{name} of size {got} do not fit {model}, which takes "
            f"{'x'.join(str(s) for s in image_shape)} (height x width x channels) images [N, H, W, C]"
        )


def is_gray_for_rgb(shape, image_shape):
    """Whether images of `shape` `[N, H, W, 1]` are gray ones for a model taking RGB `image_shape`
    `(H, W, 3)` (a gray model's RGB-input file), to be repeated to three channels."""
    shape = tuple(shape)
    return len(shape) == 4 and shape[-1] == 1 and tuple(image_shape)[-1] == 3 and shape[1:3] == tuple(image_shape)[:2]


def fit_channels(images, image_shape, name="images", model="the model"):
    """`images` `[N, H, W, C]` for a model taking `image_shape` `(H, W, C)`, as float32.

    Gray images `[N, H, W, 1]` for a model that takes RGB are repeated to three channels, as
    `keras_vit.images` converts a gray file for an RGB model; so the files that take RGB for a
    gray model (`export.tflite.convert(rgb_input=True)`) accept the gray images of its dataset.
    Anything else that is not `image_shape` is a ValueError (`check_image_shape`).
    """
    images = np.asarray(images, dtype="float32")
    shape = tuple(np.shape(images))
    if is_gray_for_rgb(shape, image_shape):
        images = np.repeat(images, 3, axis=-1)
    check_image_shape(images, image_shape, name, model)
    return images


def softmax(values):
    """Softmax over the last axis, in float64: `[N, K]` logits -> probabilities."""
    values = np.asarray(values, dtype="float64")
    exp = np.exp(values - values.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def class_probabilities(outputs, are_probabilities):
    """`[N, K]` model outputs as class probabilities: as they are where the model outputs
    probabilities (a quantized softmax's steps of 1/256 are kept, as MediaPipe reports them),
    else their softmax."""
    return np.asarray(outputs, dtype="float64") if are_probabilities else softmax(outputs)


class TFLiteRunner:
    """LiteRT interpreter around one model, fed float32 raw-pixel images of any count.

    Quantized inputs/outputs are (de)quantized with the model's own parameters, and
    images are fed in chunks of the model's static batch size (the last one padded).
    """

    def __init__(self, content, num_threads=None):
        check_tflite_bytes(content)
        try:
            self.interpreter = interpreter_class()(model_content=content, num_threads=num_threads or 1)
            self.interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as error:
            raise ValueError(f"LiteRT cannot load the model: {str(error).strip().splitlines()[0]}") from None
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.num_threads = num_threads or 1
        from keras_vit.export.analysis import outputs_probabilities

        # Whether the output is class probabilities (the default export) or logits.
        self.outputs_probabilities = outputs_probabilities(content)

    @property
    def input_shape(self):
        return tuple(int(s) for s in self.input["shape"])

    @property
    def batch_size(self):
        return self.input_shape[0]

    def quantize_input(self, images):
        dtype = self.input["dtype"]
        if dtype == np.float32:
            return images.astype("float32")
        scale, zero_point = self.input["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(images / scale + zero_point), info.min, info.max).astype(dtype)

    def dequantize_output(self, values):
        if self.output["dtype"] == np.float32:
            return values
        scale, zero_point = self.output["quantization"]
        return (values.astype("float32") - zero_point) * scale

    def check_images(self, images):
        """`images` as float32 of the model's image shape (gray repeated for an RGB input, `fit_channels`);
        raises ValueError for any other shape."""
        return fit_channels(images, self.input_shape[1:])

    def predict(self, images):
        """Raw pixels `[N, H, W, C]` (uint8 or float; gray `[N, H, W, 1]` for an RGB input) -> float32
        `[N, num_outputs]`.

        Each batch is converted as it is fed, so memory holds the caller's images (uint8 for a
        dataset) and one batch in float32, never a float copy of them all."""
        images = np.asarray(images)
        self.check_images(images[:0])  # the shape check, without a copy
        batch = self.batch_size
        outputs = []
        for start in range(0, len(images), batch):
            chunk = self.check_images(images[start : start + batch])
            count = len(chunk)
            if count < batch:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - count, axis=0)])
            self.interpreter.set_tensor(self.input["index"], self.quantize_input(chunk))
            self.interpreter.invoke()
            result = self.interpreter.get_tensor(self.output["index"])
            outputs.append(self.dequantize_output(result)[:count])
        return np.concatenate(outputs).astype("float32")

    def probabilities(self, images):
        """float32 `[N, H, W, C]` raw pixels -> float64 class probabilities `[N, K]` (`class_probabilities`)."""
        return class_probabilities(self.predict(images), self.outputs_probabilities)

    def latency(self, runs=50, warmup=5, images=None):
        """Median and 90th-percentile milliseconds of one `invoke` (one batch)."""
        if images is None:
            images = np.random.default_rng(0).uniform(0, 255, self.input_shape).astype("float32")
        self.interpreter.set_tensor(self.input["index"], self.quantize_input(images[: self.batch_size]))
        for _ in range(warmup):
            self.interpreter.invoke()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            self.interpreter.invoke()
            times.append(time.perf_counter() - start)
        times = np.asarray(times) * 1e3
        return {"median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90))}
