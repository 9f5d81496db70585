"""The training loop of one model, shared by both implementations.

One epoch: shuffled mini-batches (without replacement, the last partial batch kept),
augmentation, a gradient step each; then the held-out loss, accuracy and ROC AUC. The best epoch
by held-out AUC is kept, with early stopping (or, for a fold model, the last). Every epoch ends
with an atomic checkpoint, and each epoch's randomness is drawn from ``(seed, epoch)``, so a run
resumed after a crash ends with the same weights as an uninterrupted one.

A ``TrainingRun`` holds what every step of a run shares (its directory, settings, log and
processes), a ``Learner`` one model in training (weights, optimiser, kept state, progress). With
a ``distributed.Group`` of several processes each batch and each evaluation is split between
them; the lead process alone reads and writes the checkpoint.
"""
import csv
import io
import json
import math
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
from tqdm import tqdm

from fast.data.augment import acquisition_cues, augment_batch, matched_detail
from fast.data.normalise import normalise
from fast.files import atomic_savez, atomic_write_text
from fast.nn.model import ConvNet, softmax
from fast.runs import RunDir
from fast.scoring import metrics
from fast.scoring.metrics import called_positive
from fast.training import distributed
from fast.training.config import TrainConfig
from fast.training.optim import learning_rate, make_optimizer

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


def _say_nothing(*parts):
    """A log that says nothing: a run's processes other than the lead."""


@dataclass(frozen=True)
class TrainingRun:
    """What every step of a training run shares: its run directory (``fast.runs.RunDir``, one
    fold model's own for a fold), its settings, its log (a ``print``-like function), whether
    progress bars are drawn, and the processes training together (one, by default)."""
    run: RunDir
    config: TrainConfig
    log: Callable = _say_nothing
    progress_bars: bool = False
    group: distributed.Group = field(default_factory=distributed.Group)

    def fold(self, k):
        """The same run, for fold model k (1-based), kept in its own directory."""
        return replace(self, run=self.run.fold(k))


@dataclass
class Learner:
    """One model in training: its network, optimiser and class weights, the kept state (the
    epoch of best held-out AUC, or the last) and its ``Progress``."""
    model: ConvNet
    optimizer: object
    class_weights: object  # (num_classes,) loss weights, or None (all 1)
    best: dict = None
    progress: Progress = field(default_factory=Progress)


def make_model(config, seed=None):
    """A new network of ``config``'s architecture and implementation (float32 for fast, float64
    for reference), initialised with ``seed`` (default: the config's)."""
    dtype = np.float32 if config.impl == "fast" else np.float64
    return ConvNet(config.architecture(), impl=config.impl, seed=config.seed if seed is None else seed,
                   dtype=dtype)


def balanced_class_weights(y, num_classes=2):
    """Inverse-frequency weights n / (K * n_c): each class contributes equally to the loss."""
    counts = np.bincount(y, minlength=num_classes)
    if np.any(counts == 0):
        raise TrainingError(f"the training split lacks a class (counts per class: {counts.tolist()})")
    return len(y) / (num_classes * counts)


def class_weights_for(config, y):
    """The loss's class weights under ``config.class_weights``: balanced, or None (all 1)."""
    return balanced_class_weights(y) if config.class_weights == "balanced" else None


def evaluate_split(model, x, y, class_weights, group):
    """x: ``fast.data.pixels.Inputs`` -> (weighted loss, P(PNEUMONIA) per image), read in
    batches, each process of ``group`` predicting its part."""
    logits = group.gather(model.predict_logits(group.own_part(x)))
    loss, _ = model.logit_loss(logits, y, class_weights)
    return float(loss), softmax(logits.astype(np.float64))[:, 1]


# --------------------------------------------------------------------------- checkpoints

def save_checkpoint(run, learner):
    """The learner's model state, kept state, optimizer state and progress -> ``run.checkpoint``."""
    arrays = {f"state/{k}": v for k, v in learner.model.state().items()}
    arrays.update({f"best/{k}": v for k, v in learner.best.items()})
    arrays.update({f"opt/{k}": v for k, v in learner.optimizer.state.items()})
    arrays["progress"] = np.array(json.dumps(learner.progress.__dict__))
    atomic_savez(run.checkpoint, **arrays)


def load_checkpoint(run, learner):
    """Restore the learner from ``run.checkpoint`` in place: its model's params and buffers, its
    optimizer's state, its kept state and its progress."""
    path = run.checkpoint
    if not path.is_file():
        raise TrainingError(f"{path}: no checkpoint to resume from (no epoch of this run completed)")
    model = learner.model
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in model.state() if f"state/{k}" not in data.files or f"best/{k}" not in data.files]
        if missing:
            raise TrainingError(f"{path}: the checkpoint does not fit this run's network (no {missing[0]}); "
                                "it was written by another version or configuration")
        model.load_state({k: data[f"state/{k}"] for k in model.state()})
        learner.best = {k: data[f"best/{k}"].copy() for k in model.state()}
        learner.optimizer.state = {k[4:]: data[k].copy() for k in data.files if k.startswith("opt/")}
        learner.progress = Progress(**json.loads(str(data["progress"])))


def write_history(run, history, fields=HISTORY_FIELDS):
    """One row per epoch -> ``run.history``."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(run.history, buf.getvalue())


# --------------------------------------------------------------------------- one model

def fit(job, train_set, held_out, seed, epoch_seed, keep_best):
    """Train one model of the run ``job`` (a ``TrainingRun``), resuming from its checkpoint when
    there is one -> (model holding the kept weights, Progress).

    ``seed``: the model's initialisation. ``epoch_seed``: epoch e draws its randomness from
    (*epoch_seed, e). ``keep_best``: keep the epoch with the best held-out AUC and stop early
    after ``config.patience`` epochs without a better one; otherwise train every epoch and keep
    the last. The lead process reads the checkpoint and hands it to the others.
    """
    config, run = job.config, job.run
    learner = Learner(make_model(config, seed), make_optimizer(config.optimizer, config.momentum,
                                                              config.weight_decay),
                      class_weights_for(config, train_set[1]))

    def resume_point():
        run.path.mkdir(parents=True, exist_ok=True)
        if not run.checkpoint.is_file():
            return None
        load_checkpoint(run, learner)
        job.log(f"continuing {run.path} after epoch {learner.progress.epoch}")
        return learner.model.state(), learner.optimizer.state, learner.best, learner.progress

    resumed = job.group.lead_first(resume_point, only_lead=True)
    if resumed is None:  # a new model: its initial state is the one kept so far
        learner.best = {k: v.copy() for k, v in learner.model.state().items()}
    else:  # every process takes what the lead read
        state, learner.optimizer.state, learner.best, learner.progress = resumed
        learner.model.load_state(state)
    run_epochs(job, learner, train_set, held_out, epoch_seed, keep_best)
    learner.model.load_state(learner.best)
    return learner.model, learner.progress


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


def train_epoch(job, learner, train_set, lr, rng, epoch):
    """One pass over ``train_set`` in the order ``rng`` draws, a step per batch -> the mean
    training loss; TrainingError (naming the batch) when a loss stops being finite."""
    config, group = job.config, job.group
    x_train, y_train = train_set
    n, bs = len(y_train), config.batch_size
    order = rng.permutation(n)
    running, seen = 0.0, 0
    bar = tqdm(range(0, n, bs), desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch",
               leave=False, disable=not job.progress_bars, file=sys.stderr)
    for b in bar:
        idx = order[b:b + bs]
        lo, hi = group.part(len(idx))
        shard = distributed.Shard(group, lo, hi, y_train[idx]) if group.size > 1 else None
        mine = idx[lo:hi]
        if config.augment and (config.cues or config.match_detail):  # on the grey values, then normalised
            grey = x_train.pixels[mine]
            if config.match_detail:
                grey = matched_detail(grey, y_train[mine], config.match_detail)
            if config.cues:
                grey = acquisition_cues(grey, rng, (lo, hi, len(idx)))
            xb = normalise(grey, x_train.how, x_train.mean, x_train.std)[:, None]
        else:
            xb = x_train[mine]
        if config.augment:
            xb = augment_batch(xb, rng, (lo, hi, len(idx)), acquisition=config.acquisition,
                               crop_area=config.crop_area, per_image=config.normalise != "dataset",
                               labels=y_train[idx], reframe=config.reframe)
        loss = train_step(learner.model, learner.optimizer, xb, y_train[mine], lr, learner.class_weights, rng,
                          shard)
        if not math.isfinite(loss):
            raise TrainingError(f"the loss became {loss} in epoch {epoch + 1}, batch {b // bs + 1}; "
                                "stopping")
        running += loss * len(idx)
        seen += len(idx)
        bar.set_postfix(loss=f"{running / seen:.4f}")
    bar.close()
    return running / seen


def run_epochs(job, learner, train_set, held_out, epoch_seed, keep_best):
    """Train until config.epochs (or early stopping, with ``keep_best``), a checkpoint after each
    epoch, leaving in ``learner.best`` the kept state (best held-out AUC, or the last epoch's).
    x: ``Inputs``, read a batch at a time; with several processes each takes its part of a batch."""
    config, progress, model = job.config, learner.progress, learner.model
    x_val, y_val = held_out
    for epoch in range(progress.epoch, config.epochs):
        if keep_best and progress.bad_epochs >= config.patience:
            break
        lr = learning_rate(config.schedule, config.lr, epoch, config.epochs)
        rng = np.random.default_rng([*epoch_seed, epoch])
        start = time.perf_counter()
        try:
            train_loss = train_epoch(job, learner, train_set, lr, rng, epoch)
        except TrainingError as err:
            raise TrainingError(f"{err}. The last good checkpoint (after epoch {progress.epoch}) is in "
                                f"{job.run.checkpoint}. Try a smaller --lr (now {config.lr}).") from None
        seconds = time.perf_counter() - start

        val_loss, val_prob = evaluate_split(model, x_val, y_val, learner.class_weights, job.group)
        val_auc = metrics.roc_auc(y_val, val_prob)
        # at 0.5, before calibration and threshold exist (chosen once training is over): the
        # epoch line says so, as its figure can sit far from the run's final accuracy
        val_acc = float(np.mean(called_positive(val_prob, 0.5) == y_val))
        progress.epoch = epoch + 1
        progress.train_seconds += seconds
        progress.history.append({"epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "val_loss": val_loss,
                                 "val_accuracy": val_acc, "val_auc": val_auc, "seconds": round(seconds, 2)})
        marker = ""
        if not keep_best:
            learner.best = {k: v.copy() for k, v in model.state().items()}
            progress.best_auc, progress.best_epoch = val_auc, epoch + 1
        elif val_auc > progress.best_auc:
            progress.best_auc, progress.best_epoch, progress.bad_epochs = val_auc, epoch + 1, 0
            learner.best = {k: v.copy() for k, v in model.state().items()}
            marker = "  *best"
        else:
            progress.bad_epochs += 1
        job.log(f"epoch {epoch + 1:3d}/{config.epochs}  train loss {train_loss:.4f}  val loss {val_loss:.4f}  "
                f"val acc@0.5 {val_acc:.4f}  val AUC {val_auc:.4f}  lr {lr:.2e}  {seconds:.1f}s{marker}")
        if job.group.lead:
            save_checkpoint(job.run, learner)
            write_history(job.run, progress.history)

    if keep_best and progress.bad_epochs >= config.patience and progress.epoch < config.epochs:
        job.log(f"early stop: no better val AUC for {config.patience} epochs")
