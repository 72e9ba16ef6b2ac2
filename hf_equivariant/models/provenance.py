"""Where a wrapper's base model came from, and whether its weights are still the ones found there.

Why: a light checkpoint stores only a reference to the base model. That reference must mean the same thing
wherever and whenever it is loaded (an absolute folder, or a Hub id pinned to a commit), and it may only be
written when the wrapper's base weights are still exactly those of the reference (otherwise fine-tuned weights
would be silently dropped).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import torch
from transformers.utils import logging

logger = logging.get_logger(__name__)

__all__ = ["resolve_local", "is_local_reference", "pinned_revision", "weights_fingerprint", "changed_weights",
           "describe", "load_error_hint"]

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def is_local_reference(name: str | os.PathLike | None) -> bool:
    """Whether ``name`` denotes a local folder (existing, or written like a path) rather than a Hub id."""
    if name is None:
        return False
    text = os.fspath(name)
    if os.path.isdir(text):
        return True
    return (os.path.isabs(text) or text.startswith(("./", "../", "~", ".\\", "..\\")) or text.count("/") > 1
            or os.sep != "/" and os.sep in text)


def resolve_local(name: str | os.PathLike | None) -> str | None:
    """An existing local folder as an absolute, normalised path; Hub ids (and ``None``) unchanged."""
    if name is None:
        return None
    text = os.fspath(name)
    if text and os.path.isdir(text):
        return os.path.realpath(text)
    return text or None


def pinned_revision(repo_id: str | None, revision: str | None, cache_dir: str | os.PathLike | None = None) -> str | None:
    """The commit the cached files of Hub repo ``repo_id`` at ``revision`` come from (``revision`` if unknown).

    Read from the local Hub cache (where loading the base has just put the files), so it works offline; local
    folders and ``None`` return ``revision`` unchanged.
    """
    if repo_id is None or is_local_reference(repo_id):
        return revision
    if revision is not None and _COMMIT.match(str(revision)):
        return str(revision)
    try:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(repo_id, "config.json", revision=revision or "main", cache_dir=cache_dir)
    except Exception as err:  # noqa: BLE001 - best effort; the reference then follows the branch
        logger.debug("could not look up %s in the Hub cache: %s", repo_id, err)
        path = None
    if isinstance(path, str):
        commit = os.path.basename(os.path.dirname(path))
        if _COMMIT.match(commit):
            return commit
    logger.warning("could not pin the base model %s to a commit (not in the local Hub cache); a light checkpoint "
                   "will load whatever revision %r points to at load time", repo_id, revision or "main")
    return revision


def weights_fingerprint(module: torch.nn.Module) -> dict[str, tuple]:
    """Per tensor of ``module.state_dict()``: storage pointer, in-place version counter and two checksums.

    The version counter catches every tracked in-place update (optimisers, ``copy_``); the checksums catch edits
    through ``.data`` that the counter misses. One pass over the weights (milliseconds for small models).
    """
    out: dict[str, tuple] = {}
    with torch.no_grad():
        for name, tensor in module.state_dict(keep_vars=True).items():
            data = tensor.detach()
            if data.device.type == "meta" or not data.is_floating_point() and not data.is_complex():
                checks: tuple = (data.shape, str(data.dtype), _int_checksum(data))
            else:
                checks = (data.shape, str(data.dtype), float(torch.sum(data, dtype=torch.float64)),
                          float(torch.linalg.vector_norm(data, dtype=torch.float64)))
            out[name] = (data.data_ptr() if data.device.type != "meta" else None, tensor._version, checks)
    return out


def _int_checksum(data: torch.Tensor) -> int | None:
    if data.device.type == "meta" or data.numel() == 0:
        return None
    return int(data.to(torch.int64).sum())


def changed_weights(before: Mapping[str, tuple], module: torch.nn.Module) -> list[str]:
    """Names of the tensors of ``module`` that differ from fingerprint ``before`` (new storage, an in-place
    update, other values; added or removed tensors too)."""
    now = weights_fingerprint(module)
    return sorted((set(before) ^ set(now)) | {k for k in before if k in now and before[k] != now[k]})


def describe(names: list[str], limit: int = 3) -> str:
    """``"a, b, c and 4 more"``."""
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def load_error_hint(reference: str, revision: str | None, checkpoint: str) -> str:
    """What to do when the base of a light checkpoint cannot be loaded."""
    if is_local_reference(reference):
        return (f"the light checkpoint {checkpoint} loads its base model from the folder {reference}, which does not "
                "exist any more (moved or deleted?). Pass the new location with from_pretrained(..., "
                "base_model_name_or_path=NEW_FOLDER), or re-save the wrapper in full (save_base_weights=True) "
                "where its base is available")
    at = f" at commit {revision}" if revision else ""
    return (f"the light checkpoint {checkpoint} loads its base model {reference!r}{at} from the Hugging Face Hub, "
            "which could not be reached and is not in the local cache. Connect once to cache it, pass a local copy "
            "with from_pretrained(..., base_model_name_or_path=FOLDER), or re-save the wrapper in full "
            "(save_base_weights=True) on a machine where the base is available")
