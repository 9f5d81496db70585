"""The training loop, shared by both implementations.

One epoch: shuffled mini-batches (without replacement, the last partial batch
kept), augmentation, a gradient step each; then the validation loss, accuracy
and ROC AUC. The best epoch by validation AUC is kept, with early stopping.
Every epoch ends with an atomic checkpoint, and each epoch's randomness is drawn
from ``(seed, epoch)``, so ``--resume`` after a crash ends with the same weights
as an uninterrupted run.

At the end the calibration and the decision threshold are chosen on held-out
predictions (the validation split, or with ``--folds`` the out-of-fold ones), and the
test split is scored once with that model, calibration and threshold. Pictures are the
training command's business (``fast.train``), not the loop's.

Under ``mpiexec -n N`` the processes form a ``distributed.Group``: each batch and each
evaluation is split between them, and only the lead process (rank 0) reads checkpoints,
writes the run directory and prints; the others receive what it read.
"""
import csv
import hashlib
import io
import json
import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fast import calibration, distributed, framing, metrics
from fast import data as xray_data
from fast.augment import TEST_TIME_ZOOMS, augment_batch
from fast.config import TrainConfig
from fast.files import atomic_savez, atomic_write_text
from fast.model import Architecture, ConvNet, ensemble_proba, save_model, softmax
from fast.optim import learning_rate, make_optimizer

CHECKPOINT = "checkpoint.npz"
HISTORY_FIELDS = ("epoch", "lr", "train_loss", "val_loss", "val_accuracy", "val_auc", "seconds")


class TrainingError(Exception):
    """Training cannot go on (e.g. the loss stopped being finite); the message says what to do."""


@dataclass
class Progress:
    """What a checkpoint must remember besides the arrays."""
    epoch: int = 0  # epochs completed
    best_auc: float = -math.inf
    best_epoch: int = 0  # 1-based; 0 = none yet
    bad_epochs: int = 0
    train_seconds: float = 0.0
    history: list = field(default_factory=list)


def log_line(*parts):
    """The default log: stdout, flushed so a redirected log is complete at any moment."""
    print(*parts, flush=True)


def default_run_dir():
    return Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")


def make_model(config, seed=None):
    arch = Architecture(input_shape=(1, config.image_size, config.image_size),
                        channels=tuple(config.channels), hidden=config.hidden,
                        convs_per_block=config.convs_per_block, batchnorm=config.batchnorm,
                        head=config.head, dropout=config.dropout, stem_stride=config.stem_stride,
                        stem_kernel=config.stem_kernel)
    dtype = np.float32 if config.impl == "fast" else np.float64
    return ConvNet(arch, impl=config.impl, seed=config.seed if seed is None else seed, dtype=dtype)


def balanced_class_weights(y, num_classes=2):
    """Inverse-frequency weights n / (K * n_c): each class contributes equally to the loss."""
    counts = np.bincount(y, minlength=num_classes)
    if np.any(counts == 0):
        raise TrainingError(f"the training split lacks a class (counts per class: {counts.tolist()})")
    return len(y) / (num_classes * counts)


def class_weights_for(config, y):
    """The loss's class weights under ``config.class_weights``: balanced, or None (all 1)."""
    return balanced_class_weights(y) if config.class_weights == "balanced" else None


def evaluate_split(model, x, y, class_weights, group=distributed.Group()):
    """x: ``data.Inputs`` -> (weighted loss, P(PNEUMONIA) per image), read in batches, each
    process of ``group`` predicting its part."""
    logits = group.gather(model.predict_logits(_part(x, group)))
    loss, _ = model.layers.softmax_cross_entropy(logits, y, class_weights)
    return float(loss), softmax(logits.astype(np.float64))[:, 1]


def held_out_proba(members, x, group, zooms=(1.0,)):
    """``ensemble_proba`` of x (``data.Inputs``) over ``zooms``, each process of ``group``
    predicting its part."""
    return group.gather(ensemble_proba(members, _part(x, group), zooms=zooms))


def test_time_zooms(config):
    """The views every final prediction averages over: the image, and with ``config.tta`` its
    zooms by ``augment.TEST_TIME_ZOOMS``."""
    return TEST_TIME_ZOOMS if config.tta else (1.0,)


def _part(x, group):
    lo, hi = group.part(len(x))
    return x.subset(np.arange(lo, hi)) if group.size > 1 else x


def save_checkpoint(run_dir, model, best_params, optimizer, progress):
    arrays = {f"state/{k}": v for k, v in model.state().items()}
    arrays.update({f"best/{k}": v for k, v in best_params.items()})
    arrays.update({f"opt/{k}": v for k, v in optimizer.state.items()})
    arrays["progress"] = np.array(json.dumps(progress.__dict__))
    atomic_savez(Path(run_dir) / CHECKPOINT, **arrays)


def load_checkpoint(run_dir, model, optimizer):
    """Restore params, buffers and optimizer state in place -> (best state, progress)."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise TrainingError(f"{path}: no checkpoint to resume from (no epoch of this run completed)")
    with np.load(path, allow_pickle=False) as data:
        # checkpoints written before batch norm stored the params alone, under param/
        current = "state" if any(k.startswith("state/") for k in data.files) else "param"
        missing = [k for k in model.state() if f"{current}/{k}" not in data.files or f"best/{k}" not in data.files]
        if missing:
            raise TrainingError(f"{path}: the checkpoint does not fit this run's network (no {missing[0]}); "
                                "it was written by another version or configuration")
        model.load_state({k: data[f"{current}/{k}"] for k in model.state()})
        best = {k: data[f"best/{k}"].copy() for k in model.state()}
        optimizer.state = {k[4:]: data[k].copy() for k in data.files if k.startswith("opt/")}
        progress = Progress(**json.loads(str(data["progress"])))
    return best, progress


def write_history(run_dir, history, fields=HISTORY_FIELDS):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(Path(run_dir) / "history.csv", buf.getvalue())


def open_run(config, resume, log, group=distributed.Group()):
    """The run directory and its configuration: a new one, or the stored one of ``resume``.
    The lead process decides; the others receive its answer (or its error)."""
    return _lead_first(group, lambda: _open_run(config, resume, log), only_lead=True)


def _lead_first(group, job, only_lead=False):
    """``job()`` on the lead process, then (unless ``only_lead``, when its result is
    broadcast) on the others; an exception on the lead is raised on every process."""
    if group.size == 1:
        return job()
    result = error = None
    if group.lead:
        try:
            result = job()
        except Exception as err:  # handed to every process, so none waits forever
            error = err
    error = group.broadcast(error)
    if error is not None:
        raise error
    if only_lead:
        return group.broadcast(result)
    return result if group.lead else job()


def _quiet_unless(speaks, job):
    """``job()``, its warnings (skipped images) shown only if ``speaks``: the lead process says
    it once for all."""
    if speaks:
        return job()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xray_data.SkippedImageWarning)
        return job()


def _check_same_data(group, ds):
    """Every process must train on the same images in the same order (else their batches,
    and their collective calls, would differ): DataError when this one's differ from the
    lead's."""
    if group.size == 1:
        return
    digest = hashlib.sha256(repr((ds.paths_train, ds.y_train.tolist(), ds.paths_val, ds.paths_test,
                                  ds.mean, ds.std)).encode()).hexdigest()
    if group.broadcast(digest) != digest:
        raise xray_data.DataError(f"process {group.rank} read other images than process 0 (their file "
                                  "lists, labels or pixels differ): every machine needs the same data "
                                  "folder, with the same files")


def _open_run(config, resume, log):
    if resume is not None:
        run_dir = Path(resume)
        config_path = run_dir / "config.json"
        if not config_path.is_file():
            raise TrainingError(f"{run_dir}: not a run directory (no config.json)")
        config = TrainConfig.from_dict(json.loads(config_path.read_text()))
        log(f"resuming {run_dir} with its stored configuration")
        return run_dir, config
    run_dir = Path(config.out) if config.out else default_run_dir()
    if any(run_dir.glob(f"**/{CHECKPOINT}")):
        raise TrainingError(f"{run_dir} already holds a run; use --resume {run_dir} to continue it, "
                            "or choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")
    return run_dir, config


def train(config: TrainConfig, resume=None, log=log_line, progress_bars=True, group=None):
    """Train, calibrate and choose the threshold on held-out predictions, score the test split
    once -> run directory.

    One model (``config.folds == 1``): validation is carved out of train by patient, and the
    epoch with the best validation AUC is kept. K-fold (``folds = K``): K models, model k
    trained on all folds but k for ``config.epochs`` epochs; each training image is predicted
    once, by the model that did not see it (out-of-fold), and the saved model is the K models'
    mean probability.

    ``group``: the processes training together (default ``distributed.world()``: those that
    ``mpiexec`` started, or this one alone). Returns the run directory.
    """
    group = distributed.world() if group is None else group
    if not group.lead:
        log, progress_bars = (lambda *parts: None), False
    elif group.size > 1:
        log(f"data-parallel over {group.size} processes: each batch of {config.batch_size} split between them")
    if resume is None and config.conflict():  # a stored configuration passed this when it was new
        raise TrainingError(config.conflict())
    run_dir, config = open_run(config, resume, log, group)
    root = xray_data.resolve_data_root(config.data)
    folded = config.folds > 1
    # the lead decodes first, filling the cache that the others then read
    ds = _lead_first(group, lambda: _quiet_unless(group.lead, lambda: xray_data.load_dataset(
        root, config.image_size, val_fraction=0.0 if folded else config.val_fraction, seed=config.seed,
        cache_dir=config.cache_dir, limit=config.limit, progress=progress_bars,
        normalisation=config.normalise)))
    _check_same_data(group, ds)
    log(f"data {root}: train {len(ds.y_train)} ({np.bincount(ds.y_train, minlength=2).tolist()} "
        f"NORMAL/PNEUMONIA), " + (f"{config.folds} patient-grouped folds" if folded else f"val {len(ds.y_val)}")
        + f", test {len(ds.y_test)}; run directory {run_dir}")
    try:
        if not folded:
            model, progress = fit(run_dir, config, (ds.x_train, ds.y_train), (ds.x_val, ds.y_val),
                                  config.seed, (config.seed,), keep_best=True, log=log,
                                  progress_bars=progress_bars, group=group)
            study = framing.study_rows(ds.y_val, config.seed)
            held_out = HeldOut(held_out_proba([model], ds.x_val, group, test_time_zooms(config)),
                               ds.y_val, ds.paths_val, "validation", study,
                               framed_proba([model], ds.x_val.subset(study), group, config))
            return finish(run_dir, config, ds, [model], held_out, progress, log, group)
        try:
            folds = xray_data.patient_folds(ds.paths_train, ds.y_train, config.folds, config.seed)
        except ValueError as err:
            raise TrainingError(f"cannot make {config.folds} folds of {root / 'train'}: {err}") from None
        oof = np.empty(len(ds.y_train))
        study = framing.study_rows(ds.y_train, config.seed)
        framed_oof = {v.name: np.empty(study.sum()) for v in framing.VIEWS}
        members, seconds, history = [], 0.0, []
        for k in range(config.folds):
            inside, outside = folds != k, folds == k
            log(f"fold {k + 1}/{config.folds}: training on {inside.sum()} images, "
                f"predicting the other {outside.sum()}")
            x_held = ds.x_train.subset(outside)
            model, progress = fit(run_dir / f"fold{k + 1}", config,
                                  (ds.x_train.subset(inside), ds.y_train[inside]),
                                  (x_held, ds.y_train[outside]),
                                  fold_seed(config.seed, k), (config.seed, k + 1), keep_best=False,
                                  log=log, progress_bars=progress_bars, group=group)
            oof[outside] = held_out_proba([model], x_held, group, test_time_zooms(config))
            # the framing study's images among the held-out ones, seen framed otherwise
            mine = outside[study]
            for name, prob in framed_proba([model], ds.x_train.subset(outside & study), group,
                                           config).items():
                framed_oof[name][mine] = prob
            members.append(model)
            seconds += progress.train_seconds
            history += [{"fold": k + 1, **row} for row in progress.history]
        # every fold's epochs in one table, the held-out fold as each one's "val"
        if group.lead:
            write_history(run_dir, history, ("fold",) + HISTORY_FIELDS)
        held_out = HeldOut(oof, ds.y_train, ds.paths_train, "out-of-fold", study, framed_oof)
        return finish(run_dir, config, ds, members, held_out, Progress(train_seconds=seconds), log, group)
    except KeyboardInterrupt:
        log(f"\ninterrupted; every completed epoch is saved in {run_dir}; "
            f"continue with: python -m fast.train --resume {run_dir}")
        raise


@dataclass
class HeldOut:
    """Predictions of images the model(s) did not train on: what calibration and the
    threshold are chosen on."""
    raw: np.ndarray  # uncalibrated P(PNEUMONIA)
    y: np.ndarray
    paths: list
    name: str  # "validation" or "out-of-fold"
    study: np.ndarray = None  # which of them the framing study predicts (a boolean mask)
    framed: dict = None  # {view name: their uncalibrated P(PNEUMONIA) seen framed so}


def framed_proba(members, x, group, config):
    """The framing study's predictions: {view name: P(PNEUMONIA) of x (``data.Inputs``) framed
    as the view says}, uncalibrated, over the run's test-time views."""
    return {name: held_out_proba(members, framed, group, test_time_zooms(config))
            for name, framed in framing.views_of(x).items()}


def fold_seed(seed, k):
    """Model k's initialisation seed: a different, fixed draw for each fold."""
    return int(np.random.SeedSequence([seed, k + 1]).generate_state(1)[0])


def fit(run_dir, config, train_set, held_out, seed, epoch_seed, keep_best, log, progress_bars,
        group=distributed.Group()):
    """Train one model in ``run_dir`` (resuming from its checkpoint when there is one)
    -> (model holding the kept weights, Progress).

    ``epoch_seed``: epoch e draws its randomness from (*epoch_seed, e). ``keep_best``: keep
    the epoch with the best held-out AUC and stop early after ``config.patience`` epochs
    without a better one; otherwise train every epoch and keep the last. The lead process of
    ``group`` reads the checkpoint and hands it to the others.
    """
    run_dir = Path(run_dir)
    model = make_model(config, seed)
    class_weights = class_weights_for(config, train_set[1])
    optimizer = make_optimizer(config.optimizer, config.momentum, config.weight_decay)

    def resume_point():
        run_dir.mkdir(parents=True, exist_ok=True)
        if not (run_dir / CHECKPOINT).is_file():
            return None
        best, progress = load_checkpoint(run_dir, model, optimizer)
        log(f"continuing {run_dir} after epoch {progress.epoch}")
        return model.state(), optimizer.state, best, progress

    resumed = _lead_first(group, resume_point, only_lead=True)
    best, progress = {k: v.copy() for k, v in model.state().items()}, Progress()
    if resumed is not None:
        state, optimizer.state, best, progress = resumed
        model.load_state(state)
    best = run_epochs(run_dir, config, train_set, held_out, model, optimizer, class_weights, best,
                      progress, epoch_seed, keep_best, log, progress_bars, group)
    model.load_state(best)
    return model, progress


def train_step(model, optimizer, x, y, lr, class_weights=None, rng=None, shard=None):
    """One training step: the batch's loss and gradients, then the optimizer's update -> the loss.

    ``rng`` draws the dropout masks. A loss that is not finite is returned without an update,
    leaving the weights as they were. ``shard`` (a ``distributed.Shard``): x, y are this
    process's rows of a batch split between processes; the loss and the gradients are then the
    whole batch's, the same on every process, and so is the update.
    """
    if shard is None:
        loss, grads = model.loss(x, y, class_weights, rng=rng)
    else:
        loss, grads = shard.loss(model, x, y, class_weights, rng)
    if math.isfinite(loss):
        optimizer.update(model.params, grads, lr)
    return loss


def run_epochs(run_dir, config, train_set, held_out, model, optimizer, class_weights, best_params,
               progress, epoch_seed, keep_best, log, progress_bars, group=distributed.Group()):
    """Train until config.epochs (or early stopping, with ``keep_best``), a checkpoint after each
    epoch -> the kept state (best held-out AUC, or the last epoch's). x: ``data.Inputs``, read
    a batch at a time; with a ``group`` of several processes each takes its part of a batch."""
    (x_train, y_train), (x_val, y_val) = train_set, held_out
    n, bs = len(y_train), config.batch_size
    for epoch in range(progress.epoch, config.epochs):
        if keep_best and progress.bad_epochs >= config.patience:
            break
        lr = learning_rate(config.schedule, config.lr, epoch, config.epochs)
        rng = np.random.default_rng([*epoch_seed, epoch])
        order = rng.permutation(n)
        start = time.perf_counter()
        running, seen = 0.0, 0
        bar = tqdm(range(0, n, bs), desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch",
                   leave=False, disable=not progress_bars, file=sys.stderr)
        for b in bar:
            idx = order[b:b + bs]
            lo, hi = group.part(len(idx))
            shard = distributed.Shard(group, lo, hi, y_train[idx]) if group.size > 1 else None
            mine = idx[lo:hi]
            xb = x_train[mine]
            if config.augment:
                xb = augment_batch(xb, rng, (lo, hi, len(idx)), acquisition=config.acquisition,
                                   crop_area=config.crop_area, per_image=config.normalise != "dataset",
                                   labels=y_train[idx], reframe=config.reframe)
            loss = train_step(model, optimizer, xb, y_train[mine], lr, class_weights, rng, shard)
            if not math.isfinite(loss):
                raise TrainingError(
                    f"the loss became {loss} in epoch {epoch + 1}, batch {b // bs + 1}; stopping. "
                    f"The last good checkpoint (after epoch {progress.epoch}) is in {run_dir / CHECKPOINT}. "
                    f"Try a smaller --lr (now {config.lr}).")
            running += loss * len(idx)
            seen += len(idx)
            bar.set_postfix(loss=f"{running / seen:.4f}")
        bar.close()
        seconds = time.perf_counter() - start

        val_loss, val_prob = evaluate_split(model, x_val, y_val, class_weights, group)
        val_auc = metrics.roc_auc(y_val, val_prob)
        # at 0.5, before calibration and threshold exist (chosen once training is over): the
        # epoch line says so, as its figure can sit far from the run's final accuracy
        val_acc = float(np.mean((val_prob >= 0.5) == y_val))
        progress.epoch = epoch + 1
        progress.train_seconds += seconds
        progress.history.append({"epoch": epoch + 1, "lr": lr, "train_loss": running / seen, "val_loss": val_loss,
                                 "val_accuracy": val_acc, "val_auc": val_auc, "seconds": round(seconds, 2)})
        marker = ""
        if not keep_best:
            best_params = {k: v.copy() for k, v in model.state().items()}
            progress.best_auc, progress.best_epoch = val_auc, epoch + 1
        elif val_auc > progress.best_auc:
            progress.best_auc, progress.best_epoch, progress.bad_epochs = val_auc, epoch + 1, 0
            best_params = {k: v.copy() for k, v in model.state().items()}
            marker = "  *best"
        else:
            progress.bad_epochs += 1
        log(f"epoch {epoch + 1:3d}/{config.epochs}  train loss {running / seen:.4f}  val loss {val_loss:.4f}  "
            f"val acc@0.5 {val_acc:.4f}  val AUC {val_auc:.4f}  lr {lr:.2e}  {seconds:.1f}s{marker}")
        if group.lead:
            save_checkpoint(run_dir, model, best_params, optimizer, progress)
            write_history(run_dir, progress.history)

    if keep_best and progress.bad_epochs >= config.patience and progress.epoch < config.epochs:
        log(f"early stop: no better val AUC for {config.patience} epochs")
    return best_params


def choose_threshold(config, y, prob, held_out_name="validation"):
    """The decision threshold on held-out probabilities -> (threshold, the rule in words)."""
    if config.target_sensitivity is not None:
        rule = (f"the highest threshold with sensitivity >= {config.target_sensitivity} on "
                f"{held_out_name} predictions")
        return metrics.sensitivity_threshold(y, prob, config.target_sensitivity), rule
    if config.threshold_rule == "prevalence":
        return metrics.prevalence_threshold(y), f"the share of PNEUMONIA among the {held_out_name} images"
    return metrics.youden_threshold(y, prob), f"Youden's J on {held_out_name} predictions"


def finish(run_dir, config, ds, members, held_out, progress, log, group=distributed.Group()):
    """On the held-out predictions, fit the calibration and pick the threshold; score the test
    split once; write the model, the metrics and the predictions (the lead process)."""
    test_raw = held_out_proba(members, ds.x_test, group, test_time_zooms(config))
    if not group.lead:
        return Path(run_dir)
    scale, bias = calibration.fit(config.calibration, held_out.raw, held_out.y)
    calibrated = {"method": config.calibration, "scale": scale, "bias": bias}
    held_prob = calibration.apply_platt(held_out.raw, scale, bias)
    test_prob = calibration.apply_platt(test_raw, scale, bias)
    threshold, rule = choose_threshold(config, held_out.y, held_prob, held_out.name)

    framed = {framing.AS_IS.name: held_prob[held_out.study],
              **{name: calibration.apply_platt(raw, scale, bias) for name, raw in held_out.framed.items()}}
    framing_study = framing.summarise(held_out.y[held_out.study], framed, threshold, ds.class_names)
    results = {
        "threshold": threshold,
        "threshold_rule": rule,
        "calibration": calibrated,
        "models": len(members),
        "best_epoch": progress.best_epoch if len(members) == 1 else None,
        "val": metrics.scored(held_out.y, held_prob, threshold),
        "test": metrics.scored(ds.y_test, test_prob, threshold),
        "train_seconds": round(progress.train_seconds, 2),
        # the framing stress study, on the held-out images (see fast.framing)
        "framing": framing_study,
    }
    metadata = {
        "mean": ds.mean, "std": ds.std, "normalise": config.normalise,
        "test_time_zooms": list(test_time_zooms(config)), "threshold": threshold, "calibration": calibrated,
        "class_names": list(ds.class_names), "best_epoch": results["best_epoch"],
        "threshold_rule": rule, "held_out": held_out.name,
    }
    run_dir = Path(run_dir)
    save_model(run_dir / "model.npz", members, metadata)
    atomic_write_text(run_dir / "metrics.json", json.dumps(results, indent=2) + "\n")
    # The calibrated probabilities, so tools can check that prediction reproduces them, and
    # draw the reliability diagram.
    for split, prob, y, paths in (("test", test_prob, ds.y_test, ds.paths_test),
                                  ("val", held_prob, held_out.y, held_out.paths)):
        atomic_savez(run_dir / f"{split}_predictions.npz", probability=prob, label=y,
                     paths=np.array([str(Path(p).resolve()) for p in paths]))
    kept = (f"kept epoch {progress.best_epoch} (val AUC {progress.best_auc:.4f})" if len(members) == 1
            else f"{len(members)} fold models, averaged")
    log(f"{kept}; calibration ({config.calibration}) p' = sigmoid({scale:.3f} log-odds {bias:+.3f}) "
        f"fitted on {held_out.name} predictions; "
        f"threshold {threshold:.4f} chosen by {rule}")
    log(metrics.format_metrics_table({held_out.name: results["val"], "test": results["test"]}))
    log(f"framing stress study, {held_out.name} X-rays "
        f"({', '.join(f'{n} {c}' for c, n in framing_study['images'].items())}), share called "
        f"PNEUMONIA at the threshold (change from as is):")
    log(framing.format_summary(framing_study, ds.class_names))
    log(f"training time {progress.train_seconds:.1f}s; wrote {run_dir}/model.npz, metrics.json")
    return run_dir
