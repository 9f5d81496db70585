"""The package's shape: imports run one way, from the command-line tools down to the layers.

``LEVELS`` is the layering, written here and in ``docs/architecture.md`` (whose table this test
reads, so that the two cannot drift). Every import counts, those inside functions included: a
function-level import that closes a circle is still a circle.
"""
import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURE_DOC = REPO_ROOT / "docs" / "architecture.md"

# Each module may import only modules of a lower level. The folders are the layers: the bottom,
# then the networks (fast/nn), the images (fast/data) and the scoring of predictions
# (fast/scoring), the trained classifier (fast/inference.py), training (fast/training), and the
# pictures and commands at the top of fast/.
LEVELS = {
    # the bottom: the contract the two layer implementations share, threads, files, run directories,
    # what older files were made with
    "contract": 0, "fast": 0, "fast.runtime": 0, "fast.files": 0, "fast.runs": 0, "fast.recorded": 0,
    "fast.nn": 0, "fast.data": 0, "fast.scoring": 0, "fast.training": 0, "fast.pictures": 0, "reference": 0,
    # the leaves of each folder
    "reference.layers": 1, "fast.nn.kernels": 1, "fast.data.errors": 1, "fast.data.augment": 1,
    "fast.scoring.metrics": 1, "fast.training.optim": 1, "fast.data.screening": 1,
    "fast.scoring.typicality": 1,
    "fast.nn.layers": 2, "fast.data.dicom": 2, "fast.scoring.calibration": 2,
    "fast.nn.model": 3, "fast.data.images": 3, "fast.data.folders": 3,
    "fast.nn.model_file": 4, "fast.data.normalise": 4, "fast.pictures.plots": 4,
    "fast.data.pixels": 5, "fast.scoring.stress": 5,
    "fast.data.cache": 6,
    "fast.data.splits": 7,
    "fast.data.dataset": 8,
    # the trained classifier: its record, its test-time views, its answers
    "fast.inference": 9,
    # training builds on all of it; the pictures of a run or a model file
    "fast.training.config": 10, "fast.training.distributed": 10, "fast.pictures.drawing": 10,
    "fast.scoring.held_out": 10,
    "fast.training.loop": 11,
    "fast.training.trainer": 12,
    # what the commands share
    "fast.cli": 13,
    # the command-line tools
    "fast.train": 14, "fast.predict": 14, "fast.evaluate": 14, "fast.report": 14,
}


def _module_name(path):
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_names(path):
    """Every module name ``path`` imports, at any depth of the code (``from a import b`` names
    both a and a.b, which may be a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _project_imports(path):
    """Every project module ``path`` imports."""
    return _imported_names(path) & set(LEVELS)


def _project_files():
    return [REPO_ROOT / "contract.py", *sorted((REPO_ROOT / "fast").rglob("*.py")),
            *sorted((REPO_ROOT / "reference").glob("*.py"))]


def _graph():
    return {_module_name(f): _project_imports(f) - {_module_name(f)} for f in _project_files()}


def test_every_module_has_a_level():
    assert set(_graph()) == set(LEVELS), "give a new module a level in LEVELS and docs/architecture.md"


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
    source.write_text("def f():\n    from fast import report\n    import fast.nn.model\n")
    assert _project_imports(source) == {"fast", "fast.report", "fast.nn.model"}


def test_the_layering_in_docs_architecture_is_the_one_checked_here():
    """docs/architecture.md's table of levels: one row per level, its modules in backticks."""
    documented = {}
    for line in ARCHITECTURE_DOC.read_text().splitlines():
        row = re.match(r"\|\s*(\d+)\s*\|([^|]*)\|", line)
        if row:
            for module in re.findall(r"`([\w.]+)`", row.group(2)):
                documented[module] = int(row.group(1))
    assert documented == LEVELS


def test_a_package_init_holds_only_its_docstring():
    """Importing a folder runs nothing and re-exports nothing: a name is found in its module."""
    for init in (REPO_ROOT / "fast").rglob("__init__.py"):
        body = ast.parse(init.read_text()).body
        assert len(body) == 1 and isinstance(body[0], ast.Expr), init


def test_only_the_plots_import_matplotlib():
    """A command that draws nothing starts without matplotlib: it is imported in one module."""
    importing = sorted(_module_name(f) for f in _project_files()
                       if any(n == "matplotlib" or n.startswith("matplotlib.") for n in _imported_names(f)))
    assert importing == ["fast.pictures.plots"]


def test_reference_imports_nothing_from_fast():
    graph = _graph()
    assert not any(m.startswith("fast") for m in graph["reference.layers"] | graph["contract"])


def test_no_test_study_or_benchmark_imports_a_test_module_or_edits_sys_path():
    """Helpers shared by tests live in tests/helpers.py and tests/conftest.py; studies and
    benchmarks run as modules of the checkout (``python -m studies.three_seeds``)."""
    tests = {p.stem for p in (REPO_ROOT / "tests").rglob("test_*.py")}
    wrong = []
    for folder in ("tests", "studies", "bench"):
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            text = path.read_text()
            if _imported_names(path) & (tests | {f"bench.{p.stem}" for p in (REPO_ROOT / "bench").glob("test_*.py")}):
                wrong.append(f"{path.relative_to(REPO_ROOT)} imports a test module")
            if "sys.path" in text and path.name != "test_structure.py":
                wrong.append(f"{path.relative_to(REPO_ROOT)} edits sys.path")
    assert wrong == []


def test_importing_the_package_changes_nothing_global():
    # OpenCV's own import adds to LD_LIBRARY_PATH; the project sets nothing
    code = ("import os; before = dict(os.environ); "
            "import fast, fast.nn.layers, fast.nn.model, fast.inference, fast.training.trainer, fast.predict; "
            "changed = {k for k in set(os.environ) | set(before) if os.environ.get(k) != before.get(k)}; "
            "assert changed <= {'LD_LIBRARY_PATH'}, changed")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                            cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 0, result.stderr


def test_every_command_line_parser_refuses_abbreviated_flags(capsys):
    """``--sal x`` must not pass for ``--saliency x``: every parser in fast/ and studies/ says
    allow_abbrev=False (checked in the source), and each command refuses an abbreviation (checked
    by running it)."""
    lacking = []
    for path in sorted([*(REPO_ROOT / "fast").rglob("*.py"), *(REPO_ROOT / "studies").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "ArgumentParser":
                keywords = {k.arg: k.value for k in node.keywords}
                refused = isinstance(keywords.get("allow_abbrev"), ast.Constant) and \
                    keywords["allow_abbrev"].value is False
                if not refused:
                    lacking.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
    assert lacking == []
    from fast import evaluate, predict, report, train
    for parse, argv in ((predict.parse_args, ["--sal", "out", "x.png"]), (evaluate.parse_args, ["--spl", "val"]),
                        (report.parse_args, ["run", "--ou", "x"]), (train.parse_args, ["--epoch", "2"])):
        with pytest.raises(SystemExit) as exit_info:
            parse(argv)
        assert exit_info.value.code == 2
        assert "unrecognized arguments" in capsys.readouterr().err
