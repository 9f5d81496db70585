"""What the commands share (``fast.cli``): each says which model answers."""
import pytest

from fast import inference


@pytest.mark.slow
def test_every_command_says_which_model_answers(tiny_run, capsys):
    """File, input size, threshold, networks and views, on stderr; the repr says the same."""
    classifier = inference.load_classifier(tiny_run)
    line = (f"{tiny_run / 'model.npz'}: 32x32 px input, threshold {classifier.threshold:.4f}, "
            "one network, 3 test-time views")
    assert classifier.describe() == line and repr(classifier) == f"<Classifier {line}>"
    shipped = inference.load_classifier()
    members = len(shipped.members)
    # shown as a user would write it: relative to the working folder, where it lies under it
    shown = inference.shown_path(inference.SHIPPED_MODEL)
    assert repr(shipped).startswith(f"<Classifier {shown} (the shipped model): "
                                    f"{shipped.image_size}x{shipped.image_size} px input")
    assert (f"an ensemble of {members} networks" if members > 1 else "one network") in repr(shipped)
    from fast import cli
    assert cli.open_classifier(str(tiny_run)) is not None
    assert capsys.readouterr().err == f"model {line}\n"
