"""The pictures one by one: each is a readable PNG that says what it shows (the threshold, the
operating points, the sizes, the bias, the views beyond their limits)."""
import numpy as np

from fast.pictures import plots

from helpers import assert_readable_png, texts_of

def test_saliency_overlay_is_a_readable_png(tmp_path):
    yy, xx = np.mgrid[0:320, 0:320]
    xray = (0.3 + 0.5 * np.exp(-((yy - 160) ** 2 + (xx - 120) ** 2) / 8000)).astype(np.float32)
    cam = np.zeros((8, 8))
    cam[3:5, 2:4] = 1.0
    path = plots.save_saliency_overlay(tmp_path / "one.png", xray, cam, "a title", 64)
    assert_readable_png(path)


def test_the_reliability_diagram_marks_the_threshold(drawn, tmp_path):
    rng = np.random.default_rng(0)
    prob = rng.uniform(0, 1, 200)
    y = (rng.uniform(0, 1, 200) < prob).astype(int)
    plots.plot_reliability({"test": (y, prob)}, tmp_path / "r.png", threshold=0.7429)
    fig = drawn["r.png"]
    marks = [line for ax in fig.axes for line in ax.get_lines()
             if np.allclose(line.get_xdata(), 0.7429) and len(set(line.get_xdata())) == 1]
    assert len(marks) == 2  # on the diagram and on the counts below it
    assert any("threshold 0.743" in text for text in texts_of(fig))


def test_captions_say_the_size_the_model_sees(drawn, tmp_path):
    xray = np.full((320, 320), 0.5, dtype=np.float32)
    plots.save_saliency_overlay(tmp_path / "one.png", xray, np.zeros((8, 8)), "a title", 64)
    texts = " ".join(texts_of(drawn["one.png"]))
    assert "shown at 320x320" in texts and "the model sees it at 64x64 pixels" in texts
    assert "as the model sees it" not in texts


def test_the_reliability_diagram_sizes_points_by_their_bins_counts_and_names_an_upward_bias(drawn, tmp_path):
    rng = np.random.default_rng(1)
    y = (rng.uniform(0, 1, 400) < 0.4).astype(int)
    prob = np.clip(0.4 + 0.3 + rng.normal(0, 0.05, 400), 0, 1)  # about 0.7 for a 0.4 share: biased upward
    plots.plot_reliability({"test": (y, prob)}, tmp_path / "r.png")
    fig = drawn["r.png"]
    texts = texts_of(fig)
    assert any("biased upward" in t for t in texts)
    points = [c for c in fig.axes[0].collections if len(c.get_offsets())]
    sizes = points[0].get_sizes()
    counts = [int(t) for t in texts if t.isdigit()]  # the count over each bar
    assert sum(counts) == 400
    assert len(sizes) == len(counts) and np.argmax(sizes) == np.argmax(counts)
    prob = rng.uniform(0, 1, 20000)
    calibrated = (rng.uniform(0, 1, 20000) < prob).astype(int)  # mean within 0.01 of its share
    plots.plot_reliability({"calibrated": (calibrated, prob)}, tmp_path / "c.png")
    assert not any("biased" in t for t in texts_of(drawn["c.png"]))


def test_the_roc_curve_marks_the_operating_point_and_the_models_own(drawn, tmp_path):
    rng = np.random.default_rng(2)
    y = np.r_[np.zeros(50, int), np.ones(50, int)]
    prob = np.clip(0.3 * y + rng.uniform(0, 0.7, 100), 0, 1)
    plots.plot_roc(y, prob, 0.4, tmp_path / "roc.png", own_threshold=0.6)
    texts = " ".join(texts_of(drawn["roc.png"]))
    assert "operating point, threshold 0.400" in texts and "model's own, threshold 0.600" in texts
    plots.plot_roc(y, prob, 0.4, tmp_path / "one.png")
    assert "model's own" not in " ".join(texts_of(drawn["one.png"]))


def test_the_stress_picture_marks_each_view_beyond_its_limit(drawn, tmp_path):
    from fast.scoring import stress
    y = np.array([0] * 20 + [1] * 20)
    base = np.r_[np.full(20, 0.2), np.full(20, 0.8)]
    moved = base.copy()
    moved[:4] = 0.9  # +0.20 of NORMAL: beyond any limit
    summary = stress.summarise(y, {"as is": base, "crop 0.9": base, "noise 0.01": moved}, 0.5)
    plots.plot_stress(summary, tmp_path / "s.png")
    fig = drawn["s.png"]
    labels = {t.get_text(): t.get_color() for t in fig.axes[0].get_xticklabels()}
    assert labels["noise 0.01"] == "tab:red" and labels["crop 0.9"] == "black"
    assert any("1 of 2 views beyond their limits" in t for t in texts_of(fig))
    plots.plot_stress(summary, tmp_path / "f.png", family="framing")
    assert [t.get_text() for t in drawn["f.png"].axes[0].get_xticklabels()] == ["as is", "crop 0.9"]
