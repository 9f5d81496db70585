"""The CNNs: stacks of contract layers over either implementation, and their files.

A network holds its parameters in ``params`` and returns gradients in a dict of
the same keys, so an optimizer can loop over the keys. The layer math comes from
``reference.layers`` or ``fast.layers`` (``impl``); the model code is shared, so
with the same weights both give the same loss and gradients.
"""
import json
import os
from dataclasses import asdict, dataclass

import numpy as np

import fast.layers
import reference.layers
from contract import conv_output_size
from fast.config import TrainConfig
from fast.files import atomic_savez

IMPLEMENTATIONS = {"fast": fast.layers, "reference": reference.layers}
FORMAT_VERSION = 1


class ModelFileError(Exception):
    """A model file that is missing, corrupt, or not a model of this project."""


@dataclass(frozen=True)
class Architecture:
    """Everything needed to rebuild a network's shapes (weights excluded).

    Each conv block is conv(kernel, stride, pad) - ReLU - max-pool(pool) (pool 1
    means no pooling); then affine(hidden) - ReLU - affine(num_classes).
    """
    input_shape: tuple = (1, TrainConfig.image_size, TrainConfig.image_size)
    channels: tuple = TrainConfig.channels
    kernel: int = 3
    stride: int = 1
    pad: int = 1
    pool: int = 2
    hidden: int = TrainConfig.hidden
    num_classes: int = 2

    def to_json(self):
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text):
        fields = json.loads(text)
        fields["input_shape"] = tuple(fields["input_shape"])
        fields["channels"] = tuple(fields["channels"])
        return cls(**fields)


class ConvNet:
    """A configurable convnet: [conv - ReLU - pool] x len(channels) - affine - ReLU - affine.

    x: (N, C, H, W) -> logits: (N, num_classes). The default suits 1-channel
    X-rays at 64x64: three 3x3 conv blocks (16, 32, 64 filters), each halving the
    image, then a 128-unit hidden layer.
    """

    def __init__(self, arch=Architecture(), impl="fast", seed=0, dtype=np.float32):
        if impl not in IMPLEMENTATIONS:
            raise ValueError(f"unknown implementation {impl!r}; choose from {sorted(IMPLEMENTATIONS)}")
        self.arch = arch
        self.impl_name = impl
        self.layers = IMPLEMENTATIONS[impl]
        self.dtype = np.dtype(dtype)
        self.params = self._init_params(np.random.default_rng(seed))

    def _init_params(self, rng):
        """He initialisation: weights ~ N(0, 2 / fan_in), biases zero."""
        a = self.arch
        conv = conv_output_size
        params = {}
        c, h, w = a.input_shape
        for i, f in enumerate(a.channels, start=1):
            fan_in = c * a.kernel * a.kernel
            params[f"conv{i}_w"] = rng.normal(0, np.sqrt(2 / fan_in), (f, c, a.kernel, a.kernel))
            params[f"conv{i}_b"] = np.zeros(f)
            h, w = conv(h, a.kernel, a.stride, a.pad), conv(w, a.kernel, a.stride, a.pad)
            if a.pool > 1:
                h, w = conv(h, a.pool, a.pool, 0), conv(w, a.pool, a.pool, 0)
            c = f
        flat = c * h * w
        params["fc1_w"] = rng.normal(0, np.sqrt(2 / flat), (flat, a.hidden))
        params["fc1_b"] = np.zeros(a.hidden)
        params["fc2_w"] = rng.normal(0, np.sqrt(2 / a.hidden), (a.hidden, a.num_classes))
        params["fc2_b"] = np.zeros(a.num_classes)
        return {k: v.astype(self.dtype) for k, v in params.items()}

    def forward(self, x, feature_maps=None):
        """x: (N, C, H, W) -> (logits (N, num_classes), caches for ``backward``).

        A list passed as ``feature_maps`` receives what each conv layer sees:
        ReLU(conv_i output) before pooling, (N, F_i, H_i, W_i), for pictures.
        """
        L, p, a = self.layers, self.params, self.arch
        if x.shape[1:] != tuple(a.input_shape):
            raise ValueError(f"model expects inputs of shape (N, {', '.join(map(str, a.input_shape))}), "
                             f"got {x.shape}")
        x = x.astype(self.dtype, copy=False)
        caches = []
        for i in range(1, len(a.channels) + 1):
            x, conv_cache = L.conv2d_forward(x, p[f"conv{i}_w"], p[f"conv{i}_b"], a.stride, a.pad)
            if feature_maps is not None:
                feature_maps.append(np.maximum(x, 0))
            # ReLU is monotone, so max-pooling before it gives the same output and
            # the same gradient as after it, on an array pool**2 times smaller.
            if a.pool > 1:
                x, block_cache = L.maxpool_relu_forward(x, a.pool)
            else:
                x, block_cache = L.relu_forward(x)
            caches.append((conv_cache, block_cache))
        x, fc1_cache = L.affine_forward(x, p["fc1_w"], p["fc1_b"])
        x, relu_cache = L.relu_forward(x)
        logits, fc2_cache = L.affine_forward(x, p["fc2_w"], p["fc2_b"])
        caches.append((fc1_cache, relu_cache, fc2_cache))
        return logits, caches

    def backward(self, dlogits, caches, need_dx=False):
        """dlogits: (N, num_classes) -> (grads with the keys of ``params``, dx (N, C, H, W)).

        dx, the gradient with respect to the images, is computed only when
        ``need_dx`` (saliency); otherwise it is None and its work is skipped.
        """
        grads = {}
        d = self._backward_head(dlogits, caches, grads)
        for i in range(len(self.arch.channels), 0, -1):
            d = self._backward_block_to_conv(i, d, caches)
            d, grads[f"conv{i}_w"], grads[f"conv{i}_b"] = self.layers.conv2d_backward(
                d, caches[i - 1][0], need_dx=need_dx or i > 1)
        return grads, d

    def _backward_head(self, dlogits, caches, grads):
        """From the logits back to the last conv block's output, filling the head's grads."""
        L = self.layers
        fc1_cache, relu_cache, fc2_cache = caches[-1]
        d, grads["fc2_w"], grads["fc2_b"] = L.affine_backward(dlogits, fc2_cache)
        d = L.relu_backward(d, relu_cache)
        d, grads["fc1_w"], grads["fc1_b"] = L.affine_backward(d, fc1_cache)
        return d

    def _backward_block_to_conv(self, i, d, caches):
        """The gradient back through block i's ReLU and pooling, to its conv's output."""
        block_cache = caches[i - 1][1]
        if self.arch.pool > 1:
            return self.layers.maxpool_relu_backward(d, block_cache)
        return self.layers.relu_backward(d, block_cache)

    def last_conv_gradient(self, x, direction):
        """What Grad-CAM needs: the last conv layer's activations and the gradient there.

        x: (N, C, H, W), direction: (num_classes,) -> (ReLU(last conv output) (N, F, h, w),
        d(logits @ direction) / d(last conv output) (N, F, h, w), logits (N, num_classes)).
        With direction (-1, 1) the differentiated score is the log-odds of class 1.
        """
        maps = []
        logits, caches = self.forward(x, feature_maps=maps)
        dlogits = np.broadcast_to(np.asarray(direction, dtype=logits.dtype), logits.shape).copy()
        d = self._backward_head(dlogits, caches, {})
        d = self._backward_block_to_conv(len(self.arch.channels), d, caches)
        return maps[-1], d, logits

    def loss(self, x, y, class_weights=None):
        """Softmax cross-entropy of the batch and its gradients: -> (loss, grads)."""
        logits, caches = self.forward(x)
        loss, dlogits = self.layers.softmax_cross_entropy(logits, y, class_weights)
        grads, _ = self.backward(dlogits, caches)
        return float(loss), grads

    def predict_logits(self, x, batch_size=32):
        """Logits (N, num_classes) in batches, the last partial batch included."""
        parts = [self.forward(x[i:i + batch_size])[0] for i in range(0, len(x), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.arch.num_classes), self.dtype)

    def predict_proba(self, x, batch_size=32):
        """Class probabilities (N, num_classes), float64, in batches."""
        return softmax(self.predict_logits(x, batch_size).astype(np.float64))

    def input_gradient(self, x, target_class):
        """d logit[target_class] / d x for each image: saliency. x: (N, C, H, W) -> (N, C, H, W)."""
        logits, caches = self.forward(x)
        dlogits = np.zeros_like(logits)
        dlogits[:, target_class] = 1
        _, dx = self.backward(dlogits, caches, need_dx=True)
        return dx


def softmax(logits):
    """Row-wise softmax of (N, K) logits, in their dtype; the row max is subtracted first."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def simple_convnet(input_shape=(1, 28, 28), filters=30, kernel=5, pad=0, stride=1, hidden=100,
                   num_classes=2, impl="fast", seed=0, dtype=np.float32):
    """The classic conv - ReLU - pool(2) - affine - ReLU - affine network, as a ConvNet."""
    arch = Architecture(input_shape=tuple(input_shape), channels=(filters,), kernel=kernel,
                        stride=stride, pad=pad, pool=2, hidden=hidden, num_classes=num_classes)
    return ConvNet(arch, impl=impl, seed=seed, dtype=dtype)


def save_model(path, model, metadata=None):
    """Write weights, architecture and JSON ``metadata`` (normalisation, threshold, ...) to ``.npz``.

    Only plain arrays and strings are stored, so loading never needs pickle.
    """
    arrays = {f"param/{k}": v for k, v in model.params.items()}
    arrays["architecture"] = np.array(model.arch.to_json())
    arrays["metadata"] = np.array(json.dumps(metadata or {}))
    arrays["format_version"] = np.array(FORMAT_VERSION)
    atomic_savez(path, **arrays)


def load_model(path, impl="fast", dtype=None):
    """Read a file written by ``save_model`` -> (model, metadata dict).

    The weights keep the dtype they were saved in unless ``dtype`` is given.

    Raises ModelFileError for a missing, corrupt or foreign file, or one that
    would need pickle (never allowed: loading must not run code from the file).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelFileError(f"{path}: no such model file")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":  # every .npz is a zip archive
        raise ModelFileError(f"{path}: not a readable model file (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as data:
            contents = {k: data[k] for k in data.files}
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise ModelFileError(f"{path}: refusing to load, the file needs pickle "
                                 "(it could run code); not a model of this project") from None
        raise ModelFileError(f"{path}: not a readable model file ({e})") from None
    except Exception as e:  # zip/npz corruption surfaces as several exception types
        raise ModelFileError(f"{path}: not a readable model file ({type(e).__name__}: {e})") from None

    if "architecture" not in contents or "format_version" not in contents:
        raise ModelFileError(f"{path}: not a model of this project (no architecture record)")
    try:
        arch = Architecture.from_json(str(contents["architecture"]))
        metadata = json.loads(str(contents.get("metadata", "{}")))
    except (ValueError, TypeError) as e:
        raise ModelFileError(f"{path}: unreadable architecture record ({e})") from None

    stored = {k[len("param/"):]: v for k, v in contents.items() if k.startswith("param/")}
    if dtype is None:
        dtype = next(iter(stored.values())).dtype if stored else np.float32
    model = ConvNet(arch, impl=impl, dtype=dtype)
    if set(stored) != set(model.params):
        raise ModelFileError(f"{path}: weights {sorted(stored)} do not match the architecture's "
                             f"parameters {sorted(model.params)}")
    for k, v in stored.items():
        if v.shape != model.params[k].shape:
            raise ModelFileError(f"{path}: weight {k} has shape {v.shape}, the architecture "
                                 f"needs {model.params[k].shape}")
        model.params[k][...] = v
    return model, metadata
