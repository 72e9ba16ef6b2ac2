"""Train the demo's tokenizer and tiny GPT-2 on the generated biased corpus, and save a loadable checkpoint.

Why: the offline demo must work on a fresh clone with no network, so the project builds its own small causal LM
whose bias is known (see :mod:`hf_equivariant.demo.corpus`). The result is a normal Hugging Face folder:
``AutoTokenizer`` / ``AutoModelForCausalLM`` / ``pipeline("text-generation")`` load it with no extra code.

Usage::

    python -m hf_equivariant.demo.train --output DIR [--seed 0] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from transformers.utils import logging

from .corpus import DEMO_PROMPTS, OCCUPATIONS, generate_corpus, load_word_sets

# A fixed name: under ``python -m`` __name__ is "__main__", which would fall outside the package's logger tree.
logger = logging.get_logger("hf_equivariant.demo.train")

__all__ = ["TrainConfig", "EOS_TOKEN", "train_tokenizer", "single_token_failures", "train_demo_model", "main"]

EOS_TOKEN = "<|endoftext|>"


@dataclass
class TrainConfig:
    """Everything that determines a training run (the defaults build the shipped checkpoint)."""

    seed: int = 0
    num_bias_sentences: int = 14000
    min_word_count: int = 30
    vocab_size: int = 2048
    n_layer: int = 2
    n_embd: int = 96
    n_head: int = 4
    n_positions: int = 64
    # Larger than GPT-2's 0.02: with tiny initial attention/value weights the model sits on a plateau for hundreds
    # of steps before it starts to use the subject words; 0.06 cuts that plateau to about 100 steps.
    initializer_range: float = 0.06
    epochs: int = 1
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    decay_start_fraction: float = 0.6
    # Loss weight of targets that are occupation tokens. The conditional (subject -> occupation) carries little of
    # the total loss, so a tiny model learns it late; weighting it makes it appear within the two-minute budget.
    occupation_loss_weight: float = 5.0
    max_steps: int | None = None
    threads: int | None = 1  # one thread: same result on every machine, and no slowdown on a busy shared CPU
    strict_tokens: bool = True


def train_tokenizer(texts: Sequence[str], vocab_size: int):
    """A GPT-2-style byte-level BPE tokenizer, wrapped for ``transformers``.

    Built from a ``tokenizers.Tokenizer`` object (not vocab/merges file paths, which transformers 5 mishandles).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        model_max_length=64,
        clean_up_tokenization_spaces=False,
    )


def single_token_failures(tokenizer) -> list[str]:
    """Words that the demo needs as one token (with a leading space, exact case) but that are split."""
    words = [w for sets in load_word_sets().values() for members in sets for w in members] + list(OCCUPATIONS)
    return [w for w in words if len(tokenizer.encode(" " + w, add_special_tokens=False)) != 1]


def _portable_tokenizer_class(folder: Path) -> None:
    """Name the tokenizer class ``PreTrainedTokenizerFast`` in ``tokenizer_config.json``.

    transformers 5 writes ``TokenizersBackend``, which 4.x cannot resolve; both resolve ``PreTrainedTokenizerFast``.
    """
    path = folder / "tokenizer_config.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _set_seed(seed: int) -> None:
    import torch

    random.seed(seed)
    torch.manual_seed(seed)


def _lr_lambda(total: int, warmup: int, decay_start: int):
    """Linear warm-up, constant, then cosine decay to 10% (a long constant phase lets the conditional emerge)."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if step < decay_start:
            return 1.0
        progress = (step - decay_start) / max(1, total - decay_start)
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


def _length_bucketed_batches(encoded: Sequence[Sequence[int]], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of example indices with similar lengths (less padding, so faster steps on CPU)."""
    order = list(range(len(encoded)))
    rng.shuffle(order)
    chunk = batch_size * 32
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: len(encoded[i]))
        batches += [part[j : j + batch_size] for j in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def _weighted_lm_loss(model, ids, mask, occ_ids, occ_weight: float):
    """Next-token cross-entropy over real (unpadded) targets, occupation targets weighted by ``occ_weight``.

    Padding uses the eos id, so padding is masked by position (``mask``), never by token id.
    """
    import torch
    import torch.nn.functional as F

    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    targets = ids[:, 1:]
    weights = mask[:, 1:].to(logits.dtype)
    weights = weights * torch.where(torch.isin(targets, occ_ids), occ_weight, 1.0)
    nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none")
    return (nll.view_as(weights) * weights).sum() / weights.sum()


def train_demo_model(output: str | Path, config: TrainConfig | None = None, show_progress: bool = True) -> Path:
    """Generate the corpus, train tokenizer and model, save both (safetensors) plus a generation config to ``output``.

    Returns the output folder. Raises ``RuntimeError`` when a needed word is not a single token and
    ``config.strict_tokens`` is set (the word-swap symmetries could not act on it).
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel

    from .model import occupation_distribution, occupation_token_ids

    cfg = config or TrainConfig()
    out = Path(output)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    _set_seed(cfg.seed)
    t0 = time.perf_counter()

    docs = generate_corpus(cfg.seed, cfg.num_bias_sentences, cfg.min_word_count)
    tokenizer = train_tokenizer(docs, cfg.vocab_size)
    failures = single_token_failures(tokenizer)
    if failures:
        msg = f"{len(failures)} words are not single tokens: {failures[:20]}"
        if cfg.strict_tokens:
            raise RuntimeError(msg + " (raise min_word_count or vocab_size)")
        logger.warning(msg)
    eos = tokenizer.eos_token_id
    encoded = [ids[: cfg.n_positions - 1] + [eos] for ids in tokenizer(docs, add_special_tokens=False)["input_ids"]]
    n_tokens = sum(len(x) for x in encoded)
    logger.info("corpus: %d documents, %d tokens, vocab %d", len(docs), n_tokens, len(tokenizer))

    model_config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=cfg.n_positions,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        initializer_range=cfg.initializer_range,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    model = GPT2LMHeadModel(model_config)
    model.train()

    steps_per_epoch = len(_length_bucketed_batches(encoded, cfg.batch_size, random.Random(0)))
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.98),
    )
    warmup = max(1, int(cfg.warmup_fraction * total))
    schedule = _lr_lambda(total, warmup, max(warmup, int(cfg.decay_start_fraction * total)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    occ_ids = torch.tensor(sorted(occupation_token_ids(tokenizer).values()))

    order_rng = random.Random(cfg.seed + 2)
    step = 0
    bar = tqdm(total=total, desc="training demo model", unit="step", disable=not show_progress)
    ema = None
    while step < total:
        for batch_ids in _length_bucketed_batches(encoded, cfg.batch_size, order_rng):
            if step >= total:
                break
            batch = [encoded[i] for i in batch_ids]
            width = max(len(x) for x in batch)
            ids = torch.full((len(batch), width), eos, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, x in enumerate(batch):
                ids[row, : len(x)] = torch.tensor(x)
                mask[row, : len(x)] = 1
            loss = _weighted_lm_loss(model, ids, mask, occ_ids, cfg.occupation_loss_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
            bar.update(1)
            bar.set_postfix(loss=f"{ema:.3f}")
            if step % 50 == 0:
                logger.debug("step %d: loss %.3f, %.1f s", step, ema, time.perf_counter() - t0)
    bar.close()
    elapsed = time.perf_counter() - t0

    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config = GenerationConfig(
        bos_token_id=eos, eos_token_id=eos, pad_token_id=eos, max_new_tokens=16, do_sample=False
    )
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    _portable_tokenizer_class(out)
    (out / "training_args.json").write_text(
        json.dumps({**asdict(cfg), "steps": step, "train_seconds": round(elapsed, 1)}, indent=2) + "\n"
    )
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("trained %d parameters for %d steps in %.1f s; saved to %s", n_params, step, elapsed, out)
    print(f"trained {n_params:,} parameters, {step} steps, {elapsed:.1f} s, final loss {ema:.3f}; saved to {out}")
    for prompt in DEMO_PROMPTS[:4]:
        dist = occupation_distribution(model, tokenizer, prompt)
        top = ", ".join(f"{o} {p:.2f}" for o, p in sorted(dist.items(), key=lambda kv: -kv[1])[:5])
        print(f"  {prompt!r} -> {top}")
    return out


def build_parser() -> argparse.ArgumentParser:
    """The command-line options (one per :class:`TrainConfig` field that is worth changing)."""
    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m hf_equivariant.demo.train",
        description="Train the offline demo's byte-level BPE tokenizer and tiny GPT-2 on a generated corpus with "
        "planted demographic/occupation bias, and save them as a Hugging Face folder.",
    )
    p.add_argument("--output", required=True, help="folder to write config, safetensors weights and tokenizer to")
    p.add_argument("--seed", type=int, default=d.seed, help="seed for corpus, initialisation and batch order")
    p.add_argument("--num-bias-sentences", type=int, default=d.num_bias_sentences, help="biased sentences in corpus")
    p.add_argument("--min-word-count", type=int, default=d.min_word_count, help="uses of each word-set word")
    p.add_argument("--vocab-size", type=int, default=d.vocab_size, help="upper bound on the BPE vocabulary")
    p.add_argument("--n-layer", type=int, default=d.n_layer)
    p.add_argument("--n-embd", type=int, default=d.n_embd)
    p.add_argument("--n-head", type=int, default=d.n_head)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--occupation-loss-weight", type=float, default=d.occupation_loss_weight,
                   help="loss weight of occupation targets (1 = plain language-model loss)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many optimiser steps")
    p.add_argument("--threads", type=int, default=d.threads,
                   help="torch CPU threads; 0 = torch's default (one thread gives the same weights everywhere)")
    p.add_argument("--no-progress", action="store_true", help="hide the tqdm progress bar")
    return p


def _show_info_logs() -> None:
    """Print this package's INFO messages on stderr (transformers' own logging keeps its verbosity)."""
    import logging as std_logging

    package_logger = std_logging.getLogger("hf_equivariant")
    if not package_logger.handlers:
        handler = std_logging.StreamHandler()
        handler.setFormatter(std_logging.Formatter("[%(name)s] %(message)s"))
        package_logger.addHandler(handler)
    package_logger.setLevel(std_logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    _show_info_logs()
    cfg = TrainConfig(
        seed=args.seed,
        num_bias_sentences=args.num_bias_sentences,
        min_word_count=args.min_word_count,
        vocab_size=args.vocab_size,
        n_layer=args.n_layer,
        n_embd=args.n_embd,
        n_head=args.n_head,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        occupation_loss_weight=args.occupation_loss_weight,
        max_steps=args.max_steps,
        threads=args.threads or None,
    )
    train_demo_model(args.output, cfg, show_progress=not args.no_progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
