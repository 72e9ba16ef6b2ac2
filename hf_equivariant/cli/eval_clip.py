"""``hf-equivariant eval-clip``: zero-shot accuracy of base/full/multi/canonical/max_prob under random rot90/flips.

Examples::

    hf-equivariant eval-clip --model ./digits-clip --data digits                      # offline, bundled data
    hf-equivariant eval-clip --model openai/clip-vit-base-patch32 --data cifar100 --data-root ~/data
    hf-equivariant eval-clip --open-clip ViT-B-32 --pretrained openai --data /data/imagenetv2 --limit 2000
    accelerate launch --num_processes 4 -m hf_equivariant eval-clip --model ./clip --data digits --output r.json

Under ``accelerate launch`` (or ``torchrun``) the images are split between the processes and the main process
prints and writes the one result.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

__all__ = ["register", "run"]

_TEMPLATE_SETS = ("openai", "simple", "digits", "photo")


def register(subparsers: Any) -> None:
    """Add the ``eval-clip`` sub-command."""
    p = subparsers.add_parser(
        "eval-clip",
        help="zero-shot robustness of an invariant CLIP under random rot90/flips",
        description="Measure top-1/top-5 zero-shot accuracy and images/s of base, full, multi, canonical and "
                    "max_prob on a dataset under no transform, random rot90, random flip and both (drawn per "
                    "image, seeded).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="HF CLIP/SigLIP model or saved hf_equivariant wrapper (Hub id or folder)")
    src.add_argument("--open-clip", metavar="ARCH", help="open_clip architecture name, e.g. ViT-B-32")
    p.add_argument("--pretrained", default=None, help="open_clip pretrained tag (omit for random weights)")
    p.add_argument("--data", required=True,
                   help="'digits' (bundled with scikit-learn), 'cifar100' (downloads via torchvision) or a folder "
                        "with one sub-folder per class (ImageNetV2 layout supported)")
    p.add_argument("--data-root", default=os.path.join("~", ".cache", "hf_equivariant", "data"),
                   help="download folder for cifar100")
    p.add_argument("--templates", default=None, choices=_TEMPLATE_SETS,
                   help="prompt template set (default: digits for --data digits, else openai)")
    p.add_argument("--template", action="append", default=None, metavar="TEXT",
                   help="a custom prompt template with {} for the class name (repeatable; overrides --templates)")
    p.add_argument("--groups", default="rot90,flip", help="image transforms the wrapper is invariant to")
    p.add_argument("--methods", default="base,full,multi,canonical,max_prob",
                   help="comma-separated: base, full, multi, canonical, max_prob, multi_max_prob")
    p.add_argument("--conditions", default="none,rot90,flip,rot90+flip", help="comma-separated test conditions")
    p.add_argument("--limit", type=int, default=None, help="evaluate a seeded random subset of this many images")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-batch", type=int, default=None, help="cap on images per encoder call")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda (each launched process uses its own GPU) or cuda:N")
    p.add_argument("--dtype", default=None, choices=("float32", "float16", "bfloat16"),
                   help="load the model in this dtype (default: as saved)")
    p.add_argument("--output", default=None, help="write the results as JSON here")
    p.add_argument("--markdown", default=None, help="write the result tables as Markdown here")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


def _templates(args: argparse.Namespace) -> list[Any]:
    if args.template:
        for t in args.template:
            if "{}" not in t:
                raise ValueError(f"template {t!r} has no '{{}}' placeholder for the class name")
        return list(args.template)
    name = args.templates or ("digits" if args.data == "digits" else "openai")
    if name == "digits":
        from ..eval.robustness import DIGIT_TEMPLATES

        return list(DIGIT_TEMPLATES)
    if name == "photo":
        return ["a photo of a {}."]
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES

    return list(OPENAI_IMAGENET_TEMPLATES if name == "openai" else SIMPLE_IMAGENET_TEMPLATES)


def _check_paths(args: argparse.Namespace) -> None:
    """Output folders must exist and a local model must be a CLIP-style one, before anything is loaded."""
    from . import UsageError
    from .lm import check_model_path, model_type_of

    for flag in ("output", "markdown"):
        path = getattr(args, flag)
        if path is not None:
            folder = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(folder):
                raise UsageError(f"--{flag} {path}: the folder {folder} does not exist; create it first")
    if args.model:
        check_model_path(args.model, "model")
        kind = model_type_of(args.model)
        if kind and not _clip_style(args.model, kind):
            raise UsageError(f"{args.model} holds a {kind!r} model, not a CLIP-style dual encoder (CLIP, SigLIP or an "
                             "hf_equivariant CLIP wrapper); eval-clip scores zero-shot image classification")


def _clip_style(path: str, kind: str) -> bool:
    if kind.startswith(("hf_equivariant_clip", "hf_equivariant_siglip")):
        return True
    with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    return "vision_config" in config and "text_config" in config


def _load_model(args: argparse.Namespace, groups: list[str]) -> tuple[Any, Any, Any]:
    """(wrapper, tokenizer, preprocess) where preprocess maps a list of PIL images to pixel_values."""
    import torch

    dtype = getattr(torch, args.dtype) if args.dtype else None
    loading = {"dtype": dtype} if dtype is not None else {}

    if args.open_clip:
        import open_clip

        from ..models.clip.open_clip import EquivariantOpenCLIP

        base, _, transform = open_clip.create_model_and_transforms(args.open_clip, pretrained=args.pretrained)
        wrapper = EquivariantOpenCLIP(base.to(args.device, dtype).eval(), groups, max_batch=args.max_batch)
        return wrapper, open_clip.get_tokenizer(args.open_clip), lambda ims: torch.stack([transform(i) for i in ims])
    from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer

    from ..models.clip import EquivariantCLIPModel

    config = AutoConfig.from_pretrained(args.model)
    if config.model_type.startswith("hf_equivariant_"):
        from transformers import AutoModelForZeroShotImageClassification

        wrapper = AutoModelForZeroShotImageClassification.from_pretrained(args.model, **loading)
        if list(wrapper.config.groups) != groups and args.groups != "rot90,flip":
            raise ValueError(f"the saved wrapper is built for groups {wrapper.config.groups}, not {groups}")
    else:
        wrapper = EquivariantCLIPModel.from_base(args.model, groups=groups, max_batch=args.max_batch, **loading)
    if args.max_batch is not None:
        wrapper.config.max_batch = args.max_batch
    wrapper = wrapper.to(args.device).eval()
    processor = AutoImageProcessor.from_pretrained(args.model)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    return wrapper, tokenizer, lambda ims: processor(images=list(ims), return_tensors="pt")["pixel_values"]


def _load_data(args: argparse.Namespace, preprocess: Any) -> Any:
    from ..eval import robustness as rb

    if args.data == "digits":
        return rb.digits_image_set(preprocess, split="test", seed=0)
    if args.data == "cifar100":
        try:
            return rb.cifar100_set(os.path.expanduser(args.data_root), preprocess)
        except (RuntimeError, OSError) as err:  # torchvision raises RuntimeError/URLError when offline
            raise OSError(f"could not load CIFAR-100 under {args.data_root} ({err}); it needs network access "
                          "once, or use --data digits / an image folder") from err
    return rb.image_folder_set(args.data, preprocess)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the tables; returns the exit code."""
    from ..eval.robustness import CONDITIONS, METHODS, evaluate_robustness

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    bad = [m for m in methods if m not in METHODS] + [c for c in conditions if c not in CONDITIONS]
    if bad:
        raise ValueError(f"unknown method/condition {bad}; methods: {sorted(METHODS)}; conditions: {list(CONDITIONS)}")
    if args.batch_size < 1 or (args.limit is not None and args.limit < 1):
        from . import UsageError

        raise UsageError("--batch-size and --limit must be positive")
    groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    templates = _templates(args)
    _check_paths(args)
    from ..eval.distributed import current_shards

    shards = current_shards()
    args.device = shards.device(args.device)
    wrapper, tokenizer, preprocess = _load_model(args, groups)
    data = _load_data(args, preprocess).limit(args.limit, seed=args.seed)
    class_embeds = wrapper.class_embeddings(tokenizer, data.classnames, templates)
    report = evaluate_robustness(wrapper, class_embeds, data, methods, conditions, seed=args.seed,
                                 batch_size=args.batch_size, device=args.device,
                                 progress=not args.no_progress, shards=shards)
    report.meta.update({"model": args.model or f"open_clip:{args.open_clip}:{args.pretrained}", "data": args.data,
                        "groups": groups, "templates": len(templates), "dtype": args.dtype or "as saved"})
    if not shards.is_main:
        return 0
    table = report.to_markdown()
    print(table)
    if args.output:
        report.to_json(args.output)
        print(f"results written to {args.output}", file=sys.stderr)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(f"{json.dumps(report.meta)}\n\n{table}\n")
    return 0
