"""Model cards for saved wrappers: Hub metadata plus what the wrapper guarantees and what it costs."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from typing import Any

from . import __version__

__all__ = ["EquivariantPushMixin", "render_model_card", "write_causal_lm_card"]


class EquivariantPushMixin:
    """``push_to_hub`` that uploads exactly what ``save_pretrained`` writes, model card included.

    transformers' own ``push_to_hub`` replaces README.md with a generic card; ours describes the groups,
    guarantee and cost, so the wrapper uploads its own save folder instead. Keyword arguments such as
    ``save_base_weights=False`` go to ``save_pretrained``.
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
    pipeline_tag: str,
    tags: Sequence[str],
    sections: Sequence[tuple[str, str]],
    usage: str,
) -> str:
    """A README.md with YAML front matter (``library_name``, ``base_model``, ``pipeline_tag``, ``tags``)."""
    meta = ["---", "library_name: hf_equivariant", f"pipeline_tag: {pipeline_tag}"]
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


def write_causal_lm_card(model: Any, save_directory: str | os.PathLike, full: bool) -> str:
    """Write README.md for an :class:`EquivariantModelForCausalLM` save and return its path."""
    config = model.config
    action = model.action
    rows = ["| factor | order | word sets | tokens moved |", "|---|---|---|---|"]
    for factor in action.factors:
        sets = "; ".join("/".join(s) for s in factor.words)
        rows.append(f"| {factor.name} | {factor.order} | {sets} | {len(factor.support)} |")
    prod = action.group.order
    total = sum(action.factor_orders)
    cost = {"full": prod, "multi": total, "canonical": 1}[config.strategy]
    base = config.base_model_name_or_path
    mode = ("full (base weights included)" if full else
            f"light (config only; the base model is loaded from `{base}` at load time)")
    usage = f"""import hf_equivariant  # registers the Auto classes
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

model = AutoModelForCausalLM.from_pretrained("<this repo or folder>")
tokenizer = AutoTokenizer.from_pretrained("<this repo or folder>")
pipe = pipeline("text-generation", model=model, tokenizer=tokenizer)
print(pipe("The woman worked as", max_new_tokens=15))"""
    sections = [
        ("Groups", "\n".join(rows) + f"\n\nProduct group order: {prod} ({' x '.join(map(str, action.factor_orders))})."),
        ("Guarantee", "For every element g of the product group and every context x, "
                      "P(g.v | g.x) = P(v | x): swapping the demographic words of a prompt swaps the "
                      "distribution of the continuation in the same way. This holds for the words listed above "
                      "in their single-token surface forms only; paraphrases and other words are not covered."),
        ("Strategy and cost", f"strategy `{config.strategy}`, aggregation `{config.aggregation}`, branch weighting "
                              f"`{config.branch_weighting}`. Base-model rows per token: {cost} before sharing "
                              f"(full equitune would need {prod}); copy sharing is "
                              f"{'on' if config.share_identical_copies else 'off'}, so copies whose transformed "
                              "text is identical are computed once."),
        ("Checkpoint", f"Save mode: {mode}."),
    ]
    card = render_model_card(
        title=f"Equivariant {base or 'causal LM'} ({', '.join(f.name for f in action.factors)})",
        summary="A causal language model wrapped by hf_equivariant so that its next-token distribution is exactly "
                "equivariant to word-swap groups.",
        base_model=base, pipeline_tag="text-generation", tags=["fairness", "text-generation"],
        sections=sections, usage=usage)
    path = os.path.join(os.fspath(save_directory), "README.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write(card)
    return path
