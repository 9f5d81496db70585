"""Model files: networks and ensembles round-trip bit for bit without pickle; older records and
formats still load; anything else is refused with a ModelFileError naming the file."""
import json

import numpy as np
import pytest

from fast.nn.model import Architecture, ConvNet
from fast.nn.model_file import ModelFileError, load_model, load_models, save_model

from helpers import small_architecture

SMALL = small_architecture(input_shape=(1, 9, 8), channels=(3, 4), hidden=5, batchnorm=False, dropout=0.0)
NORMED = small_architecture(input_shape=(1, 8, 8), channels=(3, 4), convs_per_block=2, batchnorm=True,
                      head="gap", dropout=0.25, hidden=0)
NORMED_HIDDEN = small_architecture(input_shape=(1, 8, 6), channels=(3,), batchnorm=True, head="flatten",
                             dropout=0.4, hidden=5)


def _with_running_statistics(arch, seed):
    """A float64 model whose batch-norm running statistics are away from their initial 0 and 1."""
    model = ConvNet(arch, seed=seed, dtype=np.float64)
    rng = np.random.default_rng(seed + 100)
    for k in model.buffers:
        model.buffers[k][...] = rng.uniform(0.5, 1.5, model.buffers[k].shape)
    return model


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saved_model_loads_back_bit_for_bit(tmp_path, dtype):
    model = ConvNet(SMALL, seed=9, dtype=dtype)
    meta = {"threshold": 0.37, "mean": 0.5, "std": 0.25, "class_names": ["NORMAL", "PNEUMONIA"]}
    save_model(tmp_path / "m.npz", model, meta)
    loaded, loaded_meta = load_model(tmp_path / "m.npz")
    assert loaded.arch == model.arch
    assert loaded_meta == meta
    for k in model.params:
        assert loaded.params[k].dtype == model.params[k].dtype
        assert np.array_equal(loaded.params[k], model.params[k])
    x = np.random.default_rng(0).normal(size=(2, *SMALL.input_shape))
    assert np.array_equal(loaded.forward(x.astype(dtype))[0], model.forward(x.astype(dtype))[0])
    assert not list(tmp_path.glob(".tmp-*")), "the atomic write left a temporary file"


def test_load_refuses_missing_corrupt_foreign_and_pickled_files(tmp_path):
    with pytest.raises(ModelFileError, match="no such model file"):
        load_model(tmp_path / "absent.npz")
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(ModelFileError, match="corrupt.npz"):
        load_model(tmp_path / "corrupt.npz")
    np.savez(tmp_path / "pickled.npz", architecture=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(ModelFileError, match="pickle"):
        load_model(tmp_path / "pickled.npz")
    np.savez(tmp_path / "foreign.npz", weights=np.zeros(3))
    with pytest.raises(ModelFileError, match="not a model"):
        load_model(tmp_path / "foreign.npz")
    # Same file layout, but the weights belong to another architecture.
    save_model(tmp_path / "small.npz", ConvNet(SMALL))
    data = dict(np.load(tmp_path / "small.npz"))
    data["architecture"] = np.array(small_architecture(input_shape=(1, 9, 8), channels=(3, 5)).to_json())
    np.savez(tmp_path / "mismatch.npz", **data)
    with pytest.raises(ModelFileError, match="conv2_w"):
        load_model(tmp_path / "mismatch.npz")


def test_an_architecture_record_from_before_the_stem_reads_as_stride_1():
    record = json.loads(small_architecture(input_shape=(1, 9, 8), channels=(3,)).to_json())
    del record["stem_stride"], record["stem_kernel"]
    arch = Architecture.from_json(json.dumps(record))
    assert (arch.stem_stride, arch.stem_kernel) == (1, 3)


def test_normalised_model_file_round_trips_params_buffers_and_architecture(tmp_path):
    fast_model = _with_running_statistics(NORMED_HIDDEN, seed=4)
    save_model(tmp_path / "m.npz", fast_model, {"threshold": 0.5})
    loaded, meta = load_model(tmp_path / "m.npz")
    assert loaded.arch == NORMED_HIDDEN and meta == {"threshold": 0.5}
    for k, v in fast_model.state().items():
        assert np.array_equal(loaded.state()[k], v), k
    with np.load(tmp_path / "m.npz", allow_pickle=False) as npz:
        assert {k for k in npz.files if "/buffer/" in k} == {
            "member0/buffer/bn1_mean", "member0/buffer/bn1_var"}


def test_an_ensemble_file_round_trips_every_member_and_load_model_refuses_it(tmp_path):
    members = [ConvNet(NORMED, seed=s, dtype=np.float64) for s in range(3)]
    members[1].buffers["bn2_var"][...] = 2.5
    save_model(tmp_path / "e.npz", members, {"threshold": 0.4})
    loaded, meta = load_models(tmp_path / "e.npz")
    assert len(loaded) == 3 and meta == {"threshold": 0.4}
    for got, want in zip(loaded, members):
        for k, v in want.state().items():
            assert np.array_equal(got.state()[k], v), k
    with pytest.raises(ModelFileError, match="ensemble of 3"):
        load_model(tmp_path / "e.npz")


def test_a_format_1_file_of_one_model_still_loads(tmp_path):
    model = ConvNet(SMALL, seed=2)
    arrays = {f"param/{k}": v for k, v in model.params.items()}
    # the architecture record as format 1 wrote it: none of the later fields
    old_record = {k: v for k, v in json.loads(SMALL.to_json()).items()
                  if k not in ("convs_per_block", "batchnorm", "head", "dropout")}
    np.savez(tmp_path / "old.npz", architecture=np.array(json.dumps(old_record)),
             metadata=np.array("{}"), format_version=np.array(1), **arrays)
    loaded, _ = load_model(tmp_path / "old.npz")
    assert all(np.array_equal(loaded.params[k], v) for k, v in model.params.items())
