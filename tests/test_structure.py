"""The package's shape: imports run one way, from the command-line tools down to the layers.

Every import counts, those inside functions included: a function-level import that closes a
circle is still a circle.
"""
import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# Each module may import only modules of a lower level.
LEVELS = {
    # the bottom: settings, errors, files, the contract the two implementations share
    "contract": 0, "fast": 0, "fast.config": 0, "fast.errors": 0, "fast.files": 0, "fast.runtime": 0,
    # the layers' machinery and the reference layers; image formats, metrics, augmentation, optimisers
    "fast.kernels": 1, "reference": 1, "reference.layers": 1, "fast.dicom": 1, "fast.metrics": 1,
    "fast.augment": 1, "fast.optim": 1, "fast.distributed": 1,
    # the fast layers, the data pipeline, calibration
    "fast.layers": 2, "fast.data": 2, "fast.calibration": 2,
    "fast.model": 3, "fast.framing": 3,
    "fast.trainer": 4, "fast.inference": 4,
    # pictures and what the commands share
    "fast.report": 5, "fast.cli": 5,
    # the command-line tools
    "fast.train": 6, "fast.predict": 6, "fast.evaluate": 6,
}


def _module_name(path):
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _project_imports(path):
    """Every project module ``path`` imports, at any depth of the code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # ``from fast import data`` imports the module fast.data
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {n for n in names if n in LEVELS}
    return found


def _graph():
    files = [REPO_ROOT / "contract.py", *sorted((REPO_ROOT / "fast").glob("*.py")),
             *sorted((REPO_ROOT / "reference").glob("*.py"))]
    return {_module_name(f): _project_imports(f) - {_module_name(f)} for f in files}


def test_every_module_has_a_level():
    assert set(_graph()) <= set(LEVELS), "give the new module a level in LEVELS"


def test_imports_run_one_way_from_the_tools_down_to_the_layers():
    wrong = [(module, imported) for module, imports in _graph().items() for imported in imports
             if LEVELS[imported] >= LEVELS[module]]
    assert wrong == []


def test_the_import_graph_has_no_cycle():
    graph = _graph()
    state = {}

    def visit(module, trail):
        if state.get(module) == "open":
            raise AssertionError(f"import cycle: {' -> '.join(trail + [module])}")
        if state.get(module) == "done":
            return
        state[module] = "open"
        for imported in sorted(graph.get(module, ())):
            visit(imported, trail + [module])
        state[module] = "done"

    for module in sorted(graph):
        visit(module, [])


def test_the_checker_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from fast import report\n    import fast.model\n")
    assert _project_imports(source) == {"fast", "fast.report", "fast.model"}


def test_reference_imports_nothing_from_fast():
    graph = _graph()
    assert not any(m.startswith("fast") for m in graph["reference.layers"] | graph["contract"])


def test_importing_the_package_changes_nothing_global():
    import subprocess
    import sys
    # OpenCV's own import adds to LD_LIBRARY_PATH; the project sets nothing
    code = ("import os; before = dict(os.environ); "
            "import fast, fast.layers, fast.model, fast.inference, fast.trainer, fast.predict; "
            "changed = {k for k in set(os.environ) | set(before) if os.environ.get(k) != before.get(k)}; "
            "assert changed <= {'LD_LIBRARY_PATH'}, changed")
    env = {k: v for k, v in __import__("os").environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                            cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 0, result.stderr


def test_every_command_line_parser_refuses_abbreviated_flags(capsys):
    """``--sal x`` must not pass for ``--saliency x``: every parser in fast/ says allow_abbrev=False
    (checked in the source), and each command refuses an abbreviation (checked by running it)."""
    lacking = []
    for path in sorted((REPO_ROOT / "fast").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "ArgumentParser":
                keywords = {k.arg: k.value for k in node.keywords}
                refused = isinstance(keywords.get("allow_abbrev"), ast.Constant) and \
                    keywords["allow_abbrev"].value is False
                if not refused:
                    lacking.append(f"{path.name}:{node.lineno}")
    assert lacking == []
    from fast import evaluate, predict, report, train
    for parse, argv in ((predict.parse_args, ["--sal", "out", "x.png"]), (evaluate.parse_args, ["--spl", "val"]),
                        (report.parse_args, ["run", "--ou", "x"]), (train.parse_args, ["--epoch", "2"])):
        with pytest.raises(SystemExit) as exit_info:
            parse(argv)
        assert exit_info.value.code == 2
        assert "unrecognized arguments" in capsys.readouterr().err
