"""A training run: one model or K fold models, then calibration, the threshold and the test score.

``train`` opens the run directory (``fast.runs.RunDir``), loads the data set, trains one model
with a validation split carved out by patient, or K models on patient-grouped folds
(``fast.training.loop.fit``), and ``finish`` then chooses the calibration and the decision
threshold on the held-out predictions (the validation split, or with ``--folds`` the
out-of-fold ones), scores the test split once with that model, calibration and threshold, and
writes the model file, the metrics and the predictions. Every held-out and test prediction is
the classifier's own (``fast.inference.ensemble_proba`` over the run's test-time views). What the
held-out images say of the networks besides their scores, the stress battery and the typicality
model, is ``fast.scoring.held_out``'s: the trainer hands it each network. Pictures are the
training command's business (``fast.train``), not the trainer's.

Under ``mpiexec -n N`` the processes form a ``distributed.Group``: each batch and each
evaluation is split between them, and only the lead process (rank 0) reads checkpoints,
writes the run directory and prints; the others receive what it read.
"""
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fast.data.dataset import load_dataset
from fast.data.errors import SkippedImageWarning
from fast.data.folders import resolve_data_root
from fast.data.splits import patient_folds
from fast.files import atomic_savez, atomic_write_text
from fast.inference import IMAGE_ALONE, TEST_TIME_ZOOMS, Calibration, ModelRecord, save_classifier
from fast.runs import RunDir
from fast.scoring import calibration, metrics, stress, typicality
from fast.scoring.held_out import HeldOutStudy, held_out_proba
from fast.training import distributed
from fast.training.config import TrainConfig
from fast.training.loop import HISTORY_FIELDS, Progress, TrainingError, TrainingRun, fit, write_history


def log_line(*parts):
    """The default log: stdout, flushed so a redirected log is complete at any moment."""
    print(*parts, flush=True)


@dataclass
class HeldOut:
    """Predictions of images the model(s) did not train on: what calibration and the
    threshold are chosen on."""
    raw: np.ndarray  # uncalibrated P(PNEUMONIA)
    y: np.ndarray
    paths: list
    name: str  # "validation" or "out-of-fold"
    study: HeldOutStudy  # the stress battery's predictions and the typicality model's features


def test_time_zooms(config):
    """The views every final prediction averages over: the image, and with ``config.tta`` its
    zooms by ``inference.TEST_TIME_ZOOMS``."""
    return TEST_TIME_ZOOMS if config.tta else IMAGE_ALONE


def fold_seed(seed, k):
    """Model k's initialisation seed: a different, fixed draw for each fold."""
    return int(np.random.SeedSequence([seed, k + 1]).generate_state(1)[0])


# --------------------------------------------------------------------------- the run

def open_run(config, resume, log, progress_bars, group):
    """The run: a new one (its directory not made yet: ``start_run`` makes it once the data has
    loaded, so a run that fails on its data leaves nothing behind), or the stored one of
    ``resume`` -> TrainingRun. The lead process decides; the others receive its answer (or its
    error)."""
    run, config = group.lead_first(lambda: _open_run(config, resume, log), only_lead=True)
    return TrainingRun(run, config, log, progress_bars, group)


def _open_run(config, resume, log):
    if resume is not None:
        run = RunDir(resume)
        if not run.config.is_file():
            raise TrainingError(f"{run.path}: not a run directory (no {RunDir.CONFIG})")
        config = TrainConfig.from_dict(run.read_config())
        log(f"resuming {run.path} with its stored configuration")
        return run, config
    run = RunDir(config.out) if config.out else RunDir.new()
    if run.holds_a_run():
        raise TrainingError(f"{run.path} already holds a run; use --resume {run.path} to continue it, "
                            "or choose another --out")
    return run, config


def start_run(job):
    """Make the run directory and write its configuration, or (resumed) clear its FAILED mark:
    the lead process, once the data has loaded."""
    if not job.group.lead:
        return
    run = job.run
    run.path.mkdir(parents=True, exist_ok=True)
    if not run.config.is_file():
        atomic_write_text(run.config, json.dumps(job.config.to_dict(), indent=2) + "\n")
    run.failed.unlink(missing_ok=True)


def mark_failed(job, err):
    """Leave the reason a begun run stopped in its FAILED file (the lead process)."""
    run = job.run
    if job.group.lead and run.path.is_dir():
        atomic_write_text(run.failed, f"{type(err).__name__}: {err}\n"
                          f"continue with: python -m fast.train --resume {run.path}\n")


def _quiet_unless(speaks, job):
    """``job()``, its warnings (skipped images) shown only if ``speaks``: the lead process says
    it once for all."""
    if speaks:
        return job()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedImageWarning)
        return job()


def train(config: TrainConfig, resume=None, log=log_line, progress_bars=None, group=None):
    """Train, calibrate and choose the threshold on held-out predictions, score the test split
    once -> run directory.

    One model (``config.folds == 1``): validation is carved out of train by patient, and the
    epoch with the best validation AUC is kept. K-fold (``folds = K``): K models, model k
    trained on all folds but k for ``config.epochs`` epochs; each training image is predicted
    once, by the model that did not see it (out-of-fold), and the saved model is the K models'
    mean probability.

    ``group``: the processes training together (default ``distributed.world()``: those that
    ``mpiexec`` started, or this one alone). ``progress_bars``: on stderr while decoding and
    training (default: only when stderr is a terminal; a log gets a line per epoch either way).
    Returns the run directory's path.
    """
    group = distributed.world() if group is None else group
    if progress_bars is None:
        progress_bars = sys.stderr.isatty()
    if not group.lead:
        log, progress_bars = (lambda *parts: None), False
    elif group.size > 1:
        log(f"data-parallel over {group.size} processes: each batch of {config.batch_size} split between them")
    if resume is None and config.conflict():  # a stored configuration passed this when it was new
        raise TrainingError(config.conflict())
    job = open_run(config, resume, log, progress_bars, group)
    config, run = job.config, job.run
    root = resolve_data_root(config.data)
    # the lead decodes first, filling the cache that the others then read
    ds = group.lead_first(lambda: _quiet_unless(group.lead, lambda: load_dataset(
        root, config.image_size, val_fraction=config.carved_fraction, seed=config.seed,
        cache_dir=config.cache_dir, limit=config.limit, progress=progress_bars,
        normalisation=config.normalise)))
    group.check_same_data(ds)
    start_run(job)
    folded = config.folds > 1
    log(f"data {root}: train {len(ds.y_train)} ({np.bincount(ds.y_train, minlength=2).tolist()} "
        f"NORMAL/PNEUMONIA), " + (f"{config.folds} patient-grouped folds" if folded else f"val {len(ds.y_val)}")
        + f", test {len(ds.y_test)}; run directory {run.path}")
    try:
        trained = _train_folds(job, ds, root) if folded else _train_one(job, ds)
        return finish(job, ds, *trained)
    except KeyboardInterrupt:
        log(f"\ninterrupted; every completed epoch is saved in {run.path}; "
            f"continue with: python -m fast.train --resume {run.path}")
        raise
    except Exception as err:
        mark_failed(job, err)
        raise


def _train_one(job, ds):
    """One model, the epoch of best validation AUC kept -> (members, HeldOut, Progress)."""
    config, group = job.config, job.group
    model, progress = fit(job, (ds.x_train, ds.y_train), (ds.x_val, ds.y_val), config.seed, (config.seed,),
                          keep_best=True)
    study = HeldOutStudy(ds.y_val, config.seed, test_time_zooms(config))
    study.observe(model, group, ds.x_train, ds.x_val)
    held_out = HeldOut(held_out_proba([model], ds.x_val, group, test_time_zooms(config)), ds.y_val,
                       ds.paths_val, "validation", study)
    return [model], held_out, progress


def _train_folds(job, ds, root):
    """K fold models, each predicting the fold it did not see -> (members, HeldOut of the
    out-of-fold predictions, Progress); every fold's epochs go into one history table, the
    held-out fold as each one's "val"."""
    config, group = job.config, job.group
    try:
        folds = patient_folds(ds.paths_train, ds.y_train, config.folds, config.seed)
    except ValueError as err:
        raise TrainingError(f"cannot make {config.folds} folds of {root / 'train'}: {err}") from None
    oof = np.empty(len(ds.y_train))
    study = HeldOutStudy(ds.y_train, config.seed, test_time_zooms(config))
    members, seconds, history = [], 0.0, []
    for k in range(config.folds):
        inside, outside = folds != k, folds == k
        job.log(f"fold {k + 1}/{config.folds}: training on {inside.sum()} images, "
                f"predicting the other {outside.sum()}")
        x_held = ds.x_train.subset(outside)
        model, progress = fit(job.fold(k + 1), (ds.x_train.subset(inside), ds.y_train[inside]),
                              (x_held, ds.y_train[outside]), fold_seed(config.seed, k), (config.seed, k + 1),
                              keep_best=False)
        oof[outside] = held_out_proba([model], x_held, group, test_time_zooms(config))
        study.observe_fold(model, group, ds.x_train, outside)
        members.append(model)
        seconds += progress.train_seconds
        history += [{"fold": k + 1, **row} for row in progress.history]
    if group.lead:
        write_history(job.run, history, ("fold",) + HISTORY_FIELDS)
    return members, HeldOut(oof, ds.y_train, ds.paths_train, "out-of-fold", study), Progress(train_seconds=seconds)


# --------------------------------------------------------------------------- the end

def finish(job, ds, members, held_out, progress):
    """On the held-out predictions, fit the calibration and pick the threshold; score the test
    split once; write the model, the metrics and the predictions (the lead process)."""
    config, run, log = job.config, job.run, job.log
    test_raw = held_out_proba(members, ds.x_test, job.group, test_time_zooms(config))
    if not job.group.lead:
        return run.path
    fitted = Calibration(config.calibration, *calibration.fit(config.calibration, held_out.raw, held_out.y))
    held_prob, test_prob = fitted.apply(held_out.raw), fitted.apply(test_raw)
    threshold, rule = metrics.choose_threshold(held_out.y, held_prob, config.threshold_rule,
                                               config.target_sensitivity, held_out.name)
    battery, typical = held_out.study.conclude(held_prob, fitted.apply, threshold, ds.class_names)
    results = {
        "threshold": threshold,
        "threshold_rule": rule,
        "calibration": fitted.to_dict(),
        "models": len(members),
        "best_epoch": progress.best_epoch if len(members) == 1 else None,
        "val": metrics.scored(held_out.y, held_prob, threshold),
        "test": metrics.scored(ds.y_test, test_prob, threshold),
        "train_seconds": round(progress.train_seconds, 2),
        "stress_seconds": round(held_out.study.seconds, 2),
        # the stress battery, on the held-out images (see fast.scoring.stress)
        "stress": battery,
        # the typicality model's threshold, and the share of held-out X-rays it flags
        "typicality": {"threshold": typical.threshold, "quantile": typicality.QUANTILE,
                       "held_out_flagged": typical.held_out_rate},
    }
    record = ModelRecord(architecture=members[0].arch, mean=ds.mean, std=ds.std, normalise=config.normalise,
                         test_time_zooms=test_time_zooms(config), threshold=threshold, calibration=fitted,
                         class_names=tuple(ds.class_names), best_epoch=results["best_epoch"],
                         threshold_rule=rule, held_out=held_out.name, typicality=typical,
                         held_out_probability=held_prob, held_out_label=held_out.y)
    _write_results(run, members, record, results, ds, (held_prob, held_out), test_prob)
    kept = (f"kept epoch {progress.best_epoch} (val AUC {progress.best_auc:.4f})" if len(members) == 1
            else f"{len(members)} fold models, averaged")
    log(f"{kept}; calibration ({config.calibration}) p' = sigmoid({fitted.scale:.3f} log-odds "
        f"{fitted.bias:+.3f}) fitted on {held_out.name} predictions; "
        f"threshold {threshold:.4f} chosen by {rule}")
    log(metrics.format_metrics_table({held_out.name: results["val"], "test": results["test"]}))
    log(f"stress battery, {held_out.name} X-rays "
        f"({', '.join(f'{n} {c}' for c, n in battery['images'].items())}), share called "
        f"PNEUMONIA at the threshold (change from as is):")
    log(stress.format_summary(battery, ds.class_names))
    log(f"typicality: Gaussians of each network's features at each depth, of the X-rays it trained on; "
        f"flagged above {typical.threshold:.3f}, the {typicality.QUANTILE:.0%} quantile of the "
        f"{held_out.name} X-rays' scores ({typical.held_out_rate:.1%} of them flagged)")
    log(f"training time {progress.train_seconds:.1f}s, the stress battery {held_out.study.seconds:.1f}s; "
        f"wrote {run.model}, {RunDir.METRICS}")
    return run.path


def _write_results(run, members, record, results, ds, held, test_prob):
    """The model file, metrics.json and the calibrated held-out and test probabilities (so tools
    can check that prediction reproduces them, and draw the reliability diagram)."""
    save_classifier(run.model, members, record)
    atomic_write_text(run.metrics, json.dumps(results, indent=2) + "\n")
    held_prob, held_out = held
    for split, prob, y, paths in (("test", test_prob, ds.y_test, ds.paths_test),
                                  ("val", held_prob, held_out.y, held_out.paths)):
        atomic_savez(run.predictions(split), probability=prob, label=y,
                     paths=np.array([str(Path(p).resolve()) for p in paths]))
