"""Hub plumbing shared by every wrapper: ``push_to_hub`` that uploads what ``save_pretrained`` writes, and the
model-card renderer. A leaf module: it imports nothing from the rest of the package but its version."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from typing import Any

from ._version import __version__

__all__ = ["EquivariantPushMixin", "render_model_card"]


class EquivariantPushMixin:
    """``push_to_hub`` that uploads exactly what ``save_pretrained`` writes, model card included.

    transformers' own ``push_to_hub`` replaces README.md with a generic card; ours describes the groups,
    guarantee and cost, so the wrapper uploads its own save folder instead. Keyword arguments such as
    ``save_base_weights=False`` or ``tokenizer=...`` go to ``save_pretrained``.
    """

    def push_to_hub(self, repo_id: str, *, private: bool | None = None, token: str | bool | None = None,
                    revision: str | None = None, commit_message: str | None = None, create_pr: bool = False,
                    **save_kwargs: Any) -> Any:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        repo = api.create_repo(repo_id, private=private, exist_ok=True, token=token)
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder, **save_kwargs)  # type: ignore[attr-defined]
            return api.upload_folder(repo_id=getattr(repo, "repo_id", repo_id), folder_path=folder,
                                     commit_message=commit_message or f"Upload {type(self).__name__}",
                                     revision=revision, create_pr=create_pr, token=token)


def render_model_card(
    *,
    title: str,
    summary: str,
    base_model: str | None,
    pipeline_tag: str | None,
    tags: Sequence[str],
    sections: Sequence[tuple[str, str]],
    usage: str,
) -> str:
    """A README.md with YAML front matter (``library_name``, ``base_model``, ``pipeline_tag``, ``tags``)."""
    meta = ["---", "library_name: hf_equivariant"]
    if pipeline_tag:
        meta.append(f"pipeline_tag: {pipeline_tag}")
    if base_model:
        meta.append(f"base_model: {json.dumps(base_model)}")
    meta.append("tags:")
    meta.extend(f"- {t}" for t in ["hf_equivariant", "equivariance", *tags])
    meta.append("---")
    body = [f"# {title}", "", summary, "", "## Usage", "", "```python", usage.strip(), "```", ""]
    for heading, text in sections:
        body.extend([f"## {heading}", "", text.strip(), ""])
    body.append(f"_Card written by hf_equivariant {__version__}._")
    return "\n".join(meta + [""] + body) + "\n"
