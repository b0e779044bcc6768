"""Tokenizer: a small class over Hugging Face ``tokenizers``, trained here on the user's own corpus.

Two kinds, both saved as a standard ``tokenizer.json``:

- ``bpe``: byte-level BPE. Every byte is in the initial alphabet, so any Unicode text (emoji,
  CJK, control characters) round-trips exactly; digits are split one per token so arithmetic
  is learnable.
- ``char``: one token per character seen in training (plus ``<|unk|>``), for tiny experiments
  and small generated corpora.

Special tokens come first (ids 0..): BOS, EOS, PAD and reserved chat-role tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

TokenizerKind = Literal["bpe", "char"]

BOS, EOS, PAD, UNK = "<|bos|>", "<|eos|>", "<|pad|>", "<|unk|>"
CHAT_ROLES = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
SPECIAL_TOKENS = (BOS, EOS, PAD, *CHAT_ROLES)
BYTE_ALPHABET = 256


MIN_BPE_VOCAB_SIZE = BYTE_ALPHABET + len(SPECIAL_TOKENS)


def check_bpe_vocab_size(vocab_size: int, name: str = "vocab_size", error: type[ValueError] = ValueError) -> None:
    """Refuse a byte-level BPE vocabulary that cannot hold every byte plus the special tokens."""
    if vocab_size < MIN_BPE_VOCAB_SIZE:
        raise error(
            f"{name} {vocab_size} is too small for byte-level BPE: it needs at least {MIN_BPE_VOCAB_SIZE} "
            f"({BYTE_ALPHABET} bytes + {len(SPECIAL_TOKENS)} special tokens)"
        )


class Tokenizer:
    """Encode text to token ids and back; ``kind`` is ``"bpe"`` or ``"char"``."""

    def __init__(self, hf_tokenizer: HFTokenizer):
        self.hf = hf_tokenizer
        missing = [t for t in (BOS, EOS, PAD) if hf_tokenizer.token_to_id(t) is None]
        if missing:
            raise ValueError(f"tokenizer lacks the special token(s) {missing}")
        self.bos_id = hf_tokenizer.token_to_id(BOS)
        self.eos_id = hf_tokenizer.token_to_id(EOS)
        self.pad_id = hf_tokenizer.token_to_id(PAD)

    # --- training ------------------------------------------------------------------------
    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 4096, kind: TokenizerKind = "bpe") -> Tokenizer:
        """Train a tokenizer of ``kind`` on ``texts``. ``vocab_size`` is an upper bound for ``char``."""
        if kind == "char":
            return cls._train_char(texts)
        if kind != "bpe":
            raise ValueError(f"tokenizer kind must be 'bpe' or 'char', got {kind!r}")
        check_bpe_vocab_size(vocab_size)
        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ]
        )
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        hf.train_from_iterator(texts, trainer=trainer)
        return cls(hf)

    @classmethod
    def _train_char(cls, texts: Iterable[str]) -> Tokenizer:
        chars: set[str] = set()
        for text in texts:
            chars.update(text)
        vocab = {token: i for i, token in enumerate((*SPECIAL_TOKENS, UNK))}
        for char in sorted(chars):
            vocab.setdefault(char, len(vocab))
        hf = HFTokenizer(models.WordLevel(vocab, unk_token=UNK))
        hf.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        hf.decoder = decoders.Fuse()
        hf.add_special_tokens(list(SPECIAL_TOKENS))
        return cls(hf)

    # --- persistence ---------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | Path) -> Tokenizer:
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file {path} not found")
        try:
            hf = HFTokenizer.from_file(str(path))
        except Exception as err:  # tokenizers raises plain Exception subclasses with long text
            raise ValueError(f"{path} is not a valid tokenizer.json ({_first_line(err)})") from None
        try:
            return cls(hf)
        except ValueError as err:  # a tokenizer.json, but not one of ours (another model's, say)
            raise ValueError(f"{path} is not a lightningllm tokenizer: {err}") from None

    @classmethod
    def from_str(cls, json_text: str) -> Tokenizer:
        return cls(HFTokenizer.from_str(json_text))

    def to_str(self) -> str:
        return self.hf.to_str()

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        if path.suffix != ".json":
            path = path / "tokenizer.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.hf.save(str(path))
        except Exception as err:  # tokenizers wraps an OSError (a full disk, say) in a plain Exception
            raise OSError(f"cannot write {path}: {_first_line(err)}") from None
        return path

    # --- use -----------------------------------------------------------------------------
    @property
    def kind(self) -> TokenizerKind:
        return "char" if isinstance(self.hf.model, models.WordLevel) else "bpe"

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    def same_vocabulary(self, other: Tokenizer) -> bool:
        """Whether ``other`` maps every token (special ones included) to the same id."""
        return self.hf.get_vocab(with_added_tokens=True) == other.hf.get_vocab(with_added_tokens=True)

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        ids = self.hf.encode(text, add_special_tokens=False).ids
        return [self.bos_id] * bos + ids + [self.eos_id] * eos

    def encode_batch(self, texts: list[str], eos: bool = False) -> list[list[int]]:
        # encode_batch_fast skips computing character offsets, which nothing here uses.
        encodings = self.hf.encode_batch_fast(texts, add_special_tokens=False)
        return [e.ids + [self.eos_id] * eos for e in encodings]

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=skip_special)

    def iter_decode(self, ids: Iterable[int]) -> Iterator[str]:
        """Decode one token at a time (for streaming output)."""
        for token_id in ids:
            yield self.decode([token_id])


def _first_line(err: Exception) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
