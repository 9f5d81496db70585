"""The model shipped in models/: loads without pickle, and scores the card's test ROC AUC."""
import re
from pathlib import Path

import numpy as np
import pytest

from fast import evaluate, metrics
from fast.inference import SHIPPED_MODEL, load_classifier

CARD = SHIPPED_MODEL.parent / "MODEL_CARD.md"


def _card_figure(name):
    """A figure of the card's headline table, e.g. "test ROC AUC" -> 0.9xxx."""
    match = re.search(rf"\|\s*{re.escape(name)}\s*\|\s*\**([0-9.]+)", CARD.read_text())
    assert match, f"{CARD} has no row {name!r}"
    return float(match.group(1))


def test_the_shipped_model_and_its_card_are_in_the_repository():
    assert SHIPPED_MODEL.is_file() and CARD.is_file()
    assert SHIPPED_MODEL.stat().st_size < 16 * 2 ** 20  # reasonable in git


def test_the_shipped_model_loads_without_pickle():
    with np.load(SHIPPED_MODEL, allow_pickle=False) as npz:
        assert all(npz[k].dtype != object for k in npz.files)
    classifier = load_classifier(SHIPPED_MODEL)
    assert 0 < classifier.threshold < 1 and classifier.image_size >= 32


def test_the_shipped_model_reproduces_the_cards_test_figures(xray_root):
    classifier = load_classifier(SHIPPED_MODEL)
    images, y, _ = evaluate.split_images(xray_root, "test", classifier.image_size)
    prob = classifier.probability(images)
    scored = metrics.scored(y, prob, classifier.threshold)
    assert scored["n"] == 624
    assert scored["roc_auc"] == pytest.approx(_card_figure("test ROC AUC"), abs=5e-5)
    assert scored["accuracy"] == pytest.approx(_card_figure("test accuracy"), abs=5e-5)
    assert scored["ece"] == pytest.approx(_card_figure("test ECE"), abs=5e-5)
