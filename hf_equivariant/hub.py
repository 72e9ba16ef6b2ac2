"""Hub plumbing shared by every wrapper: model cards rendered from the ``model_cards`` templates, and the one
push implementation (``push_to_hub``, ``save_pretrained(push_to_hub=True)``, light saves, the Trainer).

A leaf module: it imports nothing from the rest of the package but its version (third-party imports are lazy).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from typing import Any

from ._version import __version__

__all__ = ["EquivariantPushMixin", "CARD_MARKER", "card_template", "render_card", "card_is_ours", "merge_trainer_card",
           "push_folder", "HubPushError", "base_card_metadata", "render_model_card"]

#: Written into every card the library renders; a README.md without it (a user's own card) is never overwritten.
CARD_MARKER = "<!-- hf_equivariant:model-card"
_LEGACY_MARKERS = ("_Card written by hf_equivariant", CARD_MARKER)
# Cards written by transformers itself (Trainer.create_model_card, the generic push_to_hub card): replaceable.
_TRANSFORMERS_MARKERS = ("This model card has been generated automatically according to the information the Trainer",
                         "This model card has been automatically generated.")
_TEMPLATE_DIR = "data/model_cards"


class HubPushError(ConnectionError):
    """The Hub could not be reached (offline, no network); the message says what was saved locally."""


# ------------------------------------------------------------------------------------------------------ model cards
def card_template(name: str) -> str:
    """The Jinja template of a wrapper family's card (``causal_lm``, ``clip``, ``multi_input``), shipped in the package
    (``hf_equivariant/data/model_cards``, a copy of the repository's top-level ``model_cards/`` folder)."""
    path = resources.files("hf_equivariant").joinpath(f"{_TEMPLATE_DIR}/{name}.md")
    if not path.is_file():
        raise FileNotFoundError(f"no model card template {name!r} in hf_equivariant/{_TEMPLATE_DIR}")
    return path.read_text(encoding="utf-8")


def render_card(template: str, metadata: Mapping[str, Any], context: Mapping[str, Any]) -> str:
    """A README.md: YAML front matter from ``metadata`` (``huggingface_hub.ModelCardData``) and the family template
    rendered with ``context`` (plus ``version`` and ``marker``)."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(**{k: v for k, v in metadata.items() if v not in (None, [], "")})
    card = ModelCard.from_template(data, template_str=card_template(template), version=__version__,
                                   marker=f"{CARD_MARKER} written by hf_equivariant {__version__}; delete this line "
                                          "to keep your edits when the model is saved again -->", **context)
    return re.sub(r"\n{3,}", "\n\n", str(card)).rstrip() + "\n"


def card_is_ours(text: str) -> bool:
    """Whether a README.md was written by a library (hf_equivariant or transformers) and may be regenerated."""
    return any(m in text for m in _LEGACY_MARKERS + _TRANSFORMERS_MARKERS)


def merge_trainer_card(ours: str, trainer_card: str) -> str:
    """Our card plus what ``Trainer.create_model_card`` knows: its tags and datasets, and its training section."""
    from huggingface_hub import ModelCard

    mine, theirs = ModelCard(ours), ModelCard(trainer_card)
    tags = list(dict.fromkeys([*(mine.data.tags or []), *(theirs.data.tags or [])]))
    mine.data.tags = tags or None
    for key in ("datasets", "model-index", "metrics"):
        value = theirs.data.to_dict().get(key)
        if value and not mine.data.to_dict().get(key):
            setattr(mine.data, key.replace("-", "_"), value)
    start = theirs.text.find("## Training procedure")
    training = theirs.text[start:].strip() if start >= 0 else ""
    results = re.search(r"It achieves the following results on the evaluation set:\n(?:- .*\n?)+", theirs.text)
    extra = ["## Training (recorded by the transformers Trainer)", ""]
    if results:
        extra += [results.group(0).strip(), ""]
    if training:
        extra += [re.sub(r"^#", "##", training, flags=re.M), ""]
    mine.text = mine.text.rstrip() + "\n\n" + "\n".join(extra) if len(extra) > 2 else mine.text
    return str(mine).rstrip() + "\n"


def base_card_metadata(reference: str | None, *, allow_network: bool) -> dict[str, Any]:
    """``license`` and ``language`` of the base model's own card: a local folder's README.md, a cached Hub card,
    or (``allow_network``) the Hub card. Empty when unknown."""
    if not reference:
        return {}
    path = os.path.join(reference, "README.md") if os.path.isdir(reference) else None
    try:
        from huggingface_hub import ModelCard, hf_hub_download

        if path is None:
            try:
                path = hf_hub_download(reference, "README.md", local_files_only=True)
            except Exception:  # noqa: BLE001 - not cached
                path = hf_hub_download(reference, "README.md") if allow_network else None
        if path is None or not os.path.isfile(path):
            return {}
        data = ModelCard.load(path, ignore_metadata_errors=True).data.to_dict()
    except Exception:  # noqa: BLE001 - a missing or malformed base card just means nothing to inherit
        return {}
    return {k: data[k] for k in ("license", "license_name", "license_link", "language") if data.get(k)}


def render_model_card(*, title: str, summary: str, base_model: str | None, pipeline_tag: str | None,
                      tags: Sequence[str], sections: Sequence[tuple[str, str]], usage: str) -> str:
    """A free-form card (0.1.x API, kept for callers outside the wrappers): front matter, usage and sections."""
    body = "\n\n".join(f"## {heading}\n\n{text.strip()}" for heading, text in sections)
    template = ("---\n{{ card_data }}\n---\n\n{{ marker }}\n\n# {{ title }}\n\n{{ summary }}\n\n## Usage\n\n```python\n"
                "{{ usage }}\n```\n\n{{ body }}\n")
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(library_name="transformers", pipeline_tag=pipeline_tag, base_model=base_model,
                         tags=list(dict.fromkeys(["hf_equivariant", *tags])))
    card = ModelCard.from_template(data, template_str=template, title=title, summary=summary, usage=usage.strip(),
                                   body=body, marker=f"{CARD_MARKER} written by hf_equivariant {__version__} -->")
    return str(card).rstrip() + "\n"


# ------------------------------------------------------------------------------------------------------ pushing
def _connection_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        from huggingface_hub.errors import OfflineModeIsEnabled

        errors.append(OfflineModeIsEnabled)
    except ImportError:  # pragma: no cover - older huggingface_hub
        pass
    for module, name in (("requests.exceptions", "ConnectionError"), ("requests.exceptions", "Timeout"),
                         ("httpx", "TransportError")):
        try:
            errors.append(getattr(__import__(module, fromlist=[name]), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def hub_offline() -> bool:
    """Whether huggingface_hub is in offline mode (``HF_HUB_OFFLINE=1``)."""
    try:
        from huggingface_hub import constants

        if getattr(constants, "HF_HUB_OFFLINE", False):
            return True
    except ImportError:  # pragma: no cover
        pass
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def push_folder(folder: str | os.PathLike, repo_id: str, *, commit_message: str | None = None,
                commit_description: str | None = None, private: bool | None = None, token: str | bool | None = None,
                revision: str | None = None, create_pr: bool = False, saved_locally: bool = True,
                on_repo_id: Callable[[str], None] | None = None) -> Any:
    """Create ``repo_id`` (if needed) and upload ``folder`` as one commit; returns huggingface_hub's ``CommitInfo``.

    Called only after the folder is completely written, so a failed save never leaves an empty repository.
    ``token=False`` sends no token. Connection problems raise :class:`HubPushError` naming the repository.
    ``on_repo_id`` is called with the full id the Hub assigned (``user/name`` for a bare ``name``) before the upload,
    so the card can name the real repository.
    """
    from huggingface_hub import HfApi

    where = f"the files are saved in {os.fspath(folder)}" if saved_locally else "nothing was saved"
    if hub_offline():
        raise HubPushError(f"cannot push to {repo_id}: huggingface_hub is in offline mode (HF_HUB_OFFLINE=1); {where}. "
                           "Unset HF_HUB_OFFLINE and push again (or upload the folder later with `hf upload`).")
    api = HfApi(token=token)
    try:
        repo = api.create_repo(repo_id, private=private, exist_ok=True, token=token)
        target = getattr(repo, "repo_id", None) or repo_id
        if on_repo_id is not None and target != repo_id:
            on_repo_id(target)
        if revision is not None and not create_pr:
            api.create_branch(target, branch=revision, exist_ok=True, token=token)
        return api.upload_folder(repo_id=target, folder_path=os.fspath(folder),
                                 commit_message=commit_message or "Upload equivariant model (hf_equivariant)",
                                 commit_description=commit_description, revision=revision, create_pr=create_pr,
                                 token=token)
    except _connection_errors() as err:
        raise HubPushError(f"cannot reach the Hugging Face Hub to push {repo_id} ({type(err).__name__}: {err}); "
                           f"{where}. Check the network (or proxy settings) and push again.") from err


class EquivariantPushMixin:
    """``push_to_hub`` that uploads exactly what ``save_pretrained`` writes: the wrapper's card, config, weights (or
    the light reference), remote-code module and tokenizer / processor.

    The folder is saved first, the repository created after; every huggingface_hub argument is honoured.
    Card options (``tags``, ``license``, ``language``) and save options (``save_base_weights``, ``tokenizer``, ...)
    go to ``save_pretrained``.
    """

    def push_to_hub(self, repo_id: str, *, commit_message: str | None = None, commit_description: str | None = None,
                    private: bool | None = None, token: str | bool | None = None, revision: str | None = None,
                    create_pr: bool = False, **save_kwargs: Any) -> Any:
        save_kwargs.pop("use_temp_dir", None)  # 4.x argument; a temporary folder is always used
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder, hub_repo_id=repo_id, **save_kwargs)  # type: ignore[attr-defined]
            card_kwargs = {k: save_kwargs[k] for k in ("tags", "license", "language") if k in save_kwargs}
            return push_folder(folder, repo_id, commit_message=commit_message,
                               commit_description=commit_description, private=private, token=token,
                               revision=revision, create_pr=create_pr, saved_locally=False,
                               on_repo_id=lambda full_id: self.write_model_card(  # type: ignore[attr-defined]
                                   folder, repo_id=full_id, **card_kwargs))
