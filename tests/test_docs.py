"""The documentation site builds with ``mkdocs build --strict`` (no warnings), from the docstrings,
the examples and BENCHMARKS.md. Skipped where the docs extra (``pip install -e '.[docs]'``) is
not installed; ``make test`` installs it."""

import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import pytest

for module in ("mkdocs", "mkdocstrings", "mkdocstrings_handlers.python", "material", "pymdownx"):
    pytest.importorskip(module, reason="the docs extra is not installed: pip install -e '.[docs]'")

ROOT = pathlib.Path(__file__).parents[1]


def _load_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    return hooks


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site_dir = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "WARNING" not in out.stdout + out.stderr
    return site_dir


def _text(site, page: str) -> str:
    return (site / page / "index.html").read_text()


def test_site_builds_strict_with_the_api_reference(site):
    api = _text(site, "api/inference")
    for name in ("TSMC", "MDPO", "GradientDescent", "CEM", "MPPI", "NUTS"):
        assert f'id="ppl_control.inference.{name}"' in api
    assert "Tempered SMC with self-tuning HMC moves" in api  # the class docstring, rendered
    assert 'id="ppl_control.trajectory_model"' in _text(site, "api/model")
    assert "examples/custom_problem.py" in _text(site, "examples")


def test_algorithm_pages_quote_benchmarks_md(site):
    """Each algorithm's page carries its rows of BENCHMARKS.md's side-by-side table (read here
    with a plain regex, independently of the hook that renders them)."""
    text = (ROOT / "BENCHMARKS.md").read_text()
    start = text.index("## Algorithms side by side")
    end = text.find("\n## ", start + 1)
    benchmarks = text[start:end if end >= 0 else None]  # other sections' tables have other columns
    pages = {"tsmc": "tsmc", "mdpo": "mdpo", "gradient_descent": "mdpo", "cem": "cem", "mppi": "mppi",
             "nuts": "nuts"}
    for algorithm, page in pages.items():
        rows = re.findall(rf"^\| (\w+) \| {algorithm} \| ([^|]+) \|", benchmarks, flags=re.M)
        assert rows, f"BENCHMARKS.md has no row for {algorithm}"
        html = _text(site, f"algorithms/{page}")
        for problem, best_cost in rows:
            assert re.search(rf"<td>{problem}</td>\s*<td>{re.escape(best_cost.strip())}</td>", html), (
                algorithm, problem)
    assert 'id="algorithms-side-by-side"' in _text(site, "benchmarks")


def test_benchmark_rows_of_a_table():
    hooks = _load_hooks()
    text = "\n".join([
        "## Side by side", "", "| problem | algorithm | best cost | seconds |", "|---|---|---|---:|",
        "| a | tsmc | 2.5 | 1 |", "| a | gd | 1.5 | 1 |", "| b | tsmc | 7 | 2 |", "| b | nuts | n/a | 2 |",
        "", "## Other", "| method | x |", "|---|---|", "| tsmc | 1 |",
    ])
    rows = hooks.benchmark_rows("tsmc", text, "../benchmarks.md")
    assert "[Side by side](../benchmarks.md#side-by-side)" in rows
    assert "| a | 2.5 | 1 | 1.5 (gd) |" in rows and "| b | 7 | 2 | 7 (tsmc) |" in rows
    assert "Other" not in rows
    assert hooks.benchmark_rows("cem", text, "../benchmarks.md") is None
