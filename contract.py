"""The layer contract's shared rules: output-size arithmetic and argument checks.

``reference.layers`` and ``fast.nn.layers`` both import this module and nothing else from each
other. It holds no arithmetic on data: it decides whether a call is valid and how large its
output is, and raises a ValueError naming the numbers when it is not. A mistake here would be
shared by both implementations, which is why the tests pin its results on their own (hand-worked
output sizes, every error message) rather than by comparing the two implementations.
"""
import math

import numpy as np


def conv_output_size(size, kernel, stride, pad):
    """Output length of a window sliding over ``size`` (+ ``pad`` each side), floored."""
    if stride < 1 or pad < 0 or kernel < 1:
        raise ValueError(f"need kernel >= 1, stride >= 1 and padding >= 0, got kernel {kernel}, "
                         f"stride {stride}, padding {pad}")
    out = (size + 2 * pad - kernel) // stride + 1
    if out < 1:
        raise ValueError(f"output size {out} < 1: input size {size}, kernel {kernel}, "
                         f"stride {stride}, padding {pad}")
    return out


def check_rank(name, array, rank):
    if array.ndim != rank:
        raise ValueError(f"{name} must be {rank}-D, got shape {array.shape}")


def check_conv_args(x, w, b, stride, pad):
    """Validate a convolution's operands -> its output size (OH, OW)."""
    check_rank("conv input x", x, 4)
    check_rank("conv weights w", w, 4)
    C, (F, CW, KH, KW) = x.shape[1], w.shape
    if C != CW:
        raise ValueError(f"channel mismatch: x has {C} channels, w expects {CW}")
    if b.shape != (F,):
        raise ValueError(f"conv bias b must have shape ({F},), got {b.shape}")
    return conv_output_size(x.shape[2], KH, stride, pad), conv_output_size(x.shape[3], KW, stride, pad)


def check_pool_args(x, size, stride):
    """Validate a max-pool's operands -> (stride, OH, OW), stride defaulting to ``size``."""
    check_rank("max-pool input x", x, 4)
    stride = size if stride is None else stride
    return (stride, conv_output_size(x.shape[2], size, stride, 0),
            conv_output_size(x.shape[3], size, stride, 0))


def check_affine_args(x, w, b):
    """Validate an affine layer's operands -> D, the features per sample x is flattened to."""
    if x.ndim < 2:
        raise ValueError(f"affine input x must be at least 2-D (N, ...), got shape {x.shape}")
    check_rank("affine weights w", w, 2)
    features = math.prod(x.shape[1:])
    if features != w.shape[0]:
        raise ValueError(f"affine size mismatch: x has {features} features per sample, "
                         f"w expects {w.shape[0]}")
    if b.shape != (w.shape[1],):
        raise ValueError(f"affine bias b must have shape ({w.shape[1]},), got {b.shape}")
    return features


def check_labels(logits, y, class_weights):
    """Validate the shapes and values that softmax cross-entropy relies on."""
    check_rank("logits", logits, 2)
    N, K = logits.shape
    if y.shape != (N,):
        raise ValueError(f"labels y must have shape ({N},), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels y must be integers, got dtype {y.dtype}")
    if N and (y.min() < 0 or y.max() >= K):
        raise ValueError(f"labels must lie in [0, {K - 1}], got values from {y.min()} to {y.max()}")
    if class_weights is not None:
        class_weights = np.asarray(class_weights)
        if class_weights.shape != (K,):
            raise ValueError(f"class_weights must have one weight per class ({K}), "
                             f"got shape {class_weights.shape}")
        if np.any(class_weights <= 0):
            raise ValueError(f"class_weights must be positive, got {class_weights.tolist()}")


def check_batchnorm_args(x, gamma, beta, running_mean, running_var, training, momentum, eps):
    """Validate batch norm's operands: x (N, C, H, W), four (C,) arrays, momentum, eps."""
    check_rank("batch-norm input x", x, 4)
    N, C, H, W = x.shape
    for name, array in [("gamma", gamma), ("beta", beta), ("running_mean", running_mean),
                        ("running_var", running_var)]:
        if np.shape(array) != (C,):
            raise ValueError(f"batch-norm {name} must have shape ({C},) for x of shape {x.shape}, "
                             f"got {np.shape(array)}")
    if not 0 <= momentum <= 1:
        raise ValueError(f"batch-norm momentum must lie in [0, 1], got {momentum}")
    if not eps > 0:
        raise ValueError(f"batch-norm eps must be positive, got {eps}")
    if training and N * H * W == 0:
        raise ValueError(f"training-mode batch norm needs at least one value per channel, "
                         f"got x of shape {x.shape}")


def check_dropout_p(p):
    """Validate a dropout probability: 0 <= p < 1 (p == 1 would divide by zero)."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout probability p must lie in [0, 1), got {p}")


def check_global_avgpool_args(x):
    """Validate global average pooling's input: (N, C, H, W) with planes of at least 1x1."""
    check_rank("global average pooling input x", x, 4)
    if x.shape[2] * x.shape[3] == 0:
        raise ValueError(f"global average pooling needs planes of at least 1x1, got x of shape {x.shape}")
