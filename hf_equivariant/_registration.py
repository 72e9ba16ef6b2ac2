"""Register the wrappers with transformers' Auto classes without making ``import hf_equivariant`` import transformers.

Why: ``import hf_equivariant`` must keep registering the Auto classes (so ``AutoModelForCausalLM.from_pretrained``
loads a saved wrapper), but importing torch and transformers takes seconds, and ``hf-equivariant --help`` must not
pay for that. So the package face is lazy, and registration runs

* at once, when transformers is already imported;
* otherwise right after transformers is first imported (a one-shot import hook on ``sys.meta_path``);
* and whenever a model family is imported (each family registers itself).

When transformers is first imported from inside one of this package's own modules (its import still running), the
families cannot be imported yet; registration then waits for the next import of a transformers module (loading
any model imports several), when this package's modules have finished.

The same mechanism installs the ``Trainer`` model-card hook once ``transformers.trainer`` is imported (see
:func:`hf_equivariant.models.base.install_trainer_card_hook`).

Processes that never import this package load saved wrappers through the remote-code module every save writes
(``trust_remote_code=True``), see :mod:`hf_equivariant.models.remote_code`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

__all__ = ["FAMILIES", "register_auto_classes", "install", "when_imported"]

#: Model-family packages; importing one registers its config and model classes with the Auto classes.
FAMILIES = ("hf_equivariant.models.causal_lm", "hf_equivariant.models.clip", "hf_equivariant.models.multi_input",
            "hf_equivariant.models.sequence_classification", "hf_equivariant.models.seq2seq")


def register_auto_classes() -> None:
    """Import every model family (each registers itself with ``AutoConfig`` and its ``AutoModel*`` classes)."""
    for name in FAMILIES:
        importlib.import_module(name)


def _install_trainer_card_hook() -> None:
    from .models.base import install_trainer_card_hook

    install_trainer_card_hook()


def _safely(callback: Callable[[], None], what: str) -> Callable[[], None]:
    """Run ``callback`` inside another package's import: a failure must warn, never break that import."""

    def run() -> None:
        try:
            callback()
        except Exception as err:  # noqa: BLE001 - reported, not raised: transformers itself must still import
            warnings.warn(f"hf_equivariant could not {what} ({type(err).__name__}: {err}); import "
                          "hf_equivariant.models.causal_lm (or clip / multi_input) explicitly to see the error",
                          RuntimeWarning, stacklevel=2)

    return run


class _RunAfterExec(importlib.abc.Loader):
    """A loader that executes the real loader's module, then runs the callbacks registered for it."""

    def __init__(self, loader: Any, callbacks: list[Callable[[], None]]) -> None:
        self._loader = loader
        self._callbacks = callbacks

    def create_module(self, spec: Any) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        for callback in self._callbacks:
            callback()

    def __getattr__(self, name: str) -> Any:  # get_filename, is_package, resource readers, ...
        return getattr(self._loader, name)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """One-shot post-import hooks: callbacks run once, right after a module named ``name`` (or, for a prefix ending
    in ``.``, any module under it) is executed."""

    def __init__(self) -> None:
        self.pending: dict[str, list[Callable[[], None]]] = {}

    def _take(self, fullname: str) -> list[Callable[[], None]]:
        callbacks = self.pending.pop(fullname, [])
        for key in [k for k in self.pending if k.endswith(".") and fullname.startswith(k)]:
            callbacks += self.pending.pop(key)
        return callbacks

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        callbacks = self._take(fullname)
        if not callbacks:
            return None
        if not self.pending and self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = _find_with_others(self, fullname, path, target)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _RunAfterExec(spec.loader, callbacks)
        return spec


def _find_with_others(finder: importlib.abc.MetaPathFinder, fullname: str, path: Any, target: Any) -> Any:
    for other in list(sys.meta_path):
        if other is finder or not hasattr(other, "find_spec"):
            continue
        spec = other.find_spec(fullname, path, target)
        if spec is not None:
            return spec
    return None


_FINDER = _PostImportFinder()


def when_imported(name: str, callback: Callable[[], None]) -> None:
    """Run ``callback`` now if module ``name`` is imported, else once right after it is first imported.

    A ``name`` ending in ``.`` waits for the next import of any module under that prefix."""
    if name in sys.modules:
        callback()
        return
    _FINDER.pending.setdefault(name, []).append(callback)
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def _importing_own_modules() -> bool:
    """Whether one of this package's sub-modules is still being imported (its families cannot be imported now)."""
    return any(getattr(getattr(module, "__spec__", None), "_initializing", False)
               for name, module in list(sys.modules.items()) if name.startswith(f"{__package__}."))


def _register_when_idle() -> None:
    if _importing_own_modules():
        when_imported("transformers.", _safely(_register_when_idle, "register its Auto classes"))
    else:
        register_auto_classes()


def install() -> None:
    """Called by ``import hf_equivariant``: Auto-class registration and the Trainer card hook, now or on import."""
    when_imported("transformers", _safely(_register_when_idle, "register its Auto classes"))
    when_imported("transformers.trainer", _safely(_install_trainer_card_hook, "install its Trainer card hook"))
