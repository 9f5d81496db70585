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
from fast import distributed
from fast.runtime import kernel_threads
from fast.augment import zoomed
from fast.config import TrainConfig
from fast.files import atomic_savez

IMPLEMENTATIONS = {"fast": fast.layers, "reference": reference.layers}
FORMAT_VERSION = 2


class ModelFileError(Exception):
    """A model file that is missing, corrupt, or not a model of this project."""


@dataclass(frozen=True)
class Architecture:
    """Everything needed to rebuild a network's shapes (weights excluded).

    len(channels) blocks, block b holding ``convs_per_block`` convs of channels[b] filters:
    conv(kernel, stride, pad) [- batch norm] - ReLU, the block's last ReLU after a
    max-pool(pool) (pool 1: no pooling). Then the head: the last block's maps flattened, or
    averaged over each channel (``head="gap"``); [affine(hidden) - ReLU when hidden > 0];
    dropout(p = ``dropout``); affine(num_classes). The first conv is the stem (``conv_shape``).
    The defaults describe a plain 64 px network with the training default's blocks and head; the
    training default itself (224 px, 4x4 patches) is built from ``TrainConfig`` by the trainer.
    """
    input_shape: tuple = (1, 64, 64)
    channels: tuple = TrainConfig.channels
    kernel: int = 3
    stride: int = 1
    pad: int = 1
    pool: int = 2
    hidden: int = TrainConfig.hidden
    num_classes: int = 2
    convs_per_block: int = TrainConfig.convs_per_block
    batchnorm: bool = TrainConfig.batchnorm
    head: str = TrainConfig.head
    dropout: float = TrainConfig.dropout
    # the stem's own defaults are a plain conv, whatever the training default is: an
    # architecture that says nothing of its stem (tests, older files) has an ordinary first conv
    stem_stride: int = 1
    stem_kernel: int = 3

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
        # A record from before these fields existed describes a network without them: read it
        # so, whatever today's defaults are.
        fields = {"convs_per_block": 1, "batchnorm": False, "head": "flatten", "dropout": 0.0,
                  "stem_stride": 1, "stem_kernel": 3, **json.loads(text)}
        fields["input_shape"] = tuple(fields["input_shape"])
        fields["channels"] = tuple(fields["channels"])
        return cls(**fields)


HEADS = ("flatten", "gap")


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
        for k, (f, ends_block) in enumerate(a.convs, start=1):
            kernel, stride, pad = a.conv_shape(k)
            fan_in = c * kernel * kernel
            params[f"conv{k}_w"] = rng.normal(0, np.sqrt(2 / fan_in), (f, c, kernel, kernel))
            if a.batchnorm:  # batch norm subtracts each channel's mean: a conv bias would cancel
                params[f"bn{k}_gamma"] = np.ones(f)
                params[f"bn{k}_beta"] = np.zeros(f)
            else:
                params[f"conv{k}_b"] = np.zeros(f)
            h, w = conv_output_size(h, kernel, stride, pad), conv_output_size(w, kernel, stride, pad)
            if ends_block and a.pool > 1:
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

    @kernel_threads()
    def forward(self, x, training=False, rng=None, feature_maps=None, group=None):
        """x: (N, C, H, W) -> (logits (N, num_classes), caches for ``backward``).

        ``training``: batch norm normalises with the batch's statistics and updates its
        running averages, and dropout draws its mask from ``rng`` (a numpy Generator). In
        evaluation mode (the default) batch norm uses the running averages and dropout passes
        everything. A list passed as ``feature_maps`` receives what each conv layer hands
        on before pooling: ReLU(conv or batch-norm output), (N, F_k, H_k, W_k), for pictures.
        ``group``: the processes a training batch is split between (``distributed.Group``), x
        being this process's part: batch norm then normalises with the whole batch's statistics.
        """
        L, p, a = self.layers, self.params, self.arch
        synced = training and group is not None and group.size > 1
        if x.shape[1:] != tuple(a.input_shape):
            raise ValueError(f"model expects inputs of shape (N, {', '.join(map(str, a.input_shape))}), "
                             f"got {x.shape}")
        if training and a.dropout and rng is None:
            raise ValueError("training mode with dropout needs a random generator (rng)")
        x = x.astype(self.dtype, copy=False)
        caches = {"convs": []}
        for k, (_, ends_block) in enumerate(a.convs, start=1):
            bias = p.get(f"conv{k}_b", self._zero_bias[k - 1])
            _, stride, pad = a.conv_shape(k)
            x, conv_cache = L.conv2d_forward(x, p[f"conv{k}_w"], bias, stride, pad)
            bn_cache = None
            if a.batchnorm:
                normalise = distributed.batchnorm_forward if synced else L.batchnorm_forward
                x, bn_cache = normalise(x, p[f"bn{k}_gamma"], p[f"bn{k}_beta"], self.buffers[f"bn{k}_mean"],
                                        self.buffers[f"bn{k}_var"], group if synced else training)
            if feature_maps is not None:
                feature_maps.append(np.maximum(x, 0))
            # ReLU is monotone, so max-pooling before it gives the same output and
            # the same gradient as after it, on an array pool**2 times smaller.
            pooled = ends_block and a.pool > 1
            if pooled:
                x, act_cache = L.maxpool_relu_forward(x, a.pool)
            else:
                x, act_cache = L.relu_forward(x)
            caches["convs"].append((conv_cache, bn_cache, act_cache, pooled))
        if a.head == "gap":
            x, caches["gap"] = L.global_avgpool_forward(x)
        if a.hidden:
            x, caches["fc1"] = L.affine_forward(x, p["fc1_w"], p["fc1_b"])
            x, caches["relu"] = L.relu_forward(x)
        if a.dropout:
            x, caches["dropout"] = L.dropout_forward(x, a.dropout, rng, training)
        logits, caches["fc2"] = L.affine_forward(x, p["fc2_w"], p["fc2_b"])
        return logits, caches

    @kernel_threads()
    def backward(self, dlogits, caches, need_dx=False):
        """dlogits: (N, num_classes) -> (grads with the keys of ``params``, dx (N, C, H, W)).

        dx, the gradient with respect to the images, is computed only when
        ``need_dx`` (saliency); otherwise it is None and its work is skipped.
        """
        grads = {}
        d = self._backward_head(dlogits, caches, grads)
        for k in range(len(caches["convs"]), 0, -1):
            d = self._backward_to_conv(k, d, caches, grads)
            d, grads[f"conv{k}_w"], db = self.layers.conv2d_backward(
                d, caches["convs"][k - 1][0], need_dx=need_dx or k > 1)
            if f"conv{k}_b" in self.params:
                grads[f"conv{k}_b"] = db
        return grads, d

    def _backward_head(self, dlogits, caches, grads):
        """From the logits back to the last conv layer's (pooled, rectified) output."""
        L = self.layers
        d, grads["fc2_w"], grads["fc2_b"] = L.affine_backward(dlogits, caches["fc2"])
        if "dropout" in caches:
            d = L.dropout_backward(d, caches["dropout"])
        if "fc1" in caches:
            d = L.relu_backward(d, caches["relu"])
            d, grads["fc1_w"], grads["fc1_b"] = L.affine_backward(d, caches["fc1"])
        if "gap" in caches:
            d = L.global_avgpool_backward(d, caches["gap"])
        return d

    def _backward_to_activation(self, k, d, caches):
        """Back through conv layer k's ReLU (and pooling): to its conv or batch-norm output."""
        _, _, act_cache, pooled = caches["convs"][k - 1]
        if pooled:
            return self.layers.maxpool_relu_backward(d, act_cache)
        return self.layers.relu_backward(d, act_cache)

    def _backward_to_conv(self, k, d, caches, grads):
        """Back through conv layer k's ReLU, pooling and batch norm: to its conv's output."""
        d = self._backward_to_activation(k, d, caches)
        bn_cache = caches["convs"][k - 1][1]
        if bn_cache is not None:
            synced = isinstance(bn_cache, distributed.SyncBatchNormCache)
            backward = distributed.batchnorm_backward if synced else self.layers.batchnorm_backward
            d, grads[f"bn{k}_gamma"], grads[f"bn{k}_beta"] = backward(d, bn_cache)
        return d

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
        d = self._backward_head(dlogits, caches, {})
        d = self._backward_to_activation(len(caches["convs"]), d, caches)
        return maps[-1], d, logits

    @kernel_threads()
    def loss(self, x, y, class_weights=None, rng=None):
        """Training mode: the batch's softmax cross-entropy and its gradients -> (loss, grads).

        Updates the batch-norm running averages; dropout draws from ``rng``."""
        logits, caches = self.forward(x, training=True, rng=rng)
        loss, dlogits = self.layers.softmax_cross_entropy(logits, y, class_weights)
        grads, _ = self.backward(dlogits, caches)
        return float(loss), grads

    @kernel_threads()
    def predict_logits(self, x, batch_size=32):
        """Evaluation mode: logits (N, num_classes) in batches, the last partial batch included."""
        parts = [self.forward(x[i:i + batch_size])[0] for i in range(0, len(x), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.arch.num_classes), self.dtype)

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


def ensemble_proba(members, x, chunk=256, zooms=(1.0,)):
    """The members' mean P(class 1) on x, evaluation mode, float64 (N,): how an ensemble, or a
    single model (a list of one), scores before calibration. x: (N, C, H, W), or anything that
    slices into such arrays (``data.Inputs``): it is read ``chunk`` images at a time.
    ``zooms``: each image is also seen zoomed by these factors about its centre
    (``augment.zoomed``; 1 is the image as it is), and the mean is over members and views."""
    parts = []
    for i in range(0, len(x), chunk):
        batch = x[i:i + chunk]
        parts.append(np.mean([m.predict_proba(view)[:, 1] for view in (zoomed(batch, z) for z in zooms)
                              for m in members], axis=0))
    return np.concatenate(parts) if parts else np.zeros(0)


def softmax(logits):
    """Row-wise softmax of (N, K) logits, in their dtype; the row max is subtracted first."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def simple_convnet(input_shape=(1, 28, 28), filters=30, kernel=5, pad=0, stride=1, hidden=100,
                   num_classes=2, impl="fast", seed=0, dtype=np.float32):
    """The classic conv - ReLU - pool(2) - affine - ReLU - affine network, as a ConvNet."""
    arch = Architecture(input_shape=tuple(input_shape), channels=(filters,), kernel=kernel,
                        stride=stride, pad=pad, pool=2, hidden=hidden, num_classes=num_classes,
                        convs_per_block=1, batchnorm=False, head="flatten", dropout=0.0)
    return ConvNet(arch, impl=impl, seed=seed, dtype=dtype)


def save_model(path, models, metadata=None):
    """Write one model, or an ensemble (a list of models of one architecture, used as their
    mean probability), with its architecture and JSON ``metadata`` (normalisation, threshold,
    ...) to ``.npz``: plain arrays and strings only, so loading never needs pickle.

    Member k's arrays are stored as ``member{k}/param/NAME`` and ``member{k}/buffer/NAME``.
    """
    members = models if isinstance(models, (list, tuple)) else [models]
    if not members or any(m.arch != members[0].arch for m in members):
        raise ValueError("save_model needs one model or a non-empty list of one architecture")
    arrays = {}
    for k, model in enumerate(members):
        arrays.update({f"member{k}/param/{n}": v for n, v in model.params.items()})
        arrays.update({f"member{k}/buffer/{n}": v for n, v in model.buffers.items()})
    arrays["architecture"] = np.array(members[0].arch.to_json())
    arrays["metadata"] = np.array(json.dumps(metadata or {}))
    arrays["format_version"] = np.array(FORMAT_VERSION)
    atomic_savez(path, **arrays)


def _read_model_file(path):
    """The arrays of a model file, refused (ModelFileError) when missing, corrupt or pickled."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelFileError(f"{path}: no such model file")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":  # every .npz is a zip archive
        raise ModelFileError(f"{path}: not a readable model file (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise ModelFileError(f"{path}: refusing to load, the file needs pickle "
                                 "(it could run code); not a model of this project") from None
        raise ModelFileError(f"{path}: not a readable model file ({e})") from None
    except Exception as e:  # zip/npz corruption surfaces as several exception types
        raise ModelFileError(f"{path}: not a readable model file ({type(e).__name__}: {e})") from None


def load_models(path, impl="fast", dtype=None):
    """Read a file written by ``save_model`` -> (list of models, metadata dict).

    The weights keep the dtype they were saved in unless ``dtype`` is given. Files of format
    1 (one model, arrays under ``param/``) are read too. Raises ModelFileError for a missing,
    corrupt or foreign file, or one that would need pickle (never allowed: loading must not
    run code from the file).
    """
    contents = _read_model_file(path)
    if "architecture" not in contents or "format_version" not in contents:
        raise ModelFileError(f"{path}: not a model of this project (no architecture record)")
    try:
        arch = Architecture.from_json(str(contents["architecture"]))
        metadata = json.loads(str(contents.get("metadata", "{}")))
    except (ValueError, TypeError) as e:
        raise ModelFileError(f"{path}: unreadable architecture record ({e})") from None

    prefixes = sorted({k.split("/")[0] for k in contents if k.startswith("member")},
                      key=lambda m: int(m[len("member"):]) if m[len("member"):].isdigit() else -1)
    prefixes = [p + "/" for p in prefixes] or [""]  # format 1: one model, no member prefix
    models = []
    for prefix in prefixes:
        stored = {k[len(prefix + "param/"):]: v for k, v in contents.items() if k.startswith(prefix + "param/")}
        buffers = {k[len(prefix + "buffer/"):]: v for k, v in contents.items() if k.startswith(prefix + "buffer/")}
        kind = dtype or (next(iter(stored.values())).dtype if stored else np.float32)
        try:
            model = ConvNet(arch, impl=impl, dtype=kind)
        except ValueError as e:
            raise ModelFileError(f"{path}: unusable architecture record ({e})") from None
        for what, found, wanted in (("weights", stored, model.params), ("buffers", buffers, model.buffers)):
            if set(found) != set(wanted):
                raise ModelFileError(f"{path}: {what} {sorted(found)} do not match the architecture's "
                                     f"{sorted(wanted)}")
            for k, v in found.items():
                if v.shape != wanted[k].shape:
                    raise ModelFileError(f"{path}: {k} has shape {v.shape}, the architecture "
                                         f"needs {wanted[k].shape}")
                wanted[k][...] = v
        models.append(model)
    return models, metadata


def load_model(path, impl="fast", dtype=None):
    """``load_models`` for a file holding one model -> (model, metadata dict)."""
    models, metadata = load_models(path, impl, dtype)
    if len(models) != 1:
        raise ModelFileError(f"{path}: holds an ensemble of {len(models)} models; use load_models")
    return models[0], metadata
