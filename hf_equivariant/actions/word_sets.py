"""Word-set data: the built-in JSON files shipped in ``hf_equivariant/data/word_sets`` and user files.

Built-in sets are addressed by name only (``"gender"``); a name is never read as a path. Files of your own go
through :func:`load_word_set_file` explicitly. Every file is parsed and validated here, once, for every consumer
(word-swap factors, the demo corpus, evaluations).
"""

from __future__ import annotations

import functools
import json
import os
import re
from importlib import resources
from typing import Any

__all__ = ["builtin_word_set_names", "word_set_data", "load_word_set_file", "validate_word_set_data",
           "span_set_names", "span_set_data"]

_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def _folder() -> Any:
    return resources.files("hf_equivariant") / "data" / "word_sets"


@functools.lru_cache(maxsize=1)
def _builtin_names() -> tuple[str, ...]:
    return tuple(sorted(p.name[:-5] for p in _folder().iterdir() if p.name.endswith(".json")))


def builtin_word_set_names() -> list[str]:
    """Names of the word sets shipped with the package (``gender``, ``race``, ...)."""
    return list(_builtin_names())


@functools.lru_cache(maxsize=64)
def _read_builtin(name: str) -> str:
    return (_folder() / f"{name}.json").read_text(encoding="utf-8")


def word_set_data(name: str) -> dict[str, Any]:
    """The parsed, validated built-in word set ``name`` (a fresh copy: callers may modify it)."""
    if not isinstance(name, str) or not _NAME.match(name) or name not in _builtin_names():
        hint = " (to use a file of your own, call hf_equivariant.load_word_set_file(path))" if isinstance(
            name, str) and (os.sep in name or "/" in name or name.endswith(".json")) else ""
        raise ValueError(f"unknown word set {name!r}; built-in sets are {builtin_word_set_names()}{hint}")
    return validate_word_set_data(json.loads(_read_builtin(name)), source=f"built-in word set {name!r}")


@functools.lru_cache(maxsize=1)
def _span_names() -> tuple[str, ...]:
    return tuple(sorted(p.name[:-5] for p in (_folder() / "spans").iterdir() if p.name.endswith(".json")))


def span_set_names() -> list[str]:
    """Built-in multi-word (span) sets, in ``data/word_sets/spans`` (for classifiers; see SpanSwap)."""
    return list(_span_names())


def span_set_data(name: str) -> dict[str, Any]:
    """A built-in span set by name, or a single-word set (which is a span set whose members are one word)."""
    if isinstance(name, str) and name in _span_names():
        text = (_folder() / "spans" / f"{name}.json").read_text(encoding="utf-8")
        return validate_word_set_data(json.loads(text), source=f"built-in span set {name!r}")
    if isinstance(name, str) and name in _builtin_names():
        return word_set_data(name)
    raise ValueError(f"unknown span set {name!r}; built-in sets are {span_set_names() + builtin_word_set_names()}")


def load_word_set_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a word-set JSON file of your own (``{"name": ..., "sets": [[...], ...]}``), validated."""
    with open(os.fspath(path), encoding="utf-8") as fh:
        try:
            data = json.load(fh)
        except json.JSONDecodeError as err:
            raise ValueError(f"word-set file {os.fspath(path)!r} is not valid JSON: {err}") from None
    return validate_word_set_data(data, source=f"word-set file {os.fspath(path)!r}")


def validate_word_set_data(data: Any, source: str = "word set") -> dict[str, Any]:
    """Check the shape of word-set data: a name and a non-empty list of equally sized lists of non-empty strings."""
    if not isinstance(data, dict) or "sets" not in data or "name" not in data:
        raise ValueError(f"{source}: expected a JSON object with 'name' and 'sets'")
    sets = data["sets"]
    if not isinstance(sets, list) or not sets or not all(isinstance(s, list) for s in sets):
        raise ValueError(f"{source}: 'sets' must be a non-empty list of lists of words")
    for s in sets:
        if not all(isinstance(w, str) and w.strip() for w in s):
            raise ValueError(f"{source}: every word must be a non-empty string, got {s!r}")
    sizes = {len(s) for s in sets}
    if len(sizes) != 1:
        raise ValueError(f"{source}: all sets must have the same number of words, got sizes {sorted(sizes)}")
    return {**data, "name": str(data["name"]), "sets": [list(s) for s in sets]}
