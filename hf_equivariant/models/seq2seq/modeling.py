"""``EquivariantModelForSeq2SeqLM``: any Hugging Face encoder-decoder (T5, BART, Marian, ...) made exactly
equivariant to a product of word swaps that move an input word and its output word together.

For every group element ``g`` and decoder position ``t``: ``P(g.w | g.x, g.y_<=t) = P(w | x, y_<=t)``, ``g`` acting on
the encoder input ``x`` by the input action and on the decoder input ``y`` and the distribution by the output action.

The wrapper hands the shared executor one joint sequence per row (encoder ids, then decoder ids; see
:class:`~hf_equivariant.actions.seq2seq.PairedTokenAction`) and a callable that runs the base model on base rows:
the executor realises the strategy's copies, transforms them, shares identical ones and aggregates the logits. What
is left here is specific to encoder-decoders: encoding each distinct transformed encoder input once, the
``EncoderDecoderCache`` (forked when copies diverge, reordered by beam search), neutral inputs fed through the base's
own embedding modules, generation hooks, the ``labels`` loss and saving.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, GenerationMixin
from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput
from transformers.utils import ModelOutput

from ...actions.seq2seq import PairedTokenAction, combined_word_swaps, paired_word_swaps
from ...actions.tokens import TokenPermutationAction, WordSwap
from ...aggregation import Aggregation
from ...executor import run_tokens
from ...plans import Plan, make_plan
from ...sharing import RowLayout
from ..base import EmbeddingDelegationMixin, EquivariantPreTrainedModel
from . import cache as caches
from .configuration import EquivariantSeq2SeqLMConfig

__all__ = ["EquivariantModelForSeq2SeqLM", "EncoderInput"]

_OUTPUT_CACHE_FIELD = "cache" if "cache" in {f.name for f in dataclasses.fields(Seq2SeqLMOutput)} else "past_key_values"


@dataclass
class EncoderInput(ModelOutput):
    """What ``generate`` keeps as "encoder outputs" for the wrapper: the encoder input ids themselves.

    The group transforms the encoder *input*, so encoding is deferred to the forward pass, which encodes each
    distinct transformed copy once and keeps the states in the cache for later steps. As a ``ModelOutput`` it is
    expanded for beams and returned sequences like real encoder outputs.
    """

    input_ids: torch.LongTensor | None = None


def _vocab_sizes(base: Any) -> tuple[int, int]:
    """``(encoder input ids, logits width)`` of a base encoder-decoder."""
    embed = base.get_encoder().get_input_embeddings()
    out = base.get_output_embeddings()
    width = int(out.weight.shape[0]) if out is not None else int(base.config.vocab_size)
    return int(embed.weight.shape[0]), width


def _specs(action: TokenPermutationAction) -> list[dict[str, Any]]:
    return [f.to_spec() for f in action.factors]


class EquivariantModelForSeq2SeqLM(EmbeddingDelegationMixin, EquivariantPreTrainedModel, GenerationMixin):
    """An encoder-decoder whose next-token distribution satisfies ``P(g.w | g.x, g.y) = P(w | x, y)`` for every
    element ``g`` of a product of word-swap factors acting on inputs and outputs together."""

    config_class = EquivariantSeq2SeqLMConfig
    main_input_name = "input_ids"
    base_auto_class = AutoModelForSeq2SeqLM
    group_input = "input_ids"
    output_kind = "equivariant"
    auto_classes = ("AutoModelForSeq2SeqLM",)
    card_template = "sections"
    card_pipeline_tag = "text2text-generation"
    card_tags = ("equivariance", "text2text-generation", "compositional-generalization")

    def __init__(self, config: EquivariantSeq2SeqLMConfig, base_model: Any = None, tokenizer: Any = None) -> None:
        super().__init__(config)
        if base_model is not None and not getattr(base_model.config, "is_encoder_decoder", False):
            raise ValueError(f"{type(base_model).__name__} is not an encoder-decoder; use EquivariantModelForCausalLM "
                             "for decoder-only language models")
        self.attach_base(base_model, tokenizer)
        self._action: PairedTokenAction | None = None
        self._action_key: tuple | None = None
        self._plans: dict[tuple, Plan] = {}
        self._cache_key: str | None = None
        self.post_init()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_base(
        cls,
        model_or_name: Any,
        tokenizer: Any = None,
        factors: Mapping[str, Any] | None = None,
        *,
        output_tokenizer: Any = None,
        action: TokenPermutationAction | None = None,
        input_action: TokenPermutationAction | None = None,
        output_action: TokenPermutationAction | None = None,
        strategy: str = "multi",
        canonicalization: str = "representative",
        aggregation: str = "mean_prob",
        branch_weighting: str = "size",
        share_identical_copies: bool = True,
        revision: str | None = None,
        **loading_kwargs: Any,
    ) -> EquivariantModelForSeq2SeqLM:
        """Wrap a base encoder-decoder (an instance, a Hub id or a local folder).

        The group is given one of three ways:

        - ``factors``: ``{name: {"input": cycles, "output": cycles}}`` (``SCAN_FACTORS``, ``factor_token_cycles``)
          or ``{name: (input cycles, output cycles)}``, cycles being lists of words (resolved with ``tokenizer``,
          and ``output_tokenizer`` on the output side) or of token ids. With one tokenizer and one vocabulary for
          both sides, each factor becomes one permutation of that vocabulary moving both sides' words.
        - ``action``: one :class:`TokenPermutationAction` for both sides (one shared vocabulary).
        - ``input_action`` and ``output_action``: one per side (separate vocabularies), the same group.

        Loading options such as ``dtype`` go to the base model's ``from_pretrained`` (only when given by name).
        """
        base, name = cls.load_base(model_or_name, revision=revision, **loading_kwargs)
        if tokenizer is None and name is not None and isinstance(model_or_name, (str, os.PathLike)):
            tokenizer = AutoTokenizer.from_pretrained(name, revision=revision)
        in_vocab, out_vocab = _vocab_sizes(base)
        given = [factors is not None, action is not None, input_action is not None or output_action is not None]
        if sum(given) != 1:
            raise ValueError("give the group one way: factors=..., action=... (one vocabulary), or input_action=... "
                             "and output_action=... (one per side)")
        if factors is not None:
            pairs = paired_word_swaps(factors, tokenizer, output_tokenizer)
            one_vocabulary = (output_tokenizer is None or output_tokenizer is tokenizer) and in_vocab == out_vocab
            if one_vocabulary:
                input_specs = output_specs = [s.to_spec() for s in combined_word_swaps(pairs)]
            else:
                one_sided = [n for n, i, o in pairs if i is None or o is None]
                if one_sided:
                    raise ValueError(f"factors {one_sided} move words on one side only; with separate input and "
                                     "output vocabularies every factor needs cycles on both sides")
                input_specs = [i.to_spec() for _, i, _ in pairs]
                output_specs = [o.to_spec() for _, _, o in pairs]
        elif action is not None:
            input_specs = output_specs = _specs(action)
        else:
            if input_action is None or output_action is None:
                raise ValueError("give both input_action and output_action (or action=... for one vocabulary)")
            PairedTokenAction(input_action, output_action)  # validates one group
            input_specs, output_specs = _specs(input_action), _specs(output_action)
        # Build the actions now: ids must fit the model's vocabularies, supports must be disjoint.
        PairedTokenAction(TokenPermutationAction([WordSwap.from_spec(s) for s in input_specs], in_vocab),
                          TokenPermutationAction([WordSwap.from_spec(s) for s in output_specs], out_vocab))
        if tokenizer is not None and len(tokenizer) > in_vocab:
            raise ValueError(f"the tokenizer has {len(tokenizer)} tokens but the encoder embeds {in_vocab}: they do "
                             "not belong together (mismatched vocabularies)")
        config = EquivariantSeq2SeqLMConfig(
            text_config=base.config, input_groups=input_specs, output_groups=output_specs, strategy=strategy,
            canonicalization=canonicalization, aggregation=aggregation, branch_weighting=branch_weighting,
            base_model_name_or_path=name, base_model_revision=revision,
            share_identical_copies=share_identical_copies)
        model = cls(config, base_model=base, tokenizer=tokenizer)
        model.track_base(revision, cache_dir=loading_kwargs.get("cache_dir"))
        return model

    def attach_loaded_components(self, path: str | os.PathLike, hub_kwargs: dict[str, Any]) -> None:
        """The tokenizer saved beside the weights (``None`` when the folder has none)."""
        self.tokenizer = _try_load_tokenizer(path, hub_kwargs)

    def card_group_tags(self) -> list[str]:
        return [f.name for f in self.action.output_action.factors]

    def card_context(self, repo: str) -> dict[str, Any]:
        """Values for ``model_cards/sections.md`` (from the family's sections)."""
        title, summary, usage, sections = self.model_card_sections()
        body = "\n\n".join(f"## {heading}\n\n{text.strip()}" for heading, text in sections)
        return {"title": title, "summary": summary, "usage": usage.replace("<this repo or folder>", repo).strip(),
                "sections": body, "repo": repo}

    # ------------------------------------------------------------------ group machinery
    @property
    def action(self) -> PairedTokenAction:
        """The paired action, rebuilt from the config whenever its groups or the vocabulary sizes change."""
        sizes = _vocab_sizes(self.base)
        key = (repr(self.config.input_groups), repr(self.config.output_groups), sizes)
        if self._action is None or self._action_key != key:
            inputs = TokenPermutationAction([WordSwap.from_spec(g) for g in self.config.input_groups], sizes[0])
            if self.config.input_groups == self.config.output_groups and sizes[0] == sizes[1]:
                outputs = inputs  # one vocabulary: literally one action for both sides
            else:
                outputs = TokenPermutationAction([WordSwap.from_spec(g) for g in self.config.output_groups], sizes[1])
            self._action, self._action_key, self._plans = PairedTokenAction(inputs, outputs), key, {}
        return self._action

    @property
    def plan(self) -> Plan:
        """The copies the configured strategy runs for each input row (follows edits of ``config.strategy``)."""
        action = self.action
        key = (self.config.strategy, self.config.branch_weighting, self.config.canonicalization)
        if key not in self._plans:
            self._plans[key] = make_plan(action.group, *key[:2], canonicalization=key[2])
        return self._plans[key]

    @property
    def copies_per_row(self) -> int:
        """Base-model rows per input row before sharing: prod |Gi| (full), sum |Gi| (multi) or 1 (canonical)."""
        return self.plan.num_copies

    @property
    def last_row_count(self) -> int:
        """Decoder rows run by this thread's most recent forward call (after sharing identical copies)."""
        return getattr(self._diagnostics, "rows", 0)

    @property
    def last_encoder_count(self) -> int:
        """Encoder rows run by this thread's most recent forward call (0 when the cache held them)."""
        return getattr(self._diagnostics, "encoder_rows", 0)

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Decoder inputs for teacher forcing: the labels shifted right, as the base model builds them."""
        prepare = getattr(self.base, "prepare_decoder_input_ids_from_labels", None)
        if callable(prepare):
            return prepare(labels=labels)
        start = self.config.decoder_start_token_id
        pad = self.config.pad_token_id
        if start is None or pad is None:
            raise ValueError("cannot shift labels right: the base config has no decoder_start_token_id/pad_token_id")
        shifted = labels.new_full(labels.shape, int(start))
        shifted[:, 1:] = labels[:, :-1]
        return shifted.masked_fill(shifted == -100, int(pad))

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: EncoderInput | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        decoder_context_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> Seq2SeqLMOutput | tuple:
        """Equivariant next-token logits ``[N, Td, V]`` for each decoder position; with ``labels``, the NLL of the
        symmetrised distribution (teacher forcing on ``labels`` shifted right unless ``decoder_input_ids`` is given).

        ``decoder_context_ids`` is the whole decoder sequence so far when ``decoder_input_ids`` holds only its new
        tokens (with a cache; ``generate`` passes it). ``encoder_outputs`` may only be the :class:`EncoderInput`
        that ``generate`` builds: precomputed encoder states cannot be transformed.
        """
        if inputs_embeds is not None or decoder_inputs_embeds is not None:
            raise ValueError("pass input_ids and decoder_input_ids, not embeddings: the group acts on token ids")
        if encoder_outputs is not None:
            if not isinstance(encoder_outputs, EncoderInput):
                raise ValueError("precomputed encoder_outputs cannot be transformed by the group; pass input_ids")
            input_ids = encoder_outputs.input_ids if input_ids is None else input_ids
        if input_ids is None:
            raise ValueError("EquivariantModelForSeq2SeqLM acts on token ids: pass input_ids")
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("pass decoder_input_ids, or labels to train with teacher forcing")
            decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels=labels)
        for name, t in (("input_ids", input_ids), ("decoder_input_ids", decoder_input_ids)):
            if not torch.is_tensor(t) or t.dim() != 2:
                shape = tuple(t.shape) if torch.is_tensor(t) else type(t).__name__
                raise ValueError(f"{name} must be [batch, length], got {shape}")
        cache_key, cache = caches.find_cache(kwargs)
        past = int(cache.get_seq_length()) if cache is not None else 0
        if decoder_context_ids is None:
            if past:
                raise ValueError("with a cache, pass decoder_context_ids (the whole decoder sequence so far) so the "
                                 "wrapper can orient and share copies; generate() does this for you")
            decoder_context_ids = decoder_input_ids
        if use_cache is None:
            use_cache = cache is not None or (labels is None and getattr(self.config.text_config, "use_cache", True))
        logits, new_cache = self._run(input_ids, attention_mask, decoder_input_ids, decoder_context_ids,
                                      decoder_attention_mask, cache, past, bool(use_cache), kwargs)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1).to(logits.device),
                                   ignore_index=-100)
        output = Seq2SeqLMOutput(loss=loss, logits=logits, **{_OUTPUT_CACHE_FIELD: new_cache if use_cache else None})
        use_dict = return_dict if return_dict is not None else getattr(self.config, "return_dict", True)
        return output if use_dict else output.to_tuple()

    def _run(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, decoder_input_ids: torch.Tensor,
             decoder_context_ids: torch.Tensor, decoder_attention_mask: torch.Tensor | None, cache: Any, past: int,
             use_cache: bool, extra: dict[str, Any]) -> tuple[torch.Tensor, Any]:
        """One pass of the executor over the decoder tokens ``decoder_input_ids`` (the last of the context)."""
        action = self.action
        encoder_length = input_ids.shape[-1]
        encoder_mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        context = action.join(input_ids, decoder_context_ids)
        decoder_valid = (decoder_attention_mask if decoder_attention_mask is not None
                         and decoder_attention_mask.shape == decoder_context_ids.shape
                         else torch.ones_like(decoder_context_ids))
        context_mask = torch.cat([encoder_mask.to(context.device), decoder_valid.to(context.device)], dim=-1)
        new_tokens = decoder_input_ids.shape[-1]
        state: dict[str, Any] = {"whole": False, "encoder": None, "states": [], "encoder_rows": 0, "last": None}

        def fork(layout: RowLayout) -> bool:
            """Fork the cache to this layout's rows; True if it does not hold the prefix they continue."""
            state["encoder"] = None
            if cache is None or past == 0 or state["whole"]:
                return False
            _, held_rows, held_states = caches.held(cache)
            parents = None
            if held_states is not None and layout.parent_rows is None:  # sharing off: rows stay the copies
                if held_states.shape[0] == layout.num_rows:
                    parents = torch.arange(layout.num_rows, device=layout.device)
            elif held_states is not None and held_rows is not None:
                found = caches.match_rows(held_rows.to(layout.device), layout.parent_sequences)
                parents = None if found is None else found[layout.parent_rows]
            if parents is None:  # unknown or changed copies: recompute the whole context once
                caches.empty_cache(cache)
                state["whole"] = True
                return True
            if not (parents.numel() == held_states.shape[0]
                    and torch.equal(parents, torch.arange(parents.numel(), device=parents.device))):
                caches.reorder(cache, parents)
            state["encoder"] = caches.held(cache)[2]
            return False

        def call(start: int, stop: int, row_ids: torch.Tensor, layout: RowLayout) -> torch.Tensor:
            rows = layout.row_batch[start:stop].to(encoder_mask.device)
            row_mask = encoder_mask[rows]
            if state["encoder"] is not None:
                states = state["encoder"][start:stop]
            else:
                states = self._encode(row_ids[:, :encoder_length], row_mask, state)
            state["states"].append(states)
            decoder_mask = None if decoder_attention_mask is None else decoder_attention_mask[rows]
            out = self._decode(states, row_mask, row_ids[:, encoder_length:], decoder_mask, cache, use_cache, extra)
            state["last"] = out
            return out.logits

        run = run_tokens(self.plan, action.joint, context[:, -new_tokens:], call, Aggregation(self.config.aggregation),
                         context_ids=context, context_mask=context_mask, share=self.config.share_identical_copies,
                         on_layout=fork, output_action=action.output_action, row_prefix=encoder_length)
        last = state["last"]
        new_cache = cache
        if use_cache and new_cache is None:  # the base made one
            new_cache = next((last[k] for k in caches.CACHE_KWARGS if k in last.keys()), None)
        if use_cache and new_cache is not None:
            caches.attach(new_cache, run.layout, torch.cat(state["states"]) if len(state["states"]) > 1
                          else state["states"][0])
        self._diagnostics.rows = run.layout.num_rows
        self._diagnostics.encoder_rows = state["encoder_rows"]
        return run.logits, new_cache

    def _encode(self, joint_ids: torch.Tensor, mask: torch.Tensor, state: dict[str, Any]) -> torch.Tensor:
        """Encoder states ``[R, Te, d]`` of rows ``joint_ids`` (encoder part), each distinct input encoded once."""
        length = joint_ids.shape[-1]
        key = torch.cat([joint_ids, mask.to(joint_ids.device, joint_ids.dtype)], dim=-1)
        distinct, inverse = torch.unique(key, dim=0, return_inverse=True)
        ids, cycle = self.action.split_ids(distinct[:, :length], decoder=False)
        encoder = self.base.get_encoder()
        with self._neutral_inputs(encoder.get_input_embeddings(), cycle, decoder=False):
            states = encoder(input_ids=ids, attention_mask=distinct[:, length:], return_dict=True).last_hidden_state
        state["encoder_rows"] += int(distinct.shape[0])
        return states[inverse.to(states.device)]

    def _decode(self, states: torch.Tensor, encoder_mask: torch.Tensor, joint_ids: torch.Tensor,
                decoder_mask: torch.Tensor | None, cache: Any, use_cache: bool, extra: dict[str, Any]) -> Any:
        """One base call: the decoder on rows ``joint_ids`` (decoder part) attending to encoder ``states``."""
        ids, cycle = self.action.split_ids(joint_ids, decoder=True)
        inputs = {"encoder_outputs": BaseModelOutput(last_hidden_state=states), "attention_mask": encoder_mask,
                  "decoder_input_ids": ids, "use_cache": use_cache, "return_dict": True, **extra}
        if cache is not None:
            inputs[self._base_cache_key()] = cache
        if decoder_mask is not None:
            inputs["decoder_attention_mask"] = decoder_mask
        with self._neutral_inputs(self.base.get_decoder().get_input_embeddings(), cycle, decoder=True):
            return self.base(**inputs)

    def _base_cache_key(self) -> str:
        if self._cache_key is None:
            params = inspect.signature(self.base.forward).parameters
            self._cache_key = "cache" if "cache" in params else "past_key_values"
        return self._cache_key

    @contextmanager
    def _neutral_inputs(self, embedding: torch.nn.Module, cycle: torch.Tensor, decoder: bool) -> Iterator[None]:
        """Within the block, ``embedding``'s output at neutral placeholders (``cycle >= 0``) is the mean of its
        outputs for the cycle's members. Replacing the module's own output keeps whatever the model does with
        embeddings afterwards (scaling, dropout) the same for neutral inputs as for tokens."""
        if not bool((cycle >= 0).any()):
            yield
            return
        on_decoder, members, valid = self.action.neutral_members(cycle.device)
        valid = valid & (on_decoder == decoder)[:, None]  # other side's cycles are never looked up here
        vectors = embedding(torch.where(valid, members, torch.zeros_like(members)))  # [K, order, d]
        weights = valid.to(vectors.dtype)[..., None]
        means = (vectors * weights).sum(1) / weights.sum(1).clamp_min(1)
        mask = cycle >= 0
        replacement = means[cycle.clamp_min(0)]
        caller = threading.get_ident()  # another thread's call through the same module is left alone

        def hook(module: torch.nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
            if threading.get_ident() != caller or output.shape[:-1] != mask.shape:
                return output
            return torch.where(mask[..., None].to(output.device), replacement.to(output), output)

        handle = embedding.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    # ------------------------------------------------------------------ generation hooks
    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """``GenerationMixin.generate`` on token ids (the group acts on ids, so ``inputs_embeds`` are refused)."""
        if kwargs.get("inputs_embeds") is not None:
            raise ValueError("generate() needs input_ids: the group acts on token ids, not on inputs_embeds")
        return super().generate(*args, **kwargs)

    def _prepare_text_encoder_decoder_kwargs_for_generation(self, inputs_tensor: torch.Tensor,
                                                            model_kwargs: dict[str, Any], model_input_name: str | None,
                                                            generation_config: Any) -> dict[str, Any]:
        """Keep the encoder input instead of encoding it: each forward encodes its distinct transformed copies."""
        if model_input_name not in (None, "input_ids"):
            raise ValueError(f"generate() needs input_ids, got {model_input_name}")
        model_kwargs["encoder_outputs"] = EncoderInput(input_ids=inputs_tensor)
        return model_kwargs

    _prepare_encoder_decoder_kwargs_for_generation = _prepare_text_encoder_decoder_kwargs_for_generation  # 4.x name

    def prepare_inputs_for_generation(self, input_ids: torch.LongTensor, **kwargs: Any) -> dict[str, Any]:
        """The base class's preparation, plus the whole decoder sequence so far for orienting and sharing copies."""
        inputs = super().prepare_inputs_for_generation(input_ids, **kwargs)
        inputs["decoder_context_ids"] = input_ids
        return inputs

    def _reorder_cache(self, cache: Any, beam_idx: torch.LongTensor) -> Any:
        """Beam search: move each input row's block of base rows (and their encoder states) with its beam."""
        layout, _, _ = caches.held(cache)
        if layout is None:
            cache.reorder_cache(beam_idx)
            return cache
        beam_idx = beam_idx.to(layout.device)
        caches.reorder(cache, layout.reorder_rows(beam_idx))
        moved = layout.reordered(beam_idx)
        caches.attach(cache, moved, caches.held(cache)[2])
        return cache

    # ------------------------------------------------------------------ equivariance-check protocol
    def equivariance_transform_inputs(self, inputs: dict[str, Any], element: int) -> dict[str, Any]:
        """``g`` on encoder ids by the input action, on decoder ids (and labels) by the output action."""
        moved = dict(inputs)
        moved["input_ids"] = self.action.transform_inputs(inputs["input_ids"], int(element))
        for key in ("decoder_input_ids", "labels"):
            if inputs.get(key) is not None:
                ids = inputs[key]
                moved[key] = torch.where(ids < 0, ids, self.action.transform_decoder(ids.clamp_min(0), int(element)))
        return moved

    def equivariance_output(self, inputs: dict[str, Any]) -> torch.Tensor:
        return self(**inputs).logits

    # ------------------------------------------------------------------ saving
    def model_card_sections(self) -> tuple[str, str, str, list[tuple[str, str]]]:
        config, action = self.config, self.action
        one = action.input_action is action.output_action
        rows = ["| factor | order | input words | output words |", "|---|---|---|---|"]
        for fi, fo in zip(action.input_action.factors, action.output_action.factors):
            rows.append(f"| {fo.name} | {fo.order} | {'; '.join('/'.join(s) for s in fi.words)} | "
                        f"{'(same permutation)' if one else '; '.join('/'.join(s) for s in fo.words)} |")
        prod, total = action.group.order, sum(action.factor_orders)
        cost = {"full": prod, "multi": total}.get(config.strategy, 1)
        base = config.base_model_name_or_path
        mode = ("full (base weights included)" if config.save_base_weights else
                f"light (config only; the base model is loaded from `{base}` at load time)")
        usage = """import hf_equivariant  # registers the Auto classes
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

model = AutoModelForSeq2SeqLM.from_pretrained("<this repo or folder>")
tokenizer = AutoTokenizer.from_pretrained("<this repo or folder>")
inputs = tokenizer("jump twice after run left", return_tensors="pt")
print(tokenizer.decode(model.generate(**inputs, max_new_tokens=50)[0], skip_special_tokens=True))"""
        strategy = config.strategy + (f" ({config.canonicalization} canonicalisation)"
                                      if config.strategy == "multi" else "")
        sections = [
            ("Group", "\n".join(rows) + f"\n\nProduct group order: {prod} "
                                        f"({' x '.join(map(str, action.factor_orders))}). "
                                        + ("One permutation of the shared vocabulary moves input and output words."
                                           if one else "The input and output vocabularies are permuted separately.")),
            ("Guarantee", "For every element g of the group, every input x and every decoder prefix y: "
                          "P(g.w | g.x, g.y) = P(w | x, y) at every decoder position, so greedy and beam decoding "
                          "commute with g (up to exact ties). This holds for the listed words (token ids) only."),
            ("Strategy and cost", f"strategy `{strategy}`, aggregation `{config.aggregation}`, branch weighting "
                                  f"`{config.branch_weighting}`. Base-model rows per example: {cost} before sharing "
                                  f"(full equitune would need {prod}); copy sharing is "
                                  f"{'on' if config.share_identical_copies else 'off'}, so copies whose transformed "
                                  "(input, output) sequences are identical run once, and each distinct transformed "
                                  "input is encoded once."),
            ("Checkpoint", f"Save mode: {mode}."),
        ]
        title = f"Equivariant {base or 'sequence-to-sequence model'} ({', '.join(f.name for f in action.factors)})"
        summary = ("An encoder-decoder wrapped by hf_equivariant so that its output distribution is exactly "
                   "equivariant to word swaps that move input words and output words together.")
        return title, summary, usage, sections


def _try_load_tokenizer(path: str | os.PathLike, kwargs: dict[str, Any]) -> Any:
    """The tokenizer saved beside a wrapper, if any (``None`` when the folder has none)."""
    try:
        return AutoTokenizer.from_pretrained(
            path, **{k: kwargs[k] for k in ("revision", "cache_dir", "token", "local_files_only") if k in kwargs})
    except (OSError, ValueError, TypeError):
        return None
