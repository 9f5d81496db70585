"""Model files: one network, or an ensemble of networks of one architecture, in an ``.npz`` of plain
arrays and strings, so that loading never needs pickle (which could run code from the file).

The file holds each member's params and buffers, the architecture record
(``Architecture.to_json``), a JSON record of whatever the caller adds (``metadata``: what a
trained classifier needs besides its weights, ``fast.inference.ModelRecord``) and the arrays that
record holds (``record/NAME``: the typicality model, the held-out predictions).
"""
import json
import os

import numpy as np

from fast.files import atomic_savez
from fast.nn.model import Architecture, ConvNet

FORMAT_VERSION = 2
RECORD = "record/"  # the prefix of the record's arrays


class ModelFileError(Exception):
    """A model file that is missing, corrupt, or not a model of this project."""


def save_model(path, models, metadata=None, arrays=None):
    """Write one model, or an ensemble (a list of models of one architecture, used as their
    mean probability), with its architecture, JSON ``metadata`` (normalisation, threshold,
    ...) and the record's ``arrays`` ({name: array}) to ``.npz``: plain arrays and strings only,
    so loading never needs pickle.

    Member k's arrays are stored as ``member{k}/param/NAME`` and ``member{k}/buffer/NAME``, the
    record's as ``record/NAME``.
    """
    members = models if isinstance(models, (list, tuple)) else [models]
    if not members or any(m.arch != members[0].arch for m in members):
        raise ValueError("save_model needs one model or a non-empty list of one architecture")
    stored = {f"{RECORD}{name}": np.asarray(value) for name, value in (arrays or {}).items()}
    for k, model in enumerate(members):
        stored.update({f"member{k}/param/{n}": v for n, v in model.params.items()})
        stored.update({f"member{k}/buffer/{n}": v for n, v in model.buffers.items()})
    stored["architecture"] = np.array(members[0].arch.to_json())
    stored["metadata"] = np.array(json.dumps(metadata or {}))
    stored["format_version"] = np.array(FORMAT_VERSION)
    atomic_savez(path, **stored)


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
    """Read a file written by ``save_model`` -> (list of models, metadata dict); ``load_model_file``
    gives the record's arrays too.

    The weights keep the dtype they were saved in unless ``dtype`` is given. Files of format
    1 (one model, arrays under ``param/``) are read too. Raises ModelFileError for a missing,
    corrupt or foreign file, or one that would need pickle (never allowed: loading must not
    run code from the file).
    """
    return load_model_file(path, impl, dtype)[:2]


def load_model_file(path, impl="fast", dtype=None):
    """``load_models`` -> (list of models, metadata dict, the record's arrays {name: array},
    empty for a file that stores none)."""
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
    arrays = {k[len(RECORD):]: v for k, v in contents.items() if k.startswith(RECORD)}
    return models, metadata, arrays


def load_model(path, impl="fast", dtype=None):
    """``load_models`` for a file holding one model -> (model, metadata dict)."""
    models, metadata = load_models(path, impl, dtype)
    if len(models) != 1:
        raise ModelFileError(f"{path}: holds an ensemble of {len(models)} models; use load_models")
    return models[0], metadata
