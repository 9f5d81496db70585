"""The model shipped in models/: loads without pickle, scores the card's test figures, draws its evidence."""
import re

import numpy as np
import pytest

from fast import inference, report
from fast.pictures.drawing import PICTURES, RUN_ONLY
from fast.inference import SHIPPED_MODEL, load_classifier
from fast.scoring import metrics

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


@pytest.mark.slow
def test_the_shipped_model_reproduces_the_cards_test_figures_and_draws_its_evidence(xray_root, tmp_path,
                                                                                   monkeypatch, capsys):
    """``python -m fast.report models/pneumonia_cnn.npz --out DIR``, as the card says: the test
    split scored to the card's figures, and the pictures of a model file drawn."""
    answered = []

    def score_split(classifier, *args, **kwargs):
        answers = real_score_split(classifier, *args, **kwargs)
        answered.append(answers.scored(classifier.threshold))
        return answers

    real_score_split = report.score_split
    monkeypatch.setattr(report, "score_split", score_split)
    out = tmp_path / "evidence"
    assert report.main([str(SHIPPED_MODEL), "--out", str(out), "--data", str(xray_root)]) == 0
    (figures,) = answered
    assert figures["n"] == 624
    assert figures["roc_auc"] == pytest.approx(_card_figure("test ROC AUC"), abs=5e-5)
    assert figures["accuracy"] == pytest.approx(_card_figure("test accuracy"), abs=5e-5)
    assert figures["ece"] == pytest.approx(_card_figure("test ECE"), abs=5e-5)
    printed = capsys.readouterr()
    assert metrics.format_metrics_table({"test": figures}) in printed.out
    assert f"model {inference.shown_path(SHIPPED_MODEL)} (the shipped model)" in printed.err
    # a model file has no training history and no held-out stress battery of its own
    drawn = {name for key, name in PICTURES.items() if key not in RUN_ONLY}
    assert {p.name for p in out.iterdir()} == drawn
    for name in drawn:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_the_card_shows_how_to_draw_its_pictures_and_names_no_other():
    """Every picture the card names is one the report command draws from the model file alone
    (not a training run's, which does not ship), and the card gives that command."""
    text = CARD.read_text()
    assert "python -m fast.report models/pneumonia_cnn.npz --out" in text
    named = set(re.findall(r"[\w-]+\.png", text))
    assert named and named <= {name for key, name in PICTURES.items() if key not in RUN_ONLY}


@pytest.mark.slow
def test_the_shipped_model_flags_what_is_not_a_chest_xray(xray_root):
    """Blank, noise, colour, text, tiny, synthetic patterns, and training X-rays inverted (a
    misread MONOCHROME1) or turned by 90 degrees: each one gets a warning (``studies.odd_inputs``,
    whose figures the card reports); real X-rays as they are mostly do not."""
    from studies.odd_inputs import FROM_XRAYS, SYNTHETIC, flagged_share, odd_inputs
    from fast.data.splits import load_splits
    classifier = load_classifier()
    assert classifier.record.typicality is not None
    splits, _ = load_splits(xray_root, ("train",), classifier.image_size, seed=0, val_fraction=0.0, progress=False)
    pixels, _, _ = splits["train"]
    xrays = pixels.levels(np.arange(0, len(pixels), len(pixels) // 20)[:20])
    kinds = odd_inputs(xrays, seed=1)
    assert set(kinds) == set(SYNTHETIC) | set(FROM_XRAYS)
    for kind, images in kinds.items():
        warned, _ = flagged_share(classifier, images[:20])
        assert warned == 1.0, f"{kind}: {warned:.0%} flagged"
    as_they_are, _ = flagged_share(classifier, list(xrays))
    assert as_they_are <= 0.1


@pytest.mark.slow
def test_the_shipped_model_flags_about_one_percent_of_the_training_xrays_it_did_not_see(xray_root):
    """Out of fold (each network's own fold, as the threshold was chosen): about 1 %, at most 3 %."""
    from studies.odd_inputs import out_of_fold_share
    from fast.data.splits import load_splits
    classifier = load_classifier()
    splits, _ = load_splits(xray_root, ("train",), classifier.image_size, seed=0, val_fraction=0.0, progress=False)
    pixels, y, paths = splits["train"]
    share = out_of_fold_share(classifier, pixels, y, paths, seed=0)
    assert share == pytest.approx(classifier.record.typicality.held_out_rate, abs=0.002)
    assert share <= 0.03
