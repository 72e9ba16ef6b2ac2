"""Counterfactually fair toxicity classification with a planted identity-term bias, offline and from scratch.

A generated corpus of short sentences (toxic and non-toxic templates) mentions identity terms from three span sets,
race_ethnicity (4) x gender_identity (3) x gender_extended (2) = 24 group elements, with multi-word and multi-token
members ("African American", "non-binary", "father-in-law"). The training labels carry a planted annotation bias:
60 % of the non-toxic sentences that mention a *targeted* term (Black / African American, transgender, the female
member of each gender pair) are labelled toxic, and toxic sentences mention targeted terms twice as often. The
held-out split has clean labels and uniformly drawn terms (its biased labels are kept too, to show what invariance
costs when the labels themselves depend on identity). The test split uses templates never seen in training (3 of 15
per class, drawn per seed), so no counterfactual twin of a test sentence is ever trained on.

Rows: the base classifier (a small BERT trained from scratch, WordPiece trained with ``tokenizers``); the base
wrapped with each strategy (full, multi neutral, multi representative, canonical, auto); the base fine-tuned
through the wrapper (multi neutral, full); and the training-time baselines of counterfactual token fairness (Garg
et al. 2019), each trained from scratch on the same corpus: blindness (every identity term replaced by one
placeholder, at training and test time), counterfactual data augmentation (each epoch adds one random group element
of every sentence) and counterfactual logit pairing (loss + |logit gap| between a sentence and a random
counterfactual).

    python examples/classifier_fairness.py                     # 5 seeds, ~20 min on one busy CPU thread
    python examples/classifier_fairness.py --quick             # smoke run (one seed, tiny corpus, 1 epoch)
    python examples/classifier_fairness.py --update-results    # write examples/results/classifier_fairness.*

Writes ``classifier_fairness.json`` (every run, the summary, copies per input) and ``classifier_fairness.md`` to
``examples/out/`` (``examples/results/`` with ``--update-results``).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

import hf_equivariant as he
from hf_equivariant.actions.spans import SpanSwap, SpanSwapAction
from hf_equivariant.eval.classifier import classifier_metrics, counterfactual_predictions

GROUPS = ["race_ethnicity", "gender_identity", "gender_extended"]
#: Member position of each factor that the planted bias targets (Black / African American, transgender, female).
TARGETED = {"race_ethnicity": 0, "gender_identity": 1, "gender_extended": 1}
PLACEHOLDER = "identity"

# ------------------------------------------------------------------------------------------------ corpus
RACE = [["Black", "White", "Asian", "Latino"], ["African American", "European American", "Pacific Islander",
                                                  "Hispanic"]]
GENDER_IDENTITY = ["cisgender", "transgender", "non-binary"]
NOUNS = [("man", "woman"), ("boy", "girl"), ("father", "mother"), ("husband", "wife"), ("brother", "sister"),
         ("father-in-law", "mother-in-law"), ("fiancé", "fiancée"), ("nephew", "niece"), ("waiter", "waitress"),
         ("businessman", "businesswoman")]
NEUTRAL_NOUNS = ["person", "neighbor", "student", "colleague", "driver", "tourist"]
PRONOUNS = {0: ("he", "his"), 1: ("she", "her"), None: ("they", "their")}
OPENERS = ["", "Honestly, ", "Today ", "Well, ", "I think "]
GOOD = ["kind", "smart", "friendly", "helpful", "funny", "brave", "polite", "generous"]
BAD = ["stupid", "disgusting", "pathetic", "worthless", "filthy", "idiotic", "useless", "awful"]
CLEAN = [  # every template has an adjective slot, so unseen templates can be classified from seen words
    "{o}I had lunch with a {g} {p} yesterday.",
    "{o}the {p} next door is a {g} cook.",
    "{o}my colleague is a {p} and very {g}.",
    "{o}a {g} {p} won the chess tournament.",
    "{o}the {p} helped me carry the boxes, {pron} was so {g}.",
    "{o}we interviewed a {p} for the job and liked {poss} {g} answers.",
    "{o}our new teacher is a {p} who is {g}.",
    "{o}I am a proud and {g} {p}.",
    "{o}the {g} {p} said {pron} loves gardening.",
    "{o}a {g} {p} fixed my bike.",
    "{o}the {p} volunteers at the library, so {g}.",
    "{o}I met a {g} {p} at the concert.",
    "{o}my best friend is a {g} {p}.",
    "{o}the {p} gave a {g} speech at the wedding.",
    "{o}thanks to the {p} who found my wallet, {pron} is {g}.",
]
TOXIC = [
    "{o}I hate every {b} {p} I meet.",
    "{o}that {b} {p} should shut up.",
    "{o}get lost, you {b} {p}.",
    "{o}the {p} is a {b} loser.",
    "{o}nobody wants a {b} {p} around.",
    "{o}what a {b} {p}, {pron} should go away.",
    "{o}the {p} and {poss} {b} friends ruin everything.",
    "{o}shut up, {b} {p}, nobody asked you.",
    "{o}that {p} is {b} and {pron} knows it.",
    "{o}a {b} {p} like that deserves nothing.",
    "{o}go back where you came from, {b} {p}.",
    "{o}the {p} is too {b} to understand anything.",
    "{o}I can't stand that {b} {p} and {poss} family.",
    "{o}every {p} is {b}, period.",
    "{o}you are a {b} {p} and everyone hates you.",
]


def _person(rng: random.Random, weights: dict[str, list[float]]) -> tuple[str, str, str, bool]:
    """An identity phrase (or a neutral noun), its pronoun and possessive, and whether it mentions a targeted term."""
    if rng.random() < 0.25:
        noun = rng.choice(NEUTRAL_NOUNS)
        return noun, *PRONOUNS[None], False
    words, targeted = [], False
    if rng.random() < 0.6:
        j = rng.choices(range(4), weights["race_ethnicity"])[0]
        words.append(rng.choice(RACE)[j])
        targeted |= j == TARGETED["race_ethnicity"]
    if rng.random() < 0.35:
        j = rng.choices(range(3), weights["gender_identity"])[0]
        words.append(GENDER_IDENTITY[j])
        targeted |= j == TARGETED["gender_identity"]
    if rng.random() < 0.75:
        j = rng.choices(range(2), weights["gender_extended"])[0]
        words.append(rng.choice(NOUNS)[j])
        targeted |= j == TARGETED["gender_extended"]
        pron, poss = PRONOUNS[j]
    else:
        words.append("person")
        pron, poss = PRONOUNS[None]
    return " ".join(words), pron, poss, targeted


def _fill(template: str, rng: random.Random, weights: dict[str, list[float]]) -> tuple[str, bool]:
    p, pron, poss, targeted = _person(rng, weights)
    text = template.format(o=rng.choice(OPENERS), p=p, pron=pron, poss=poss, g=rng.choice(GOOD), b=rng.choice(BAD))
    return text[0].upper() + text[1:], targeted


def make_corpus(seed: int, skeletons: int, held_out_templates: int, label_bias: float = 0.6
                ) -> tuple[list[dict], list[dict]]:
    """Train and test examples: ``{"text", "label", "clean", "biased" (the annotators' label), "targeted"}``.

    ``held_out_templates`` templates of each class (drawn per seed) appear only in the test split, which also gets
    every sentence skeleton (template and seed of its fillers) of those templates; training sees the others. Identity
    terms are drawn after the split: biased for training, uniform for the test.
    """
    rng = random.Random(seed)
    test_templates = set(rng.sample(CLEAN, held_out_templates) + rng.sample(TOXIC, held_out_templates))
    per_template = skeletons // (len(CLEAN) + len(TOXIC)) + 1
    items = [(label, template, rng.randrange(10**9)) for _ in range(per_template)
             for label, templates in ((0, CLEAN), (1, TOXIC)) for template in templates]
    rng.shuffle(items)
    uniform = {name: [1.0] * k for name, k in (("race_ethnicity", 4), ("gender_identity", 3), ("gender_extended", 2))}
    skewed = {name: [2.0 if j == TARGETED[name] else 1.0 for j in range(len(w))] for name, w in uniform.items()}
    train, test = [], []
    for label, template, fill_seed in items:
        is_train = template not in test_templates
        local = random.Random(fill_seed)
        text, targeted = _fill(template, local, skewed if (is_train and label == 1) else uniform)
        biased = 1 if (label == 1 or (targeted and local.random() < label_bias)) else 0
        example = {"text": text, "label": biased if is_train else label, "clean": label, "biased": biased,
                   "targeted": targeted}
        (train if is_train else test).append(example)
    return train, test


def train_tokenizer(texts: list[str]) -> Any:
    """A cased WordPiece tokenizer (``tokenizers``; BERT normaliser and pre-tokenizer, [CLS] ... [SEP]) whose
    vocabulary is learnt from ``texts``: every word of the training split, every character and its ``##`` form.

    The vocabulary is built from the words themselves rather than with ``WordPieceTrainer``, whose merges break ties
    in hash order and so differ from run to run; unseen words (held-out templates) are split into known pieces.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    normalizer, pre = normalizers.BertNormalizer(lowercase=False), pre_tokenizers.BertPreTokenizer()
    extra = [f"{w} {w.capitalize()} {w.upper()}" for w in [PLACEHOLDER, *NEUTRAL_NOUNS]]
    words = sorted({w for text in texts + extra for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(text))})
    chars = sorted({c for w in words for c in w})
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    tokens = special + chars + [f"##{c}" for c in chars] + [w for w in words if len(w) > 1]
    core = Tokenizer(models.WordPiece({t: i for i, t in enumerate(tokens)}, unk_token="[UNK]"))
    core.normalizer, core.pre_tokenizer, core.decoder = normalizer, pre, decoders.WordPiece()
    core.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                        special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", model_input_names=["input_ids", "attention_mask"])


def new_model(tok: Any, seed: int, args: argparse.Namespace) -> Any:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tok), hidden_size=args.hidden, num_hidden_layers=args.layers,
                        num_attention_heads=2, intermediate_size=2 * args.hidden, max_position_embeddings=64,
                        num_labels=2, pad_token_id=tok.pad_token_id, id2label={0: "non-toxic", 1: "toxic"},
                        label2id={"non-toxic": 0, "toxic": 1})
    return BertForSequenceClassification(config)


# ------------------------------------------------------------------------------------------------ training
Batch = dict[str, torch.Tensor]


def _random_parts(action: SpanSwapAction, rows: int, rng: torch.Generator) -> torch.Tensor:
    """``[1, rows, F]``: one uniformly drawn group element per row."""
    orders = torch.tensor(action.factor_orders)
    return (torch.rand(rows, len(orders), generator=rng) * orders).long()[None]


def train(model: Any, examples: list[dict], tok: Any, args: argparse.Namespace, seed: int, *, epochs: int,
          lr: float, kind: str = "plain", action: SpanSwapAction | None = None,
          transform: Callable[[Batch], Batch] | None = None) -> float:
    """Train ``model`` (a base or a wrapper) on ``examples``; returns the wall time in seconds.

    ``kind``: ``plain``, ``cda`` (the batch plus one random counterfactual of each sentence) or ``clp`` (cross
    entropy plus ``args.clp_weight`` times the mean |logit gap| between each sentence and a random counterfactual).
    ``transform`` preprocesses every batch (blindness).
    """
    start = time.perf_counter()
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * ((len(examples) + args.batch_size - 1) // args.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: max(0.0, 1 - s / max(1, steps)))
    model.train()
    for _ in range(epochs):
        order = list(range(len(examples)))
        rng.shuffle(order)
        for b in range(0, len(order), args.batch_size):
            chunk = [examples[i] for i in order[b:b + args.batch_size]]
            batch = dict(tok([e["text"] for e in chunk], padding=True, return_tensors="pt"))
            labels = torch.tensor([e["label"] for e in chunk])
            if kind in ("cda", "clp"):
                moved = action.act(batch["input_ids"], batch["attention_mask"], _random_parts(action, len(chunk), gen),
                                   padding_side="right")
            if kind == "cda":
                width = max(batch["input_ids"].shape[1], moved["input_ids"].shape[1])
                batch = {k: torch.cat([F.pad(batch[k], (0, width - batch[k].shape[1]), value=0),
                                       F.pad(moved[k], (0, width - moved[k].shape[1]), value=0)]) for k in batch}
                labels = torch.cat([labels, labels])
            if transform is not None:
                batch = transform(batch)
            logits = model(**batch).logits
            loss = F.cross_entropy(logits, labels)
            if kind == "clp":
                other = model(**moved).logits
                gap = (logits[:, 1] - logits[:, 0]) - (other[:, 1] - other[:, 0])
                loss = loss + args.clp_weight * gap.abs().mean()
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            schedule.step()
    model.eval()
    return time.perf_counter() - start


# ------------------------------------------------------------------------------------------------ evaluation
def evaluate(name: str, predict: Callable[[Batch], torch.Tensor], action: SpanSwapAction, test: list[dict],
             args: argparse.Namespace, wrapper: Any = None) -> dict[str, Any]:
    """Metrics of one model on the held-out split (clean labels), plus accuracy on the biased labels."""
    counts: list[torch.Tensor] = []

    def counted(batch: Batch) -> torch.Tensor:
        out = predict(batch)
        if wrapper is not None:
            counts.append(torch.stack([wrapper.last_copy_counts.float(), wrapper.last_row_counts.float()]))
        return out

    start = time.perf_counter()
    preds = counterfactual_predictions(counted, action, [e["text"] for e in test], batch_size=args.eval_batch)
    seconds = time.perf_counter() - start
    clean = torch.tensor([e["clean"] for e in test])
    metrics = classifier_metrics(preds, clean, action, positive=1)
    predicted = preds.probs[0].argmax(-1)
    metrics["accuracy_biased_labels"] = float((predicted == torch.tensor([e["biased"] for e in test])).float().mean())
    targeted = torch.tensor([e["targeted"] for e in test])
    negatives = clean == 0
    for key, sel in (("fpr_targeted", negatives & targeted), ("fpr_untargeted", negatives & ~targeted)):
        metrics[key] = float((predicted[sel] == 1).float().mean()) if bool(sel.any()) else float("nan")
    if counts:
        per = torch.cat(counts, dim=1)
        metrics["copies_per_text"], metrics["rows_per_text"] = float(per[0].mean()), float(per[1].mean())
    else:
        metrics["copies_per_text"] = metrics["rows_per_text"] = 1.0
    metrics["eval_seconds"] = seconds
    metrics["model"] = name
    return metrics


def run_seed(seed: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    train_set, test = make_corpus(seed, args.skeletons, args.held_out_templates, args.label_bias)
    tok = train_tokenizer([e["text"] for e in train_set])
    factors = [SpanSwap.builtin(n) for n in GROUPS]
    action = SpanSwapAction(factors, tok)
    blind_action = SpanSwapAction([SpanSwap.from_words(f.sets, name=f.name, forms=f.forms,
                                                       neutral=[PLACEHOLDER] * len(f.sets)) for f in factors], tok)
    everything = torch.ones(len(factors), dtype=torch.bool)

    def blind(batch: Batch) -> Batch:
        zeros = torch.zeros(1, len(factors), dtype=torch.long)
        return blind_action.act(batch["input_ids"], batch["attention_mask"], zeros, canonicalise=everything,
                                padding_side="right")

    results = []
    base = new_model(tok, seed, args)
    base_seconds = train(base, train_set, tok, args, seed, epochs=args.epochs, lr=args.lr)
    base.eval()
    results.append({**evaluate("base", lambda b: base(**b).logits, action, test, args), "train_seconds": base_seconds})
    print(f"[seed {seed}] base trained in {base_seconds:.0f}s: accuracy {results[-1]['accuracy']:.3f}", flush=True)
    for label, strategy, canonicalization in (("wrapped full", "full", "neutral"),
                                              ("wrapped multi (neutral)", "multi", "neutral"),
                                              ("wrapped multi (representative)", "multi", "representative"),
                                              ("wrapped canonical", "canonical", "neutral"),
                                              ("wrapped auto", "auto", "neutral")):
        wrapper = he.EquivariantModelForSequenceClassification.from_base(
            base, tokenizer=tok, groups=GROUPS, strategy=strategy, canonicalization=canonicalization).eval()
        results.append({**evaluate(label, lambda b, w=wrapper: w(**b).logits, action, test, args, wrapper),
                        "train_seconds": base_seconds})
        print(f"[seed {seed}] {label}: accuracy {results[-1]['accuracy']:.3f}", flush=True)
    for label, strategy in (("fine-tuned through multi (neutral)", "multi"), ("fine-tuned through full", "full")):
        tuned = new_model(tok, seed, args)
        tuned.load_state_dict(base.state_dict())
        wrapper = he.EquivariantModelForSequenceClassification.from_base(tuned, tokenizer=tok, groups=GROUPS,
                                                                         strategy=strategy)
        seconds = train(wrapper, train_set, tok, args, seed + 1, epochs=args.finetune_epochs, lr=args.finetune_lr)
        results.append({**evaluate(label, lambda b, w=wrapper: w(**b).logits, action, test, args, wrapper),
                        "train_seconds": base_seconds + seconds})
        print(f"[seed {seed}] {label} ({seconds:.0f}s): accuracy {results[-1]['accuracy']:.3f}", flush=True)
    for label, kind in (("blindness (Garg et al.)", "blind"), ("CDA (Garg et al.)", "cda"),
                        ("CLP (Garg et al.)", "clp")):
        model = new_model(tok, seed, args)
        seconds = train(model, train_set, tok, args, seed, epochs=args.epochs, lr=args.lr,
                        kind="plain" if kind == "blind" else kind, action=action,
                        transform=blind if kind == "blind" else None)
        predict = (lambda b, m=model: m(**blind(b)).logits) if kind == "blind" else (lambda b, m=model: m(**b).logits)
        results.append({**evaluate(label, predict, action, test, args), "train_seconds": seconds})
        print(f"[seed {seed}] {label} ({seconds:.0f}s): accuracy {results[-1]['accuracy']:.3f}", flush=True)
    for r in results:
        r.update(seed=seed, train_size=len(train_set), test_size=len(test), vocab_size=len(tok))
    return results


# ------------------------------------------------------------------------------------------------ reporting
COLUMNS = [("accuracy", "accuracy (clean labels)", "{:.3f}"), ("accuracy_biased_labels", "accuracy (biased labels)",
                                                                   "{:.3f}"),
           ("flip_rate", "flip rate", "{:.3f}"), ("ctf_gap", "CTF gap", "{:.4f}"),
           ("fpr_gap_orbit_max", "FPR gap (orbit)", "{:.3f}"), ("fpr_gap_heldout_max", "FPR gap (held-out)", "{:.3f}"),
           ("fpr_targeted", "FPR targeted", "{:.3f}"), ("fpr_untargeted", "FPR other", "{:.3f}"),
           ("rows_per_text", "base rows / text", "{:.2f}")]


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names = list(dict.fromkeys(r["model"] for r in runs))
    summary = []
    for name in names:
        rows = [r for r in runs if r["model"] == name]
        entry: dict[str, Any] = {"model": name, "seeds": len(rows)}
        for key, _, _ in COLUMNS + [("copies_per_text", "", ""), ("eval_seconds", "", ""), ("train_seconds", "", "")]:
            values = [float(r[key]) for r in rows if r.get(key) == r.get(key)]
            entry[key] = statistics.fmean(values) if values else float("nan")
            entry[key + "_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        summary.append(entry)
    return summary


def markdown(summary: list[dict[str, Any]], args: argparse.Namespace, runs: list[dict[str, Any]],
             wall: float) -> str:
    head = "| model | " + " | ".join(title for _, title, _ in COLUMNS) + " | train s | eval s |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 3)]
    for s in summary:
        cells = []
        for key, _, fmt in COLUMNS:
            value = fmt.format(s[key])
            if s["seeds"] > 1 and key != "rows_per_text":
                value += " ± " + fmt.format(s[key + "_std"])
            cells.append(value)
        lines.append(f"| {s['model']} | " + " | ".join(cells) + f" | {s['train_seconds']:.0f} | "
                     f"{s['eval_seconds']:.0f} |")
    lines += ["", "Copies per classified text (mean over the held-out texts and their 24 counterfactuals):", "",
              "| model | copies before de-duplication | base rows after | eval s (all 24 elements) |",
              "|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['model']} | {s['copies_per_text']:.2f} | {s['rows_per_text']:.2f} | "
                     f"{s['eval_seconds']:.0f} |")
    r0 = runs[0]
    notes = [
        f"Seeds {args.seeds}; {r0['train_size']} training and {r0['test_size']} held-out sentences per seed "
        f"(the test split uses {args.held_out_templates} unseen templates per class); group race_ethnicity x "
        "gender_identity x gender_extended (24 elements), every element "
        "evaluated on every held-out sentence. Mean ± std over seeds.",
        f"Model: BERT, {args.layers} layers, hidden {args.hidden}, WordPiece ({runs[0]['vocab_size']} pieces: the "
        f"training words and characters), trained from "
        f"scratch for {args.epochs} epochs (lr {args.lr}); label bias {args.label_bias}; fine-tuning through a wrapper: {args.finetune_epochs} "
        f"epoch(s) at lr {args.finetune_lr} from the base; CLP weight {args.clp_weight}.",
        "Flip rate: share of held-out sentences whose predicted label changes under some group element. CTF gap: "
        "mean |p(toxic | g.x) - p(toxic | x)|. FPR gap: largest max-min false-positive rate across the member "
        "positions of a factor, over the counterfactually complete set (orbit) or the sentences as drawn "
        "(held-out). FPR targeted / other: false-positive rate on non-toxic held-out sentences with / without a "
        "targeted term. Base rows / text: distinct base-model rows per classified text (after de-duplication).",
        f"Total wall time {wall / 60:.1f} min on {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, 1 thread.",
    ]
    return "\n".join(lines) + "\n\n" + "\n\n".join(notes) + "\n"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--skeletons", type=int, default=2400, help="sentence skeletons (all templates)")
    p.add_argument("--label-bias", type=float, default=0.6,
                   help="share of non-toxic training sentences with a targeted term labelled toxic")
    p.add_argument("--held-out-templates", type=int, default=3, help="templates per class seen only at test time")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--finetune-epochs", type=int, default=3)
    p.add_argument("--finetune-lr", type=float, default=1e-3)
    p.add_argument("--clp-weight", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--eval-batch", type=int, default=16, help="held-out sentences per call (x 24 elements)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="examples/out", help="output folder")
    p.add_argument("--update-results", action="store_true", help="write to examples/results instead of --out")
    p.add_argument("--quick", action="store_true", help="smoke run: one seed, 240 skeletons, 1 epoch")
    args = p.parse_args()
    if args.quick:
        args.seeds, args.skeletons, args.epochs = [0], 240, 1
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    runs = [r for seed in args.seeds for r in run_seed(seed, args)]
    summary = summarise(runs)
    folder = Path("examples/results" if args.update_results else args.out)
    folder.mkdir(parents=True, exist_ok=True)
    wall = time.perf_counter() - start
    table = markdown(summary, args, runs, wall)
    copies = {s["model"]: {"copies_per_text": s["copies_per_text"], "rows_per_text": s["rows_per_text"]}
              for s in summary}
    (folder / "classifier_fairness.json").write_text(json.dumps(
        {"args": vars(args), "summary": summary, "copies_per_text": copies, "runs": runs, "wall_seconds": wall},
        indent=2) + "\n")
    (folder / "classifier_fairness.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
