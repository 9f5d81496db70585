"""All training defaults in one place: a frozen dataclass whose fields become the CLI flags.

The network's settings (input size, stem, blocks, head, regularisation) default to the default
network's own (``fast.nn.model.Architecture``), and the choice of images (seed, validation share)
to ``fast.data.splits``'s; the configuration builds the network's architecture
(``TrainConfig.architecture``).
"""
import argparse
import dataclasses
from dataclasses import dataclass, field

from fast.data.splits import DEFAULT_SEED, DEFAULT_VAL_FRACTION, carved_fraction
from fast.nn.model import Architecture
from fast.recorded import recorded


def _number(convert, accepts, requirement, name):
    """An argparse type: ``convert(text)``, refused with "must be <requirement>" unless
    ``accepts`` it. ``name`` is what argparse calls it when ``convert`` itself fails."""
    def parse(text):
        value = convert(text)
        if value != value or not accepts(value):  # value != value: NaN
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text}")
        return value
    parse.__name__ = name
    return parse


_positive_int = _number(int, lambda v: v >= 1, "a whole number >= 1", "whole number")
_non_negative_int = _number(int, lambda v: v >= 0, "a whole number >= 0", "whole number")
_image_size = _number(int, lambda v: v >= 16, "at least 16 pixels", "whole number")
_positive_float = _number(float, lambda v: 0 < v < float("inf"), "a positive number", "number")
_non_negative_float = _number(float, lambda v: 0 <= v < float("inf"), "a number >= 0", "number")
_fraction = _number(float, lambda v: 0 < v < 1, "strictly between 0 and 1", "number")
_probability = _number(float, lambda v: 0 <= v < 1, "in [0, 1)", "number")
_fraction_or_one = _number(float, lambda v: 0 < v <= 1, "in (0, 1]", "number")


_area = _number(float, lambda v: 0 < v <= 1, "in (0, 1] or none", "number or none")
_at_least_one = _number(float, lambda v: v >= 1, "a number >= 1", "number")


def _area_or_none(text):
    """--crop-area: a share of the area in (0, 1], or "none"."""
    return None if text.strip().lower() == "none" else _area(text)


_area_or_none.__name__ = "number or none"  # argparse's word for it in "invalid ... value"


def _channels(text):
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"channel counts must be >= 1, got {text!r}")
    return values


def _opt(default, help, type=None, choices=None):
    return field(default=default, metadata={"help": help, "type": type, "choices": choices})


@dataclass(frozen=True)
class TrainConfig:
    """The trainer's settings. ``python -m fast.train`` with no flags uses exactly these."""
    data: str = _opt(None, "data root holding train/ and test/ (default: $XRAY_DATA, else data/chest_xray)")
    out: str = _opt(None, "run directory for config, history, model and metrics (default: runs/<timestamp>)")
    impl: str = _opt("fast", "layer implementation: fast (im2col, float32) or reference (loops, float64, slow)",
                     choices=("fast", "reference"))
    image_size: int = _opt(Architecture.input_shape[-1], "images are resized to SIZE x SIZE pixels (the data's own size is 224; "
                           "with the default stem the network reads them as 4x4 patches)",
                           type=_image_size)
    batch_size: int = _opt(32, "mini-batch size", type=_positive_int)
    epochs: int = _opt(11, "epochs of training (of each fold model; one model may stop early)",
                       type=_positive_int)
    lr: float = _opt(1e-3, "initial learning rate", type=_positive_float)
    optimizer: str = _opt("adam", "update rule", choices=("sgd", "momentum", "adam"))
    momentum: float = _opt(0.9, "momentum coefficient (momentum optimizer)", type=_fraction)
    weight_decay: float = _opt(1e-4, "decoupled weight decay on weights (not biases), per unit of lr",
                               type=_non_negative_float)
    schedule: str = _opt("cosine", "learning-rate schedule over the epochs", choices=("cosine", "constant", "step"))
    patience: int = _opt(8, "stop after this many epochs without a better validation ROC AUC "
                         "(one model only; fold models train every epoch)", type=_positive_int)
    val_fraction: float = _opt(DEFAULT_VAL_FRACTION, "share of the training patients held out for validation", type=_fraction)
    class_weights: str = _opt("balanced", "loss weights per class: balanced (inverse frequency) or none",
                              choices=("balanced", "none"))
    normalise: str = _opt("image", "how each image's grey values are scaled for the network: with the "
                          "training pixels' mean and std (dataset), with its own (image), or "
                          "histogram-equalised, then with its own (equalise)",
                          choices=("dataset", "image", "equalise"))
    augment: bool = _opt(True, "random geometry of training images (rotations up to 10 degrees, the "
                         "framing of --crop-area or small zooms, shifts) and their contrast and brightness")
    crop_area: float = _opt(0.5, "with --augment, each training image is cropped to a random window "
                            "keeping this share of its area up to all of it, or zoomed out as far, "
                            "with an aspect jitter up to 4:3, so how tightly an X-ray is framed says "
                            "nothing of its class; none: zooms of 0.9 to 1.1 of each side instead",
                            type=_area_or_none)
    reframe: float = _opt(1.4, "with --crop-area, NORMAL training X-rays are framed tighter: their "
                          "random windows keep 1/R of the area they would otherwise keep, so that "
                          "they are framed as tightly as the PNEUMONIA ones, which the training split "
                          "frames tighter (1: no difference between the classes; without --crop-area "
                          "there are no random windows to reframe)",
                          type=_at_least_one)
    tta: bool = _opt(True, "test-time augmentation: every final prediction (out-of-fold, test, and the "
                     "saved model's) is the mean over the image and the image zoomed by 0.95 and 1.05")
    acquisition: bool = _opt(False, "augmentation also blurs or sharpens each training image and adds "
                             "noise, by random amounts (part of --augment)")
    cues: bool = _opt(True, "augmentation also shows every training X-ray, whatever its class, with "
                      "random acquisition cues on its grey values before normalisation: zoom-outs "
                      "with black, replicated or reflected borders, exposure (gamma), blur and "
                      "sharpening, lower resolution, a laterality letter, electrode discs, an erased "
                      "corner, noise, JPEG (part of --augment: none with --no-augment; "
                      "fast.data.augment.acquisition_cues)")
    match_detail: float = _opt(0.0, "with --augment, NORMAL training X-rays are blurred by a Gaussian of "
                               "this many pixels (per 224 of the side) so that they carry as much fine "
                               "detail as the PNEUMONIA ones, which the training split's smaller "
                               "originals made blurrier (0.6 matches their means; 0: off)",
                               type=_non_negative_float)
    stem_stride: int = _opt(Architecture.stem_stride, "stride of the first conv (the stem): S takes in an image S times the "
                            "side at about the cost of the image at 1/S of it (1 and --stem-kernel 3: "
                            "a plain first conv, for small images)", type=_positive_int)
    stem_kernel: int = _opt(Architecture.stem_kernel, "kernel side of the first conv: 4 with --stem-stride 4 reads the image as "
                            "non-overlapping 4x4 patches; 3 with --stem-stride 2, overlapping windows",
                            type=_positive_int)
    channels: tuple = _opt(Architecture.channels, "filters of each conv block, comma-separated",
                           type=_channels)
    convs_per_block: int = _opt(Architecture.convs_per_block,
                                "3x3 convs in each block (the block's last one is pooled)",
                                type=_positive_int)
    batchnorm: bool = _opt(Architecture.batchnorm, "batch normalisation after each conv")
    head: str = _opt(Architecture.head, "what the classifier sees of the last block: its maps flattened, or "
                     "each channel's global average (gap)", choices=("flatten", "gap"))
    hidden: int = _opt(Architecture.hidden, "units of the hidden affine layer (0: none)", type=_non_negative_int)
    dropout: float = _opt(Architecture.dropout, "dropout probability before the last affine layer",
                          type=_probability)
    seed: int = _opt(DEFAULT_SEED, "seed for every random choice (init, split, shuffling, augmentation)",
                     type=_non_negative_int)
    folds: int = _opt(5, "K >= 2: K models on patient-grouped folds of the training split, their "
                      "out-of-fold predictions choosing calibration and threshold, saved as their "
                      "average; 1: one model, validation carved out by patient", type=_positive_int)
    calibration: str = _opt("platt", "how P(pneumonia) is calibrated on held-out predictions: "
                            "temperature (one scale on the log-odds) or platt (a scale and a bias)",
                            choices=("temperature", "platt"))
    threshold_rule: str = _opt("prevalence", "how the threshold is chosen on the calibrated held-out "
                               "(validation or out-of-fold) probabilities: youden, the one of their "
                               "highest sensitivity + specificity; prevalence, their share of PNEUMONIA, "
                               "where sensitivity + specificity peaks in expectation for calibrated "
                               "probabilities, free of the noise of picking a maximum",
                               choices=("youden", "prevalence"))
    target_sensitivity: float = _opt(None, "choose the threshold as the highest one whose held-out "
                                     "(validation or out-of-fold) sensitivity is at least this "
                                     "(default: --threshold-rule)",
                                     type=_fraction_or_one)
    limit: int = _opt(None, "use at most this many train and this many test images (quick runs)",
                      type=_positive_int)
    cache_dir: str = _opt(".cache", "where decoded, resized images are cached")

    def to_dict(self):
        return dataclasses.asdict(self)

    def architecture(self):
        """The network these settings train."""
        return Architecture(input_shape=(1, self.image_size, self.image_size),
                            channels=tuple(self.channels), hidden=self.hidden,
                            convs_per_block=self.convs_per_block, batchnorm=self.batchnorm,
                            head=self.head, dropout=self.dropout, stem_stride=self.stem_stride,
                            stem_kernel=self.stem_kernel)

    @property
    def carved_fraction(self):
        """The share of the training patients carved out for validation (``carved_fraction``)."""
        return carved_fraction(self.folds, self.val_fraction)

    def conflict(self):
        """What is wrong with this combination of settings, in words, or None."""
        if (self.threshold_rule == "prevalence" and self.calibration == "temperature"
                and self.target_sensitivity is None):
            return ("--threshold-rule prevalence needs calibrated probabilities, which --calibration "
                    "temperature does not give (it keeps the class weights' tilt towards NORMAL); "
                    "use --calibration platt, or --threshold-rule youden")
        side = self.image_size // self.stem_stride // 2 ** len(self.channels)
        if side < 1:
            return (f"--image-size {self.image_size} with --stem-stride {self.stem_stride} and "
                    f"{len(self.channels)} pooled blocks leaves no pixel for the last block; use a "
                    "larger --image-size, a smaller --stem-stride or fewer --channels")
        if self.acquisition and not self.augment:
            return "--acquisition is part of the augmentation; it needs --augment"
        if self.match_detail and not self.augment:
            return "--match-detail is part of the augmentation; it needs --augment"
        return None

    @classmethod
    def from_dict(cls, values):
        """The configuration stored in a run's config.json. Settings it lacks were added after
        the run was made, and get the behaviour the run was made with (``fast.recorded``), not
        today's defaults, so a resumed run goes on as it began."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}")
        values = recorded("run", values)
        if values.get("channels") is not None:
            values["channels"] = tuple(values["channels"])
        return cls(**values)


class _DefaultsHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Adds "(default: X)" to a flag's help, unless the help already says what the default is."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, argparse.SUPPRESS):
            return text
        default = action.default
        if isinstance(default, tuple):
            default = ",".join(map(str, default))
        elif isinstance(default, bool):
            default = "on" if default else "off"
        return f"{text} (default: {default})"


def build_parser(prog, description, config_cls=TrainConfig):
    """An argparse parser with one flag per config field, its default and help shown."""
    parser = argparse.ArgumentParser(prog=prog, description=description, allow_abbrev=False,
                                     formatter_class=_DefaultsHelpFormatter)
    for f in dataclasses.fields(config_cls):
        flag = "--" + f.name.replace("_", "-")
        if f.type is bool or isinstance(f.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default,
                                help=f.metadata["help"])
            continue
        kwargs = {"default": f.default, "help": f.metadata["help"]}
        if f.metadata.get("type") is not None:
            kwargs["type"] = f.metadata["type"]
        if f.metadata.get("choices") is not None:
            kwargs["choices"] = f.metadata["choices"]
        if f.name == "channels":
            kwargs["metavar"] = "C1,C2,..."
        parser.add_argument(flag, **kwargs)
    return parser
