"""training.threads: the step-size estimate against the ops of the real graph, the choice per size
tier, the dataset headers it reads, and the pool set before TensorFlow starts (a child process)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_vit import ViT
from keras_vit.training.model_choice import SIZE_TIERS, choose_model
from keras_vit.training.threads import (
    SMALL_STEP_MULTIPLY_ADDS,
    array_dataset_shape,
    choose_intra_op_threads,
    step_multiply_adds,
)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _graph_multiply_adds(model_args):
    """Multiply-adds of one image's forward pass, read off the traced graph's matrix products and
    convolutions (their operand shapes), independently of the estimate's formula."""
    model = ViT(num_classes=10, **model_args)
    height, width = model_args["image_size"]
    spec = tf.TensorSpec((1, height, width, model_args["channels"]), tf.float32)
    graph = tf.function(lambda images: model(images, training=False)).get_concrete_function(spec).graph
    total = 0
    for op in graph.get_operations():
        if op.type in ("MatMul", "BatchMatMulV2", "BatchMatMulV3"):
            transpose = op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x")
            inner = op.inputs[0].shape[-2 if transpose else -1]
            total += int(np.prod(op.outputs[0].shape)) * int(inner)
        elif op.type in ("Conv2D", "DepthwiseConv2dNative"):
            kernel = op.inputs[1].shape  # [kh, kw, in, out]
            per_output = kernel[0] * kernel[1] * (kernel[2] if op.type == "Conv2D" else 1)
            total += int(np.prod(op.outputs[0].shape)) * int(per_output)
        elif op.type == "Einsum":
            raise AssertionError(f"an Einsum op ({op.name}): count it here before trusting the estimate")
    return total


@pytest.mark.parametrize("image_shape, num_train", [((8, 8, 1), 1295), ((32, 32, 3), 45_000), ((64, 64, 3), 5_000)])
def test_step_estimate_matches_the_graphs_products(image_shape, num_train):
    model_args = choose_model(image_shape, num_train)
    counted = _graph_multiply_adds(model_args)
    # The head (hidden x classes) is left out of the estimate: it is under 0.1% of a step.
    assert step_multiply_adds(model_args, 1) / 3 == pytest.approx(counted, rel=0.02)
    assert step_multiply_adds(model_args, 64) == 64 * step_multiply_adds(model_args, 1)


def test_small_steps_get_one_intra_op_thread_and_larger_tiers_the_default():
    digits = choose_model((8, 8, 1), 1295)
    assert choose_intra_op_threads(digits, SIZE_TIERS[0]["batch_size"]) == 1
    for shape in ((32, 32, 3), (28, 28, 1)):  # CIFAR-10 and MNIST: the 10,000-100,000-image tier
        model_args = choose_model(shape, 45_000)
        assert step_multiply_adds(model_args, SIZE_TIERS[1]["batch_size"]) > 2 * SMALL_STEP_MULTIPLY_ADDS
        assert choose_intra_op_threads(model_args, SIZE_TIERS[1]["batch_size"]) is None
    assert choose_intra_op_threads(choose_model((224, 224, 3), 3000), 64) is None


def test_array_dataset_shape_reads_headers_only(tmp_path):
    assert array_dataset_shape("digits") == (1293, (8, 8, 1))
    gray = tmp_path / "gray.npz"
    np.savez(gray, x_train=np.zeros((200, 28, 28), "uint8"), y_train=np.zeros(200, "int64"),
             x_test=np.zeros((10, 28, 28), "uint8"), y_test=np.zeros(10, "int64"))
    assert array_dataset_shape(f"npz:{gray}", validation_fraction=0.1) == (180, (28, 28, 1))
    color = tmp_path / "color.npz"
    np.savez_compressed(color, x_train=np.zeros((50, 32, 32, 3), "uint8"), y_train=np.zeros(50, "int64"))
    assert array_dataset_shape(f"npz:{color}", validation_fraction=0.0) == (50, (32, 32, 3))
    foreign = tmp_path / "foreign.npz"
    foreign.write_bytes(b"not a zip archive")
    assert array_dataset_shape(f"npz:{foreign}") is None  # loading it later says what is wrong
    assert array_dataset_shape(f"npz:{tmp_path / 'missing.npz'}") is None
    assert array_dataset_shape(f"folder:{tmp_path}") is None
    assert array_dataset_shape("tfds:mnist") is None


_CHILD = """
import json, sys
from keras_vit.training.threads import configure_intra_op_threads
from keras_vit.training.model_choice import choose_model
import tensorflow as tf
set_to = configure_intra_op_threads(choose_model((8, 8, 1), 1295), 64)
tf.constant(1.0) + 1.0  # starts TensorFlow with the pool as configured
print(json.dumps([set_to, tf.config.threading.get_intra_op_parallelism_threads()]))
"""


@pytest.mark.parametrize("environment, expected", [({}, [1, 1]), ({"TF_NUM_INTRAOP_THREADS": "2"}, [None, 0])])
def test_the_pool_is_set_before_tensorflow_starts_unless_the_environment_says(environment, expected):
    env = {key: value for key, value in os.environ.items() if key != "TF_NUM_INTRAOP_THREADS"}
    env.update(environment, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO_ROOT)
    done = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    # 0 is TensorFlow's "not set here" (the environment's 2 applies inside the runtime).
    assert __import__("json").loads(done.stdout.strip().splitlines()[-1]) == expected


def test_once_tensorflow_runs_the_pool_is_left_alone():
    from keras_vit.training.threads import configure_intra_op_threads

    tf.constant(1.0) + 1.0  # this test process has started TensorFlow
    before = tf.config.threading.get_intra_op_parallelism_threads()
    assert configure_intra_op_threads(choose_model((8, 8, 1), 1295), 64) is None
    assert tf.config.threading.get_intra_op_parallelism_threads() == before
