"""NumPy building blocks of the ViT equations (float64), shared by the reference tests."""

import numpy as np
from scipy.special import erf


def layer_norm(x, gamma, beta, epsilon=1e-6):
    mean = x.mean(axis=-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + epsilon) * gamma + beta


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def gelu(x):
    """Exact (erf) GELU."""
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def conv2d_same(x, kernel, stride):
    """`[B, H, W, C]` convolved with `[k, k, C, F]`, TensorFlow's "same" padding: the output
    is `ceil(H / stride)` high, and an odd padding puts the extra row/column after."""
    batch, height, width, _ = x.shape
    size = kernel.shape[0]
    out_height, out_width = -(-height // stride), -(-width // stride)
    pad_height = max((out_height - 1) * stride + size - height, 0)
    pad_width = max((out_width - 1) * stride + size - width, 0)
    x = np.pad(x, ((0, 0), (pad_height // 2, pad_height - pad_height // 2),
                   (pad_width // 2, pad_width - pad_width // 2), (0, 0)))
    out = np.zeros((batch, out_height, out_width, kernel.shape[-1]))
    for i in range(size):
        for j in range(size):
            window = x[:, i : i + stride * out_height : stride, j : j + stride * out_width : stride]
            out += window @ kernel[i, j]
    return out


def batch_norm_inference(x, gamma, beta, moving_mean, moving_variance, epsilon):
    return (x - moving_mean) / np.sqrt(moving_variance + epsilon) * gamma + beta
