"""The names a user chooses from, for training and the command line: argparse's `choices=`
and the validators both read them from here, so each list is written once.

Plain data, without TensorFlow, so that `keras-vit --help` and argument errors answer at
once. The model's own choices (pooling, input scaling, test-time augmentation) are defined in
`keras_vit.choices` and the exporter's (modes, graphs, I/O types) in `keras_vit.export.choices`,
and gathered here.
"""

from keras_vit.choices import INPUT_SCALINGS, POOLING_MODES, TTA_MODES

STRATEGIES = ("auto", "cpu", "gpu", "mirrored", "multiworker", "tpu")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16", "auto")
OPTIMIZERS = ("adamw", "sgd")
# What fills the padding of a random crop: the mirrored image, or zeros.
CROP_FILLS = ("reflect", "zeros")
JIT_COMPILE = ("auto", "true", "false")
KEEP_MODELS = ("best", "last")
ACCELERATORS = ("cpu", "gpu")
EXPORT_FORMATS = ("savedmodel", "tflite")
# Who quantizes an export (export.bundle.QUANTIZERS), or both side by side.
QUANTIZER_CHOICES = ("converter", "ai-edge", "both")
PREDICT_FORMATS = ("table", "json", "csv")

__all__ = [
    "ACCELERATORS", "CROP_FILLS", "EXPORT_FORMATS", "INPUT_SCALINGS", "JIT_COMPILE", "KEEP_MODELS", "OPTIMIZERS",
    "POOLING_MODES", "PRECISIONS", "PREDICT_FORMATS", "QUANTIZER_CHOICES", "STRATEGIES", "TTA_MODES",
]
