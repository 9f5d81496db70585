"""Fit the typicality model of a saved model and store it in the model file, as a run does at its end.

    python -m studies.attach_typicality --model runs/RUN            # the run's model.npz, in place
    python -m studies.attach_typicality --model M.npz --seed 0      # a file without its run directory

For a model made before its file kept a typicality model (or with an older one): its networks
see the training split again, and each fits its Gaussians on the X-rays it trained on (a K-fold
ensemble: network k on every fold but k, the folds drawn from the run's seed as the run drew
them; one model: the training split less the validation carved out of it) and scales and
thresholds them on those it did not (fold k, or the validation split), exactly as the trainer
does (``fast.scoring.typicality``). Everything else in the file stays as it was. The networks are
not changed: a model's answers are the same before and after.
"""
import argparse
import dataclasses
import sys

from fast.data.folders import resolve_data_root
from fast.data.pixels import Inputs
from fast.data.splits import load_splits, patient_folds
from fast.inference import member_features, read_classifier, save_classifier
from fast.runs import RunDir
from fast.scoring import typicality
from fast.scoring.held_out import features_apart
from fast.training.config import TrainConfig
from fast.training.distributed import Group
from studies import run


def fit_for(members, record, root, config, cache_dir):
    """The typicality model of ``members`` fitted on the training split as ``config`` split it."""
    size = record.architecture.input_shape[1]
    if len(members) > 1:
        splits, _ = load_splits(root, ("train",), size, seed=config.seed, val_fraction=0.0, limit=config.limit,
                                cache_dir=cache_dir, progress=False)
        pixels, y, paths = splits["train"]
        x = Inputs(pixels, record.mean, record.std, record.normalise)
        folds = patient_folds(paths, y, len(members), config.seed)
        trained_on, unseen = zip(*(features_apart(member, x, folds == k, Group()) for k, member in enumerate(members)))
        return typicality.fit(list(trained_on), list(unseen))
    splits, _ = load_splits(root, ("train", "val"), size, seed=config.seed, val_fraction=config.val_fraction,
                            limit=config.limit, cache_dir=cache_dir, progress=False)
    (member,) = members
    inputs = {split: Inputs(splits[split][0], record.mean, record.std, record.normalise) for split in splits}
    return typicality.fit([member_features(member, inputs["train"])], [member_features(member, inputs["val"])])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m studies.attach_typicality", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--model", required=True, help="a run directory or a model file (rewritten in place)")
    parser.add_argument("--seed", type=int, default=None, help="the run's seed (default: its config.json's)")
    parser.add_argument("--data", default=None, help="data folder (default: as the trainer finds it)")
    parser.add_argument("--cache-dir", default=".cache")
    args = parser.parse_args(argv)

    run = RunDir(args.model)
    path = run.model if run.path.is_dir() else run.path
    stored = RunDir(path.parent).read_config()
    config = TrainConfig.from_dict(stored) if stored else TrainConfig()
    if args.seed is not None:
        config = dataclasses.replace(config, seed=args.seed)
    members, record = read_classifier(path)
    fitted = fit_for(members, record, resolve_data_root(args.data), config, args.cache_dir)
    save_classifier(path, members, dataclasses.replace(record, typicality=fitted))
    print(f"{path}: typicality threshold {fitted.threshold:.4f}, {fitted.held_out_rate:.1%} of the held-out "
          f"training X-rays above it (seed {config.seed}, {len(members)} network(s))")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
