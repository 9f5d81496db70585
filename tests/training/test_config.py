"""The training settings (``fast.training.config``): one dataclass, its fields the flags, bad values
and conflicting settings refused, a stored configuration read as the run was made."""
import pytest

from fast.nn.model import Architecture
from fast.train import parse_args
from fast.training.config import TrainConfig, carved_fraction
from fast.training.loop import TrainingError
from fast.training.trainer import train

from helpers import quiet


@pytest.mark.parametrize("argv, complaint", [
    (["--epochs", "0"], "--epochs"),
    (["--image-size", "7"], "--image-size"),
    (["--impl", "torch"], "--impl"),
    (["--lr", "-1"], "--lr"),
    (["--optimizer", "rmsprop"], "--optimizer"),
    (["--val-fraction", "1.5"], "--val-fraction"),
    (["--batch-size", "zero"], "--batch-size"),
    (["--crop-area", "0"], "--crop-area: must be in (0, 1] or none, got 0"),
    (["--crop-area", "abc"], "--crop-area: invalid number or none value: 'abc'"),
    (["--reframe", "0.5"], "--reframe: must be a number >= 1, got 0.5"),
])
def test_cli_refuses_bad_values(argv, complaint, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert complaint in capsys.readouterr().err


def test_cli_defaults_come_from_the_config_dataclass():
    config, resume = parse_args([])
    assert config == TrainConfig() and resume is None
    config, _ = parse_args(["--channels", "4,8", "--no-augment", "--impl", "reference"])
    assert config.channels == (4, 8) and config.augment is False and config.impl == "reference"


@pytest.mark.parametrize("argv, complaint", [
    (["--calibration", "temperature"], "--threshold-rule prevalence needs calibrated probabilities"),
    (["--acquisition", "--no-augment"], "--acquisition is part of the augmentation"),
    (["--image-size", "16"], "--image-size 16 with --stem-stride 4 and 3 pooled blocks leaves no pixel"),
])
def test_conflicting_settings_are_refused_in_one_line(argv, complaint, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert complaint in capsys.readouterr().err
    # each half alone is fine, and so is the pair that fits
    parse_args(["--calibration", "temperature", "--threshold-rule", "youden"])
    parse_args(["--calibration", "temperature", "--target-sensitivity", "0.95"])
    with pytest.raises(TrainingError, match="needs calibrated"):  # the API says it too
        train(TrainConfig(calibration="temperature", out=str(tmp_path / "run")), log=quiet, progress_bars=False)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_a_stored_configuration_without_a_newer_setting_keeps_what_the_run_did():
    """A run made before --normalise, --tta and --threshold-rule existed stored none of them;
    resumed, it must go on as it began, not switch to today's defaults."""
    newer = ("normalise", "tta", "threshold_rule", "acquisition", "crop_area", "stem_stride",
             "stem_kernel", "reframe")
    old = {k: v for k, v in TrainConfig().to_dict().items() if k not in newer}
    resumed = TrainConfig.from_dict(old)
    assert tuple(getattr(resumed, k) for k in newer) == \
        ("dataset", False, "youden", False, None, 1, 3, 1.0)
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()  # stored ones are kept


def test_the_config_builds_the_network_it_trains():
    config = TrainConfig(image_size=128, stem_stride=2, stem_kernel=3, channels=(4, 8), hidden=0, dropout=0.1)
    assert config.architecture() == Architecture(input_shape=(1, 128, 128), channels=(4, 8), hidden=0,
                                                 dropout=0.1, stem_stride=2, stem_kernel=3)
    # the training default is the default network: every field of the one from the other
    assert TrainConfig().architecture() == Architecture()


def test_k_fold_runs_carve_no_validation():
    assert TrainConfig(folds=1, val_fraction=0.2).carved_fraction == 0.2
    assert TrainConfig(folds=5, val_fraction=0.2).carved_fraction == 0.0
    assert carved_fraction(2, 0.1) == 0.0 and carved_fraction(1, 0.1) == 0.1


def test_crop_area_none_gives_the_small_zooms_of_earlier_versions():
    assert parse_args(["--crop-area", "none"])[0].crop_area is None
    assert parse_args(["--crop-area", "1"])[0].crop_area == 1.0
