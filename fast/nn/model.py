"""The CNNs: stacks of contract layers over either implementation.

A network holds its parameters in ``params`` and returns gradients in a dict of the same keys, so
an optimizer can loop over the keys. The layer math comes from ``reference.layers`` or
``fast.nn.layers`` (``impl``); the model code is shared, so with the same weights both give the
same loss and gradients.

The model knows its architecture and nothing of training, data or files: the training
configuration builds an ``Architecture`` (``fast.training.config``), a batch split between
processes brings its own batch norm through the layer contract (``BatchNorm``), and test-time
views are the business of ``fast.inference``.
"""
import json
from dataclasses import asdict, dataclass
from typing import Callable, NamedTuple, Optional, Tuple

import numpy as np

import fast.nn.layers
import reference.layers
from contract import conv_output_size
from fast.recorded import recorded
from fast.runtime import kernel_threads

IMPLEMENTATIONS = {"fast": fast.nn.layers, "reference": reference.layers}
HEADS = ("flatten", "gap")


@dataclass(frozen=True)
class Architecture:
    """Everything needed to rebuild a network's shapes (weights excluded). The defaults are the
    project's default network.

    len(channels) blocks, block b holding ``convs_per_block`` convs of channels[b] filters:
    conv(kernel, stride, pad) [- batch norm] - ReLU, the block's last ReLU after a
    max-pool(pool) (pool 1: no pooling). Then the head: the last block's maps flattened, or
    averaged over each channel (``head="gap"``); [affine(hidden) - ReLU when hidden > 0];
    dropout(p = ``dropout``); affine(num_classes). The first conv is the stem (``conv_shape``):
    by default it reads the 224 px image as non-overlapping 4x4 patches; ``stem_stride=1,
    stem_kernel=3`` makes it a plain first conv, for small images. The training settings take
    their defaults from these (``fast.training.config.TrainConfig``).
    """
    input_shape: tuple = (1, 224, 224)
    channels: tuple = (16, 32, 64)
    kernel: int = 3
    stride: int = 1
    pad: int = 1
    pool: int = 2
    hidden: int = 128
    num_classes: int = 2
    convs_per_block: int = 1
    batchnorm: bool = True
    head: str = "flatten"
    dropout: float = 0.3
    stem_stride: int = 4
    stem_kernel: int = 4

    def __post_init__(self):
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, got {self.head!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.stem_stride < 1 or self.stem_kernel < 1:
            raise ValueError(f"stem_stride and stem_kernel must be >= 1, got {self.stem_stride} "
                             f"and {self.stem_kernel}")
        if self.convs_per_block < 1 or self.hidden < 0:
            raise ValueError(f"need convs_per_block >= 1 and hidden >= 0, got "
                             f"{self.convs_per_block} and {self.hidden}")

    @property
    def convs(self):
        """(filters, ends a block) of every conv layer, in order."""
        return [(f, j == self.convs_per_block - 1) for f in self.channels
                for j in range(self.convs_per_block)]

    def pools(self, k):
        """Whether conv layer k (1-based) is max-pooled: the last of a block, where pool > 1."""
        return self.convs[k - 1][1] and self.pool > 1

    def conv_shape(self, k):
        """(kernel, stride, pad) of conv layer k (1-based). The first, the stem, has its own
        kernel and stride, a cheap way to take in a larger image: a 3x3 kernel with stride 2, or
        non-overlapping 4x4 patches with stride 4; its padding, (kernel - stride + 1) // 2, keeps
        the output at 1/stride of the input's side where the side is a multiple of the stride."""
        if k == 1:
            return self.stem_kernel, self.stem_stride, (self.stem_kernel - self.stem_stride + 1) // 2
        return self.kernel, self.stride, self.pad

    def to_json(self):
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text):
        """The record ``to_json`` wrote; fields it lacks get the values of the networks made
        before they existed (``fast.recorded``)."""
        fields = recorded("architecture", json.loads(text))
        fields["input_shape"] = tuple(fields["input_shape"])
        fields["channels"] = tuple(fields["channels"])
        return cls(**fields)


class BatchNorm(NamedTuple):
    """The batch normalisation a pass runs, as the layer contract's pair of functions:
    ``forward(x, gamma, beta, running_mean, running_var, training)`` -> (out, cache) and
    ``backward(dout, cache)`` -> (dx, dgamma, dbeta). A network uses its implementation's own;
    a batch split between processes brings the synchronised one
    (``fast.training.distributed.SyncBatchNorm``)."""
    forward: Callable
    backward: Callable


class ConvLayerCache(NamedTuple):
    """One conv layer's caches, as CS231n's ``conv_relu_pool_forward`` keeps them: its conv's,
    its batch norm's (None without batch norm) and its activation's (ReLU, or max-pool + ReLU)."""
    conv: object
    norm: Optional[object]
    activation: object


class HeadCache(NamedTuple):
    """The head's caches; None for a layer the architecture leaves out."""
    gap: Optional[object]
    hidden: Optional[object]
    hidden_relu: Optional[object]
    dropout: Optional[object]
    out: object


class Caches(NamedTuple):
    """What ``ConvNet.backward`` needs of a forward pass."""
    convs: Tuple[ConvLayerCache, ...]
    head: HeadCache
    batchnorm: BatchNorm  # the batch norm the pass ran, whose backward undoes it


class ConvNet:
    """A configurable convnet (see ``Architecture``) over either layer implementation.

    x: (N, C, H, W) -> logits: (N, num_classes). ``params`` holds what training changes;
    ``buffers`` the batch-norm running statistics, which training mode updates and evaluation
    mode uses. Forward passes run in evaluation mode unless asked for training mode.

    Every pass runs inside ``runtime.kernel_threads()`` (BLAS on one thread while the kernels
    split the work between the cores), entered once per call, not per layer.
    """

    def __init__(self, arch=Architecture(), impl="fast", seed=0, dtype=np.float32):
        if impl not in IMPLEMENTATIONS:
            raise ValueError(f"unknown implementation {impl!r}; choose from {sorted(IMPLEMENTATIONS)}")
        self.arch = arch
        self.impl_name = impl
        self.layers = IMPLEMENTATIONS[impl]
        self.batchnorm = BatchNorm(self.layers.batchnorm_forward, self.layers.batchnorm_backward)
        self.dtype = np.dtype(dtype)
        self.params = self._init_params(np.random.default_rng(seed))
        # the conv's bias argument where batch norm makes a bias pointless: zeros, made once
        self._zero_bias = [np.zeros(f, dtype=self.dtype) for f, _ in arch.convs]
        self.buffers = {}
        if arch.batchnorm:
            for k, (f, _) in enumerate(arch.convs, start=1):
                self.buffers[f"bn{k}_mean"] = np.zeros(f, dtype=self.dtype)
                self.buffers[f"bn{k}_var"] = np.ones(f, dtype=self.dtype)

    def _init_params(self, rng):
        """He initialisation: weights ~ N(0, 2 / fan_in), biases zero; batch norm: 1 and 0."""
        a = self.arch
        params = {}
        c, h, w = a.input_shape
        for k, (f, _) in enumerate(a.convs, start=1):
            kernel, stride, pad = a.conv_shape(k)
            fan_in = c * kernel * kernel
            params[f"conv{k}_w"] = rng.normal(0, np.sqrt(2 / fan_in), (f, c, kernel, kernel))
            if a.batchnorm:  # batch norm subtracts each channel's mean: a conv bias would cancel
                params[f"bn{k}_gamma"] = np.ones(f)
                params[f"bn{k}_beta"] = np.zeros(f)
            else:
                params[f"conv{k}_b"] = np.zeros(f)
            h, w = conv_output_size(h, kernel, stride, pad), conv_output_size(w, kernel, stride, pad)
            if a.pools(k):
                h, w = conv_output_size(h, a.pool, a.pool, 0), conv_output_size(w, a.pool, a.pool, 0)
            c = f
        features = c if a.head == "gap" else c * h * w
        if a.hidden:
            params["fc1_w"] = rng.normal(0, np.sqrt(2 / features), (features, a.hidden))
            params["fc1_b"] = np.zeros(a.hidden)
            features = a.hidden
        params["fc2_w"] = rng.normal(0, np.sqrt(2 / features), (features, a.num_classes))
        params["fc2_b"] = np.zeros(a.num_classes)
        return {k: v.astype(self.dtype) for k, v in params.items()}

    def state(self):
        """Every array that makes the model what it is: params and buffers (disjoint names)."""
        return {**self.params, **self.buffers}

    def load_state(self, arrays):
        """Copy ``arrays`` (as ``state`` returns them) into the model's own arrays."""
        for k, v in self.state().items():
            v[...] = arrays[k]

    # ----------------------------------------------------------------------- forward

    @kernel_threads()
    def forward(self, x, training=False, rng=None, feature_maps=None, batchnorm=None):
        """x: (N, C, H, W) -> (logits (N, num_classes), ``Caches`` for ``backward``).

        ``training``: batch norm normalises with the batch's statistics and updates its
        running averages, and dropout draws its mask from ``rng`` (a numpy Generator). In
        evaluation mode (the default) batch norm uses the running averages and dropout passes
        everything. A list passed as ``feature_maps`` receives what each conv layer hands
        on before pooling: ReLU(conv or batch-norm output), (N, F_k, H_k, W_k), for pictures.
        ``batchnorm``: the ``BatchNorm`` to run instead of the implementation's own.
        """
        a = self.arch
        if x.shape[1:] != tuple(a.input_shape):
            raise ValueError(f"model expects inputs of shape (N, {', '.join(map(str, a.input_shape))}), "
                             f"got {x.shape}")
        if training and a.dropout and rng is None:
            raise ValueError("training mode with dropout needs a random generator (rng)")
        norm = self.batchnorm if batchnorm is None else batchnorm
        x = x.astype(self.dtype, copy=False)
        convs = []
        for k in range(1, len(a.convs) + 1):
            x, cache = self._conv_layer_forward(k, x, training, norm, feature_maps)
            convs.append(cache)
        logits, head = self._head_forward(x, training, rng)
        return logits, Caches(tuple(convs), head, norm)

    def _conv_layer_forward(self, k, x, training, norm, feature_maps):
        """Conv layer k (1-based): conv [- batch norm] - ReLU, max-pooled first where it ends a
        block -> (out, ConvLayerCache)."""
        L, p, a = self.layers, self.params, self.arch
        bias = p.get(f"conv{k}_b", self._zero_bias[k - 1])
        _, stride, pad = a.conv_shape(k)
        x, conv = L.conv2d_forward(x, p[f"conv{k}_w"], bias, stride, pad)
        bn = None
        if a.batchnorm:
            x, bn = norm.forward(x, p[f"bn{k}_gamma"], p[f"bn{k}_beta"], self.buffers[f"bn{k}_mean"],
                                 self.buffers[f"bn{k}_var"], training)
        if feature_maps is not None:
            feature_maps.append(np.maximum(x, 0))
        # ReLU is monotone, so max-pooling before it gives the same output and
        # the same gradient as after it, on an array pool**2 times smaller.
        if a.pools(k):
            x, activation = L.maxpool_relu_forward(x, a.pool)
        else:
            x, activation = L.relu_forward(x)
        return x, ConvLayerCache(conv, bn, activation)

    def _head_forward(self, x, training, rng):
        """The last conv layer's output -> (logits, HeadCache)."""
        L, p, a = self.layers, self.params, self.arch
        gap = hidden = hidden_relu = dropout = None
        if a.head == "gap":
            x, gap = L.global_avgpool_forward(x)
        if a.hidden:
            x, hidden = L.affine_forward(x, p["fc1_w"], p["fc1_b"])
            x, hidden_relu = L.relu_forward(x)
        if a.dropout:
            x, dropout = L.dropout_forward(x, a.dropout, rng, training)
        logits, out = L.affine_forward(x, p["fc2_w"], p["fc2_b"])
        return logits, HeadCache(gap, hidden, hidden_relu, dropout, out)

    # ----------------------------------------------------------------------- backward

    @kernel_threads()
    def backward(self, dlogits, caches, need_dx=False):
        """dlogits: (N, num_classes) -> (grads with the keys of ``params``, dx (N, C, H, W)).

        dx, the gradient with respect to the images, is computed only when
        ``need_dx`` (saliency); otherwise it is None and its work is skipped.
        """
        grads = {}
        d = self._head_backward(dlogits, caches.head, grads)
        for k in range(len(caches.convs), 0, -1):
            d = self._conv_layer_backward(k, d, caches.convs[k - 1], caches.batchnorm, grads,
                                          need_dx=need_dx or k > 1)
        return grads, d

    def _head_backward(self, dlogits, head, grads):
        """From the logits back to the last conv layer's (pooled, rectified) output."""
        L, a = self.layers, self.arch
        d, grads["fc2_w"], grads["fc2_b"] = L.affine_backward(dlogits, head.out)
        if a.dropout:
            d = L.dropout_backward(d, head.dropout)
        if a.hidden:
            d = L.relu_backward(d, head.hidden_relu)
            d, grads["fc1_w"], grads["fc1_b"] = L.affine_backward(d, head.hidden)
        if a.head == "gap":
            d = L.global_avgpool_backward(d, head.gap)
        return d

    def _activation_backward(self, k, d, cache):
        """Back through conv layer k's ReLU (and pooling): to its conv or batch-norm output."""
        if self.arch.pools(k):
            return self.layers.maxpool_relu_backward(d, cache.activation)
        return self.layers.relu_backward(d, cache.activation)

    def _conv_layer_backward(self, k, d, cache, norm, grads, need_dx):
        """Back through conv layer k: its activation, batch norm (with the pass's ``norm``) and
        conv; its parameters' gradients go into ``grads`` -> the gradient of its input."""
        d = self._activation_backward(k, d, cache)
        if self.arch.batchnorm:
            d, grads[f"bn{k}_gamma"], grads[f"bn{k}_beta"] = norm.backward(d, cache.norm)
        d, grads[f"conv{k}_w"], db = self.layers.conv2d_backward(d, cache.conv, need_dx=need_dx)
        if f"conv{k}_b" in self.params:
            grads[f"conv{k}_b"] = db
        return d

    # ----------------------------------------------------------------------- uses

    def logit_loss(self, logits, y, class_weights=None):
        """The training loss of ``logits`` (N, num_classes) against labels y (N,): softmax
        cross-entropy, class-weighted -> (loss, dlogits). An empty batch has loss 0 and no
        gradient (a part of a batch split between processes may be empty)."""
        if len(logits) == 0:
            return 0.0, np.zeros_like(logits)
        return self.layers.softmax_cross_entropy(logits, y, class_weights)

    @kernel_threads()
    def loss(self, x, y, class_weights=None, rng=None, batchnorm=None, scale=1.0):
        """Training mode: the batch's loss and its gradients -> (loss, grads), both times
        ``scale`` (a part of a batch split between processes counts by its share of the batch).

        Updates the batch-norm running averages; dropout draws from ``rng``; ``batchnorm`` as in
        ``forward``."""
        logits, caches = self.forward(x, training=True, rng=rng, batchnorm=batchnorm)
        loss, dlogits = self.logit_loss(logits, y, class_weights)
        if scale != 1:
            dlogits *= dlogits.dtype.type(scale)
        grads, _ = self.backward(dlogits, caches)
        return float(loss) * scale, grads

    @kernel_threads()
    def last_conv_gradient(self, x, direction):
        """What Grad-CAM needs: the last conv layer's activations and the gradient there.

        Evaluation mode. x: (N, C, H, W), direction: (num_classes,) -> (A = ReLU(last conv (or
        batch-norm) output) (N, F, h, w), d(logits @ direction) / d(that output, before the
        ReLU) (N, F, h, w), logits (N, num_classes)). With direction (-1, 1) the
        differentiated score is the log-odds of class 1.
        """
        maps = []
        logits, caches = self.forward(x, feature_maps=maps)
        dlogits = np.broadcast_to(np.asarray(direction, dtype=logits.dtype), logits.shape).copy()
        d = self._head_backward(dlogits, caches.head, {})
        d = self._activation_backward(len(caches.convs), d, caches.convs[-1])
        return maps[-1], d, logits

    @kernel_threads()
    def predict_logits(self, x, batch_size=32):
        """Evaluation mode: logits (N, num_classes) in batches, the last partial batch included."""
        parts = [self.forward(x[i:i + batch_size])[0] for i in range(0, len(x), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.arch.num_classes), self.dtype)

    @kernel_threads()
    def logits_and_features(self, x, batch_size=32):
        """Evaluation mode, in batches -> (logits (N, num_classes), {name: (N, D) features}): the
        network's summaries of each image. "head": what the last affine layer reads (the hidden
        layer's ReLU output; with no hidden layer, the last block flattened or averaged); "conv1",
        "conv2", ...: each conv layer's ReLU maps averaged over each quarter of the image (the
        2x2 quadrants), channel by channel, (N, 4 F_k): what it found, and roughly where."""
        logits, features = [], []
        for i in range(0, len(x), batch_size):
            maps = []
            out, caches = self.forward(x[i:i + batch_size], feature_maps=maps)
            seen = caches.head.out.x  # the last affine layer's input (dropout passes all in evaluation)
            logits.append(out)
            features.append({"head": seen.reshape(len(seen), -1),
                             **{f"conv{k + 1}": quadrant_means(m) for k, m in enumerate(maps)}})
        if not logits:
            x = np.zeros((1, *self.arch.input_shape), self.dtype)  # the features' sizes, of nothing
            empty = self.logits_and_features(x)
            return empty[0][:0], {name: f[:0] for name, f in empty[1].items()}
        return np.concatenate(logits), {name: np.concatenate([f[name] for f in features]) for name in features[0]}

    def predict_proba(self, x, batch_size=32):
        """Evaluation mode: class probabilities (N, num_classes), float64, in batches."""
        return softmax(self.predict_logits(x, batch_size).astype(np.float64))

    @kernel_threads()
    def input_gradient(self, x, target_class):
        """d logit[target_class] / d x for each image, in evaluation mode: saliency.
        x: (N, C, H, W) -> (N, C, H, W)."""
        logits, caches = self.forward(x)
        dlogits = np.zeros_like(logits)
        dlogits[:, target_class] = 1
        _, dx = self.backward(dlogits, caches, need_dx=True)
        return dx


def quadrant_means(maps):
    """(N, F, H, W) maps -> (N, 4 F): each channel's mean over each quadrant (top-left, top-right,
    bottom-left, bottom-right; the middle row or column of an odd side goes to the second half)."""
    h, w = maps.shape[2] // 2, maps.shape[3] // 2
    parts = [maps[:, :, rows, cols].mean(axis=(2, 3), dtype=np.float64)
             for rows in (slice(0, max(h, 1)), slice(h, None)) for cols in (slice(0, max(w, 1)), slice(w, None))]
    return np.stack(parts, axis=2).reshape(len(maps), -1).astype(maps.dtype)


def softmax(logits):
    """Row-wise softmax of (N, K) logits, in their dtype; the row max is subtracted first."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def simple_convnet(input_shape=(1, 28, 28), filters=30, kernel=5, stride=1, hidden=100,
                   num_classes=2, impl="fast", seed=0, dtype=np.float32):
    """The classic conv - ReLU - pool(2) - affine - ReLU - affine network, as a ConvNet. Its one
    conv is the stem: ``kernel`` x ``kernel`` with ``stride``, padded as ``conv_shape`` says."""
    arch = Architecture(input_shape=tuple(input_shape), channels=(filters,), stem_kernel=kernel,
                        stem_stride=stride, pool=2, hidden=hidden, num_classes=num_classes,
                        convs_per_block=1, batchnorm=False, head="flatten", dropout=0.0)
    return ConvNet(arch, impl=impl, seed=seed, dtype=dtype)
