"""What a run learns of its networks from the X-rays they did not train on, besides their scores:
the stress battery (``fast.scoring.stress``) and the typicality model (``fast.scoring.typicality``).

The trainer makes one ``HeldOutStudy`` of its held-out X-rays (the validation split, or with
K folds the whole training split, each X-ray held out by one fold model), hands it each network
once trained (``observe`` or ``observe_fold``), and, once the calibration and the threshold are
chosen, has it ``conclude``: the battery's summary and the fitted typicality model. Predictions
are split between the processes of a ``group`` (``fast.training.distributed``: anything with
``own_part`` and ``gather``), so every process holds every answer.
"""
import time

import numpy as np

from fast.inference import IMAGE_ALONE, ensemble_proba, member_features
from fast.scoring import stress, typicality


def held_out_proba(members, x, group, zooms=IMAGE_ALONE):
    """``inference.ensemble_proba`` of x (``fast.data.pixels.Inputs``) over ``zooms``, each
    process of ``group`` predicting its part."""
    return group.gather(ensemble_proba(members, group.own_part(x), zooms=zooms))


def features_of(member, x, group):
    """What ``member`` sees of each image of x (``Inputs``; ``inference.member_features``), each
    process of ``group`` reading its part -> {name: (N, D)}."""
    return {name: group.gather(f) for name, f in member_features(member, group.own_part(x)).items()}


def features_apart(member, x, held, group):
    """A fold model's features of x (``Inputs``, read once) apart: of the X-rays it trained on
    (outside the boolean mask ``held``) and of those it did not see -> ({name: (N, D)} trained
    on, {name: (M, D)} unseen), what ``typicality.fit`` takes for one network."""
    features = features_of(member, x, group)
    return ({name: f[~held] for name, f in features.items()}, {name: f[held] for name, f in features.items()})


class HeldOutStudy:
    """The stress battery's predictions and the typicality model's features of a run's held-out
    X-rays with labels ``y``: the battery predicts the rows ``stress.study_rows`` draws with
    ``seed``, seen over the run's test-time ``zooms``."""

    def __init__(self, y, seed, zooms):
        self.y = np.asarray(y)
        self.rows = stress.study_rows(self.y, seed)
        self.zooms = zooms
        # {view name: uncalibrated P(PNEUMONIA) of the rows seen so}, in the battery's order
        self.viewed = {view.name: np.empty(self.rows.sum()) for view in stress.VIEWS}
        # each network's features of the images it trained on, and of those it did not see
        self.trained_on, self.unseen = [], []
        self.seconds = 0.0  # what the battery's predictions took

    def observe(self, member, group, x_trained, x_held):
        """A network trained on ``x_trained`` that predicts all of the held-out X-rays ``x_held``
        (both ``Inputs``): one model with a validation split."""
        self._view(member, group, x_held.subset(self.rows), slice(None))
        self.trained_on.append(features_of(member, x_trained, group))
        self.unseen.append(features_of(member, x_held, group))

    def observe_fold(self, member, group, x, held):
        """A fold model: trained on the X-rays of ``x`` (``Inputs`` of all the held-out X-rays)
        outside the boolean mask ``held``, it predicts those inside it. Its features of ``x`` are
        read once and split by the mask."""
        self._view(member, group, x.subset(held & self.rows), held[self.rows])
        trained_on, unseen = features_apart(member, x, held, group)
        self.trained_on.append(trained_on)
        self.unseen.append(unseen)

    def _view(self, member, group, x, where):
        """The battery's views of x (the study's rows at ``where``) predicted by ``member``."""
        start = time.perf_counter()
        for name, viewed in stress.views_of(x).items():
            self.viewed[name][where] = held_out_proba([member], viewed, group, self.zooms)
        self.seconds += time.perf_counter() - start

    def conclude(self, calibrated, calibrate, threshold, class_names):
        """The battery's summary (``stress.summarise``) at ``threshold``, the views calibrated by
        ``calibrate`` like the X-rays as they are (``calibrated``: their calibrated P(PNEUMONIA),
        one per held-out X-ray), and the typicality model fitted on the networks' features ->
        (summary, ``typicality.Typicality``)."""
        viewed = {stress.AS_IS.name: calibrated[self.rows],
                  **{name: calibrate(raw) for name, raw in self.viewed.items()}}
        battery = stress.summarise(self.y[self.rows], viewed, threshold, class_names)
        return battery, typicality.fit(self.trained_on, self.unseen)
