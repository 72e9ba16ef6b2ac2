"""The remote-code module written beside every saved wrapper, and the ``auto_map`` that points to it.

Why: a process that never imports ``hf_equivariant`` (``lm_eval --model hf``, a plain ``pipeline(...)`` script)
does not know the wrappers' ``model_type``. With ``auto_map`` in ``config.json`` and this small module in the
folder, ``trust_remote_code=True`` loads the wrapper through the Auto classes. The module copies no model code: it
imports the installed package (which also registers the Auto classes), and says how to install it when missing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from .._version import __version__

__all__ = ["REMOTE_MODULE", "auto_map", "remote_module_source", "write_remote_module"]

#: File name (without ``.py``) of the module in a saved folder; ``auto_map`` entries are ``"<module>.<Class>"``.
REMOTE_MODULE = "modeling_hf_equivariant"


def auto_map(config_class: type, model_class: type, auto_classes: Sequence[str]) -> dict[str, str]:
    """``{"AutoConfig": "modeling_hf_equivariant.<Config>", "<AutoModel...>": "modeling_hf_equivariant.<Model>"}``."""
    mapping = {"AutoConfig": f"{REMOTE_MODULE}.{config_class.__name__}"}
    mapping.update({auto: f"{REMOTE_MODULE}.{model_class.__name__}" for auto in auto_classes})
    return mapping


def _public_module(cls: type) -> str:
    """The family package that exports ``cls`` (``hf_equivariant.models.causal_lm``), else its own module."""
    module = cls.__module__
    package = module.rsplit(".", 1)[0]
    import importlib

    try:
        if getattr(importlib.import_module(package), cls.__name__, None) is cls:
            return package
    except ImportError:  # pragma: no cover - the class's own module is always importable
        pass
    return module


def remote_module_source(classes: Sequence[type]) -> str:
    """Python source of the module: imports ``classes`` from the installed package, or explains how to install it."""
    by_module: dict[str, list[str]] = {}
    for cls in classes:
        by_module.setdefault(_public_module(cls), []).append(cls.__name__)
    imports = "\n".join(f"    from {module} import {', '.join(dict.fromkeys(names))}"
                        for module, names in by_module.items())
    names = ", ".join(repr(cls.__name__) for cls in dict.fromkeys(classes))
    return f'''"""Loads this hf_equivariant checkpoint through the transformers Auto classes with ``trust_remote_code=True``.

It contains no model code: it imports the installed hf_equivariant package (written by hf_equivariant
{__version__}). In a process that has imported hf_equivariant, the Auto classes load the checkpoint without it.
"""

try:
{imports}
except ModuleNotFoundError as err:
    if not (err.name or "hf_equivariant").startswith("hf_equivariant"):
        raise
    raise ImportError(
        "This checkpoint was saved by hf_equivariant {__version__} and needs that package (version >= "
        "{__version__}) to load: install it into this environment, e.g. `pip install .` in a clone of the "
        "hf_equivariant repository (extras: `pip install '.[eval]'`). Missing: " + str(err.name)
    ) from err

__all__ = [{names}]
'''


def write_remote_module(save_directory: str | os.PathLike, classes: Sequence[type]) -> str:
    """Write ``modeling_hf_equivariant.py`` into ``save_directory``; returns its path."""
    path = os.path.join(os.fspath(save_directory), f"{REMOTE_MODULE}.py")
    with open(path, "w", encoding="utf-8") as f:
        f.write(remote_module_source(classes))
    return path
