"""The documentation site: strict mkdocs build, complete nav, complete API reference.

`mkdocs build --strict` turns every warning into an error: a broken link or
anchor, a page left out of the nav, an API reference that does not resolve,
or a docstring that griffe cannot parse (e.g. a malformed Google `Args:`
section). The build takes a few seconds; no TensorFlow import is needed
because mkdocstrings reads the sources statically.
"""

import ast
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

# The API reference: one page per public module, `docs/api/<name>.md` documents `tflip.<name>`.
API_MODULES = (
    "layers", "penalties", "models", "callbacks", "optimizers", "losses",
    "metrics", "attacks", "lipschitz", "datasets", "ops", "tuner", "export",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Builds the site once (strict) and returns `(returncode, output, site_dir)`."""
    site_dir = tmp_path_factory.mktemp("docs") / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")  # silence the theme's banner in the log
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    return result.returncode, result.stdout + result.stderr, site_dir


def test_site_builds_in_strict_mode(site):
    returncode, output, site_dir = site
    if returncode != 0:
        print(output)
    assert returncode == 0, "mkdocs build --strict failed (each WARNING is an error):\n" + output
    assert (site_dir / "index.html").is_file()
    for module in API_MODULES:
        assert (site_dir / "api" / module / "index.html").is_file(), module


def _nav_files(entries):
    for entry in entries:
        if isinstance(entry, str):
            yield entry
        elif isinstance(entry, dict):
            for value in entry.values():
                yield from _nav_files([value] if isinstance(value, str) else value)


def test_every_page_is_in_the_nav():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    nav = list(_nav_files(config["nav"]))
    assert len(nav) == len(set(nav)), "a page is listed twice in the nav"
    missing_files = [page for page in nav if not (DOCS / page).is_file()]
    assert not missing_files, f"nav entries without a file: {missing_files}"
    pages = sorted(
        path.relative_to(DOCS).as_posix()
        for pattern in ("*.md", "methods/*.md", "api/*.md")
        for path in DOCS.glob(pattern)
    )
    not_in_nav = [page for page in pages if page not in nav]
    assert not not_in_nav, f"pages missing from the nav in mkdocs.yml: {not_in_nav}"
    assert {f"api/{module}.md" for module in API_MODULES} <= set(nav)


def _inventory(site_dir):
    """`{name: priority}` of the objects mkdocstrings rendered (Sphinx `objects.inv`, version 2)."""
    data = (site_dir / "objects.inv").read_bytes()
    lines = zlib.decompress(data.split(b"\n", 4)[4]).decode().splitlines()
    return {line.split(" ")[0]: line.split(" ")[2] for line in lines if line.strip()}


def _module_path(module):
    path = ROOT / Path(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _documented_definitions(module):
    """Public classes and functions a module defines, or re-exports if it is a package.

    Re-exported names of assignments (aliases such as `GP = GradientPenalty`)
    are skipped: they have no docstring of their own.
    """
    path = _module_path(module)
    tree = ast.parse(path.read_text())
    names = []
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and not node.name.startswith("_"):
            names.append(node.name)
        elif (isinstance(node, ast.ImportFrom) and path.name == "__init__.py"
              and node.module and node.module.startswith("tflip.")):
            for alias in node.names:
                name = alias.asname or alias.name
                if not name.startswith("_") and alias.name in _documented_definitions(node.module):
                    names.append(name)
    return names


def test_api_reference_renders_every_public_class_and_function(site):
    returncode, _, site_dir = site
    if returncode != 0:
        pytest.skip("the build failed (reported by test_site_builds_in_strict_mode)")
    rendered = {name for name, priority in _inventory(site_dir).items() if priority == "1"}
    expected = []
    for module in API_MODULES:
        if module == "ops":  # a namespace of submodules: each submodule is documented
            submodules = sorted(p.stem for p in (ROOT / "tflip" / "ops").glob("[!_]*.py"))
            expected += [f"tflip.ops.{sub}.{name}" for sub in submodules
                         for name in _documented_definitions(f"tflip.ops.{sub}")]
        else:
            expected += [f"tflip.{module}.{name}" for name in _documented_definitions(f"tflip.{module}")]
    assert len(expected) > 50
    missing = sorted(set(expected) - rendered)
    assert not missing, f"public API not rendered in docs/api/ (check the mkdocstrings options): {missing}"


def _unindented_examples(path):
    """`(line, object)` of docstrings whose `Example(s):` header is not followed by an indented block."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        docstring = ast.get_docstring(node, clean=False)
        if not docstring:
            continue
        lines = docstring.split("\n")
        for i, line in enumerate(lines):
            if line.strip() not in ("Example:", "Examples:"):
                continue
            following = next((later for later in lines[i + 1:] if later.strip()), None)
            if following is not None and len(following) - len(following.lstrip()) <= len(line) - len(line.lstrip()):
                found.append((node.body[0].lineno + i, getattr(node, "name", "module docstring")))
    return found


def test_docstring_examples_are_indented_under_their_section():
    """A Google `Example:` section needs its content indented below the header.

    Otherwise griffe does not see a section, and Markdown renders the `>>>`
    prompts as nested block quotes (a `>>> # comment` line even becomes a
    heading in the page's table of contents).
    """
    problems = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in sorted((ROOT / "tflip").rglob("*.py"))
        for line, name in _unindented_examples(path)
    ]
    assert not problems, "indent the examples below `Example:` in:\n" + "\n".join(problems)
