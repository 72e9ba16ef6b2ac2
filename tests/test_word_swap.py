"""Word-swap factors: resolution against real tokenizers, bijectivity, disjointness and clear errors."""

import pytest
import torch

from hf_equivariant import TokenPermutationAction, WordSwap, builtin_word_set_names


def test_builtin_sets_resolve_on_real_gpt2_bpe(gpt2_tokenizer):
    assert {"gender", "race", "religion", "sexual_orientation"} <= set(builtin_word_set_names())
    factors = [WordSwap.builtin(n, gpt2_tokenizer) for n in builtin_word_set_names()]
    by_name = {f.name: f for f in factors}
    assert by_name["race"].order == 3 and by_name["gender"].order == 2 and by_name["religion"].order == 3
    action = TokenPermutationAction(factors, 50257)  # disjoint supports across all four built-ins
    man, woman = gpt2_tokenizer.encode(" man")[0], gpt2_tokenizer.encode(" woman")[0]
    black, white, asian = (gpt2_tokenizer.encode(w)[0] for w in (" Black", " White", " Asian"))
    parts = torch.zeros(4, dtype=torch.long)
    parts[[f.name for f in factors].index("race")] = 1
    out = action.act(torch.tensor([[man, black, white, asian]]), parts)
    assert out.tolist() == [[man, white, asian, black]]
    parts[[f.name for f in factors].index("gender")] = 1
    assert action.act(torch.tensor([[man, woman]]), parts).tolist() == [[woman, man]]


def test_all_surface_forms_move_together(gpt2_tokenizer):
    swap = WordSwap.from_words(gpt2_tokenizer, [["man", "woman"]], name="g")
    cycles = {tuple(c) for c in swap.token_cycles}
    for form in ("man", " man", "Man", " Man"):
        a = gpt2_tokenizer.encode(form)[0]
        b = gpt2_tokenizer.encode(form.replace("man", "woman").replace("Man", "Woman"))[0]
        assert (a, b) in cycles


def test_permutation_is_a_bijection_with_identity_beyond_the_tokenizer(gpt2_tokenizer):
    factors = [WordSwap.builtin(n, gpt2_tokenizer) for n in ("gender", "race", "religion")]
    width = 50304  # padded LM head, wider than the tokenizer
    action = TokenPermutationAction(factors, width)
    for element in range(action.group.order):
        maps = action.vocabulary_maps(action.element_parts(element), "cpu")
        assert torch.equal(maps.sort().values, torch.arange(width))
        assert torch.equal(maps[50257:], torch.arange(50257, width))
        inverse = action.vocabulary_maps(action.inverse_parts(action.element_parts(element)), "cpu")
        assert torch.equal(maps[inverse], torch.arange(width))


def test_multi_token_word_error_names_it(gpt2_tokenizer):
    with pytest.raises(ValueError, match="'househusband'"):
        WordSwap.from_words(gpt2_tokenizer, [["man", "woman"], ["househusband", "housewife"]], name="gender")


def test_unknown_word_in_word_level_vocab_is_not_swapped_as_unk(word_tokenizer):
    with pytest.raises(ValueError, match="'Hispanic'"):
        WordSwap.from_words(word_tokenizer, [["Black", "White", "Hispanic"]], name="race")


def test_word_in_two_factors_is_rejected(gpt2_tokenizer):
    gender = WordSwap.from_words(gpt2_tokenizer, [["man", "woman"], ["gay", "lesbian"]], name="gender")
    orientation = WordSwap.builtin("sexual_orientation", gpt2_tokenizer)
    with pytest.raises(ValueError, match="disjoint"):
        TokenPermutationAction([gender, orientation], 50257)


def test_unknown_group_name_and_bad_sets(gpt2_tokenizer):
    with pytest.raises(ValueError, match="unknown word set 'ethnicity'"):
        WordSwap.builtin("ethnicity", gpt2_tokenizer)
    with pytest.raises(ValueError, match="same number of words"):
        WordSwap.from_words(gpt2_tokenizer, [["man", "woman"], ["Black", "White", "Asian"]])
    with pytest.raises(ValueError, match="repeats"):
        WordSwap.from_words(gpt2_tokenizer, [["man", "man"]])


def test_custom_word_sets(gpt2_tokenizer):
    occ = WordSwap.from_words(gpt2_tokenizer, [["doctor", "nurse"]], name="occupation")
    assert occ.name == "occupation" and occ.order == 2
    assert gpt2_tokenizer.encode(" doctor")[0] in occ.support


def test_token_ids_outside_vocabulary_mean_mismatched_tokenizer(gpt2_tokenizer):
    swap = WordSwap.builtin("gender", gpt2_tokenizer)
    with pytest.raises(ValueError, match="does not match the model"):
        TokenPermutationAction([swap], 1000)


@pytest.mark.parametrize("spec", [
    {"type": "image", "name": "x"},
    {"type": "word_swap", "name": "g"},
    {"type": "word_swap", "name": "g", "words": [["a", "b"]], "token_ids": [[1, "x"]]},
    {"type": "word_swap", "name": "g", "words": [["a", "b"]], "token_ids": [[1, 2]], "order": 3},
    {"type": "word_swap", "name": "g", "words": [["a", "b"]], "token_ids": [[1, 1]]},
    "gender",
])
def test_malformed_specs_raise(spec):
    with pytest.raises(ValueError, match="malformed|more than one place"):
        WordSwap.from_spec(spec)


def test_spec_round_trip(gpt2_tokenizer):
    swap = WordSwap.builtin("religion", gpt2_tokenizer)
    again = WordSwap.from_spec(swap.to_spec())
    assert again.token_cycles == swap.token_cycles and again.words == swap.words


def test_canonicalise_and_orbits(small_factors, word_tokenizer):
    action = TokenPermutationAction(small_factors, len(word_tokenizer))
    ids = torch.tensor(word_tokenizer.encode("the White woman and the Muslim"))
    only_race = torch.tensor([False, True, False])
    canon = action.canonicalise(ids[None], only_race)[0]
    assert word_tokenizer.decode(canon) == "the Black woman and the Muslim"
    index, _ = action.orbit_index(only_race, "cpu")
    b, w, a = (word_tokenizer.convert_tokens_to_ids(t) for t in ("Black", "White", "Asian"))
    assert index[b] == index[w] == index[a]
    m, f = (word_tokenizer.convert_tokens_to_ids(t) for t in ("man", "woman"))
    assert index[m] != index[f]
