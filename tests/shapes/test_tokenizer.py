import json

import pytest

from nbdiffuse.shapes.grammar import VOCABULARY, longest_caption
from nbdiffuse.shapes.tokenizer import MODEL_MAX_LENGTH, build_tokenizer, grammar_words, train_bpe


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return build_tokenizer(tmp_path_factory.mktemp("tokenizer"))


def test_files_are_the_ones_clip_tokenizer_reads(tokenizer):
    from transformers import CLIPTokenizer

    assert isinstance(tokenizer, CLIPTokenizer)
    directory = tokenizer.name_or_path
    vocab = json.load(open(f"{directory}/vocab.json"))
    assert vocab["<|startoftext|>"] == tokenizer.bos_token_id
    assert vocab["<|endoftext|>"] == tokenizer.eos_token_id == tokenizer.pad_token_id
    assert open(f"{directory}/merges.txt").readline().startswith("#version")


def test_every_vocabulary_word_is_one_token(tokenizer):
    words = {word for values in VOCABULARY.values() for phrase in values for word in phrase.split()}
    assert words <= set(grammar_words())
    for word in grammar_words():
        ids = tokenizer(word, add_special_tokens=False).input_ids
        assert len(ids) == 1, (word, tokenizer.convert_ids_to_tokens(ids))
        assert ids[0] != tokenizer.unk_token_id


def test_longest_caption_fits(tokenizer):
    for text in (longest_caption(), "a " + longest_caption()):
        ids = tokenizer(text).input_ids
        assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
        assert len(ids) <= tokenizer.model_max_length == MODEL_MAX_LENGTH
        assert len(ids) == len(text.replace(",", " ,").split()) + 2


def test_unknown_words_still_tokenize(tokenizer):
    ids = tokenizer("a glowing Ünïcode xylophone!", add_special_tokens=False).input_ids
    assert len(ids) > 4
    assert tokenizer.unk_token_id not in ids


def test_training_is_deterministic():
    assert train_bpe() == train_bpe()
