"""The exporter's named choices as plain data, without TensorFlow.

`keras-vit export --help` and its argument errors read them before TensorFlow is imported;
tests/test_cli.py checks that the modules acting on them (export.tflite, export.graph,
export.savedmodel) take the same lists.
"""

# TFLite modes: float32, float16 weights, dynamic-range int8 weights, full integer (int8
# activations and weights, or int16 activations with int8 weights, for NPUs).
MODES = ("float32", "float16", "dynamic", "int8", "int16x8")
QUANTIZED_MODES = ("int8", "int16x8")
# Input and output types of a full-integer file.
IO_TYPES = ("float32", "int8", "uint8")
# Scale granularity of the integer FULLY_CONNECTED weights: one per output channel or per matrix.
WEIGHT_GRANULARITIES = ("channel", "tensor")
# What is converted: the Keras model's own graph, or the folded inference graph (export.graph).
GRAPHS = ("keras", "folded")
# dtype of a serving SavedModel's `serving_default` images.
INPUT_DTYPES = ("float32", "uint8")
