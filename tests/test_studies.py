"""The studies as commands: what they cannot read is one line, and no input is written over."""
import pytest

from studies import attach_typicality, odd_inputs, run, stress_study


@pytest.mark.parametrize("study", [attach_typicality, odd_inputs, stress_study])
def test_a_missing_model_is_one_line_and_status_1(study, tmp_path, capsys):
    assert run(lambda: study.main(["--model", str(tmp_path / "nowhere.npz")])) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no such model file" in err and err.count("\n") == 1


def test_the_stress_studys_json_never_goes_over_a_model(tmp_path, capsys):
    model = tmp_path / "m.npz"
    model.write_bytes(b"a model")
    with pytest.raises(SystemExit) as exit_:
        stress_study.main(["--model", str(model), "--json", str(model)])
    assert exit_.value.code == 2 and "name a .json file" in capsys.readouterr().err
    assert model.read_bytes() == b"a model"
