"""``hf-equivariant wrap | check | generate``: wrap a causal LM, verify a saved wrapper, generate with it."""

from __future__ import annotations

import argparse
import json
import os


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}: checking no element proves "
                                         "nothing")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    wrap = subparsers.add_parser("wrap", help="wrap a causal LM with word-swap groups and save it",
                                 description="Wrap a Hub id or local folder and save an equivariant model.")
    wrap.add_argument("base", help="Hub id or folder of the base causal LM (with its tokenizer)")
    wrap.add_argument("--groups", nargs="+", required=True, metavar="NAME", help="built-in word sets, e.g. gender race")
    wrap.add_argument("--strategy", default="multi", choices=("full", "multi", "canonical"))
    wrap.add_argument("--aggregation", default="mean_prob", choices=("mean_prob", "mean_logits", "max_prob"))
    wrap.add_argument("--light", action="store_true", help="save only the config; reload the base by name")
    wrap.add_argument("--output", required=True, help="folder to save the wrapper to")
    wrap.set_defaults(func=run_wrap)

    check = subparsers.add_parser("check", help="measure the equivariance error of a saved wrapper",
                                  description="Print the largest |f(g.x) - g.f(x)| per group element; exit 1 "
                                              "if any exceeds --atol.")
    check.add_argument("model", help="folder or Hub id of a saved equivariant model")
    check.add_argument("--prompt", default="The woman worked as a", help="text to check on")
    check.add_argument("--max-elements", type=_positive_int, default=64,
                       help="sample this many elements of large groups (at least 1)")
    check.add_argument("--atol", type=float, default=1e-5, help="tolerance (default: 1e-5)")
    check.set_defaults(func=run_check)

    gen = subparsers.add_parser("generate", help="generate text with a saved wrapper",
                                description="Generate a continuation with a saved equivariant model.")
    gen.add_argument("model", help="folder or Hub id of a saved equivariant model")
    gen.add_argument("prompt", help="the prompt")
    gen.add_argument("--max-new-tokens", type=int, default=20)
    gen.add_argument("--sample", action="store_true", help="sample (top-k) instead of greedy decoding")
    gen.add_argument("--top-k", type=int, default=40)
    gen.add_argument("--seed", type=int, default=0)
    gen.set_defaults(func=run_generate)


def check_model_path(path: str, what: str) -> None:
    """A local-looking path must exist (a Hub id is checked when loading)."""
    from ..models.provenance import is_local_reference

    if is_local_reference(path) and not os.path.isdir(path):
        from . import UsageError

        raise UsageError(f"{what} {path!r} does not exist: give the folder of a saved model or a Hub id")


def model_type_of(path: str) -> str:
    """``model_type`` from a folder's ``config.json`` (``""`` when there is none)."""
    config = os.path.join(path, "config.json")
    if not os.path.isfile(config):
        return ""
    with open(config, encoding="utf-8") as f:
        return str(json.load(f).get("model_type", ""))


def _load(path: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..models.causal_lm import EquivariantModelForCausalLM
    from . import UsageError

    check_model_path(path, "model")
    kind = model_type_of(path)
    if kind and kind != "hf_equivariant_causal_lm":
        raise UsageError(f"{path} holds a {kind!r} model, not an equivariant causal LM; wrap a causal LM first "
                         "(`hf-equivariant wrap BASE --groups ... --output DIR`)")
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    if not isinstance(model, EquivariantModelForCausalLM):
        raise UsageError(f"{path} is a plain {type(model).__name__}, not an equivariant model; use `wrap` first")
    return model, model.tokenizer or AutoTokenizer.from_pretrained(path)


def _encode_prompt(model, tokenizer, prompt: str, new_tokens: int = 0):
    """The prompt's ids; an empty prompt or one longer than the model's context is a usage error."""
    from . import UsageError

    if not prompt.strip():
        raise UsageError("the prompt is empty: give some text to continue, e.g. \"The woman worked as a\"")
    enc = tokenizer(prompt, return_tensors="pt")
    length = int(enc["input_ids"].shape[-1])
    limit = _context_length(model)
    if limit is not None and length + new_tokens > limit:
        raise UsageError(f"the prompt is {length} tokens{f' and --max-new-tokens is {new_tokens}' if new_tokens else ''}"
                         f", more than the model's context of {limit} tokens: shorten the prompt"
                         f"{' or generate fewer tokens' if new_tokens else ''}")
    return enc


def _context_length(model) -> int | None:
    config = getattr(getattr(model, "base", model), "config", None)
    for name in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def run_wrap(args: argparse.Namespace) -> int:
    from ..models.causal_lm import EquivariantModelForCausalLM
    from . import UsageError

    check_model_path(args.base, "base model")
    kind = model_type_of(args.base)
    if kind:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        if kind not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
            raise UsageError(f"{args.base} holds a {kind!r} model, not a causal language model: `wrap` wraps causal "
                             "LMs (for CLIP-style models use EquivariantCLIPModel.from_base or `eval-clip`)")
    model = EquivariantModelForCausalLM.from_base(args.base, groups=args.groups, strategy=args.strategy,
                                                  aggregation=args.aggregation)
    model.save_pretrained(args.output, save_base_weights=not args.light)
    print(f"saved {args.strategy} wrapper over {' x '.join(args.groups)} "
          f"({model.copies_per_row} copies per token) to {args.output}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from ..checks import check_equivariance

    model, tokenizer = _load(args.model)
    report = check_equivariance(model, _encode_prompt(model, tokenizer, args.prompt), max_elements=args.max_elements)
    print(report)
    return 0 if report.passed(args.atol) else 1


def run_generate(args: argparse.Namespace) -> int:
    import torch

    model, tokenizer = _load(args.model)
    torch.manual_seed(args.seed)
    enc = _encode_prompt(model, tokenizer, args.prompt, args.max_new_tokens)
    sampling = {"do_sample": True, "top_k": args.top_k} if args.sample else {"do_sample": False}
    out = model.generate(**enc, max_new_tokens=args.max_new_tokens, **sampling,
                         pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    print(tokenizer.decode(out[0], skip_special_tokens=True))
    return 0
