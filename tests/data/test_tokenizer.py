import pytest

from lightningllm.data.tokenizer import SPECIAL_TOKENS, Tokenizer

CORPUS = [
    "The cat sat on the mat. 12 + 30 = 42.",
    "Héllo wörld — naïve café",
    "def f(x):\n\treturn x * 2\n",
] * 30
HARD = [
    "emoji 😀🚀👩‍👩‍👧",
    "中文字符和日本語のテキスト",
    "control \x00\x01\x7f and \r\n",
    "zero-width \u200b",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
]


@pytest.fixture(scope="module")
def bpe():
    return Tokenizer.train(CORPUS, vocab_size=320)


@pytest.mark.parametrize("text", CORPUS[:3] + HARD)
def test_bpe_round_trips_arbitrary_unicode_exactly(bpe, text):
    assert bpe.decode(bpe.encode(text)) == text


def test_digits_are_split_one_per_token(bpe):
    ids = bpe.encode("12345")
    assert len(ids) == 5
    assert [bpe.decode([i]) for i in ids] == list("12345")


def test_special_tokens_come_first_and_eos_is_appended(bpe):
    assert [bpe.hf.id_to_token(i) for i in range(len(SPECIAL_TOKENS))] == list(SPECIAL_TOKENS)
    ids = bpe.encode("hi", bos=True, eos=True)
    assert ids[0] == bpe.bos_id and ids[-1] == bpe.eos_id
    assert bpe.decode(ids) == "hi"


def test_save_and_load_give_identical_encodings(bpe, tmp_path):
    path = bpe.save(tmp_path)
    assert path.name == "tokenizer.json"
    loaded = Tokenizer.from_file(path)
    for text in CORPUS[:3] + HARD:
        assert loaded.encode(text) == bpe.encode(text)
    assert Tokenizer.from_str(bpe.to_str()).encode(CORPUS[0]) == bpe.encode(CORPUS[0])


def test_vocab_smaller_than_bytes_plus_specials_is_rejected():
    with pytest.raises(ValueError, match="vocab_size 200 is too small"):
        Tokenizer.train(CORPUS, vocab_size=200)


def test_char_mode_has_one_token_per_character():
    char = Tokenizer.train(CORPUS, kind="char")
    assert char.kind == "char"
    text = "The cat sat."
    assert len(char.encode(text)) == len(text)
    assert char.decode(char.encode(text)) == text
    assert char.vocab_size == len(set("".join(CORPUS))) + len(SPECIAL_TOKENS) + 1  # + <|unk|>


def test_broken_tokenizer_file_gives_a_one_line_error(tmp_path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a valid tokenizer.json"):
        Tokenizer.from_file(bad)
    with pytest.raises(FileNotFoundError):
        Tokenizer.from_file(tmp_path / "missing.json")


def test_the_tokenizer_loads_without_lightning():
    import subprocess
    import sys

    code = "import sys\nfrom lightningllm.data import Tokenizer\nprint('lightning' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_a_tokenizer_json_of_another_model_is_refused_naming_the_file(tmp_path):
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models

    path = tmp_path / "gpt2-tokenizer.json"
    HFTokenizer(models.BPE()).save(str(path))  # a valid tokenizer.json, without our special tokens
    with pytest.raises(
        ValueError, match=rf"^{path} is not a lightningllm tokenizer: tokenizer lacks the special token"
    ):
        Tokenizer.from_file(path)


def test_a_missing_tokenizer_path_is_named_before_anything_is_read(text_corpus, tmp_path):
    from lightningllm.data import TextDataModule

    dm = TextDataModule(sources=str(text_corpus), tokenizer_path=str(tmp_path / "tok.json"), cache_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match=rf"^tokenizer file {tmp_path}/tok.json not found$"):
        dm.prepare_data()
