"""What a wheel holds: every package the code imports (a non-editable ``pip install .`` once
shipped without search.trial and search.engines) and the report's templates."""

from __future__ import annotations

import sys
from fnmatch import fnmatch
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
CODE = ("search", "models", "data_pipeline", "reports", "bench")


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _packaged() -> set[str]:
    conf = _setuptools()
    find = conf.get("packages", {})
    if isinstance(find, list):  # an explicit list: exactly those
        return set(find)
    include = find.get("find", {}).get("include", ["*"])
    # setuptools' find_namespace_packages: every folder whose dotted name matches a pattern
    dirs = (d for top in CODE for d in (ROOT / top).rglob("*") if d.is_dir())
    names = {".".join(d.relative_to(ROOT).parts) for d in dirs}
    return {n for n in names | set(CODE) if any(fnmatch(n, pat) for pat in include)}


def test_every_package_with_code_is_in_the_wheel() -> None:
    dirs = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for top in CODE
        for p in (ROOT / top).rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert {"search.trial", "search.engines"} <= dirs  # what the check is about
    packaged = _packaged()
    assert dirs <= packaged, sorted(dirs - packaged)


def test_the_report_templates_are_package_data() -> None:
    data = _setuptools().get("package-data", {})
    templates = sorted((ROOT / "reports" / "templates").glob("*"))
    assert templates
    packaged = _packaged()
    for path in templates:
        package = ".".join(path.parent.relative_to(ROOT).parts)
        rel = path.name
        patterns = data.get(package, [])
        if not patterns:  # or as the parent package's data, by relative path
            package, rel = "reports", f"templates/{path.name}"
            patterns = data.get(package, [])
        assert package in packaged, package
        assert any(fnmatch(rel, pat) for pat in patterns), (path, data)
