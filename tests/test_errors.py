"""The exception tree: one root, and every class drawn in the module docstring under its parent."""

from __future__ import annotations

import inspect
import re

from aria import errors


def _drawn_parents() -> dict[str, str | None]:
    """Each class drawn in the docstring's tree, with the class drawn as its parent."""
    assert errors.__doc__ is not None
    parents: dict[str, str | None] = {}
    stack: list[str] = []  # the path from the root to the last class drawn
    for line in errors.__doc__.splitlines():
        match = re.match(r"^    ([ │]*)(?:[├└]── )?([A-Z]\w+)(?:\s|$)", line)
        if match is None or (not stack and match.group(2) != "AriaError"):
            continue
        depth = len(match.group(1)) // 4 + (1 if "──" in line else 0)
        del stack[depth:]
        parents[match.group(2)] = stack[-1] if stack else None
        stack.append(match.group(2))
    return parents


def test_every_error_class_is_drawn_under_its_parent() -> None:
    classes = {
        name: cls
        for name, cls in vars(errors).items()
        if inspect.isclass(cls) and issubclass(cls, errors.AriaError)
    }
    parents = _drawn_parents()
    assert sorted(parents) == sorted(classes) == sorted(errors.__all__)
    for name, cls in classes.items():
        parent = parents[name]
        assert cls.__bases__ == ((getattr(errors, parent),) if parent else (Exception,)), name


def test_moved_errors_are_the_same_class_where_they_were() -> None:
    from aria.engines import downloads

    assert downloads.DownloadError is errors.DownloadError
    assert issubclass(errors.DownloadError, errors.EngineError)
    assert errors.ResidencyError("x", engines=["a"], over_by_mb=2.0).engines == ("a",)
    assert errors.ModeUnavailable.code == "mode_unavailable"
