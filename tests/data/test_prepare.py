"""prepare_corpus: any Corpus → tokenizer + shards per split, cached, atomic, leaving the global RNGs alone."""

import random

import numpy as np
import pytest
import torch

from lightningllm.data import CorpusDataModule, TextDataModule, Tokenizer
from lightningllm.data.prepare import TokenizerSpec, corpus_dir, prepare_corpus


def make(text_corpus, tmp_path, **kw):
    args = {"sources": [str(text_corpus)], "vocab_size": 300, "block_size": 16, "val_fraction": 0.2}
    return TextDataModule(**(args | {"cache_dir": str(tmp_path / "cache"), "prepare_workers": 1} | kw))


class Letters:
    """A tiny generated Corpus: one document per letter; ``é`` and ``ü`` occur only in val and test."""

    name = "letters"

    def fingerprint(self) -> dict:
        return {"letters": 26}

    def size_bytes(self) -> int:
        return 0

    def documents(self, report):
        for i, letter in enumerate("abcdefghijklmnopqrstuvwxyz"):
            report.documents_read += 1
            report.documents_kept += 1
            yield "train", [(f"Q{letter}:", False), (letter * 20, True)], True
            if i % 5 == 0:
                yield "val", [(f"Q{letter}:", False), ("é" * 20, True)], True
                yield "test", [(f"Q{letter}:", False), ("ü" * 20, True)], True


class LettersDataModule(CorpusDataModule):
    def corpus(self) -> Letters:
        return Letters()


def test_a_corpus_of_ones_own_plugs_in_through_the_corpus_protocol(tmp_path):
    dm = LettersDataModule(tokenizer_kind="char", block_size=8, batch_size=2, cache_dir=str(tmp_path / "cache"))
    assert dm.prepared_dir.name.startswith("letters-")
    dm.setup("test")
    assert dm.report["tokens"] == {"train": 26 * 24, "val": 6 * 24, "test": 6 * 24}
    assert dm.report["split_documents"] == {"train": 26, "val": 6, "test": 6}
    assert dm.report["val_bytes"] == 6 * 20 * len("é".encode())  # trained text only, context excluded
    # A character vocabulary takes the characters of every split: held-out text is never <|unk|>.
    assert dm.tokenizer.decode(dm.tokenizer.encode("éü")) == "éü"
    inputs, targets = next(iter(dm.test_dataloader()))
    assert dm.tokenizer.decode(inputs[0].tolist()) == "Qa:üüüüü"
    assert (targets[0, :2] == -100).all() and dm.tokenizer.decode(targets[0, 2:].tolist()) == "üüüüüü"


def test_prepare_corpus_returns_the_report_and_reuses_the_folder(tmp_path, capsys):
    spec = TokenizerSpec(kind="char")
    target = corpus_dir(Letters(), spec, tmp_path)
    assert target == corpus_dir(Letters(), spec, tmp_path) != corpus_dir(Letters(), TokenizerSpec(), tmp_path)
    first = prepare_corpus(Letters(), target, spec, workers=1)
    assert prepare_corpus(Letters(), target, spec, workers=1) == first
    assert "reusing prepared shards" in capsys.readouterr().out
    assert sorted(p.name for p in target.iterdir()) == ["report.json", "test", "tokenizer.json", "train", "val"]


def test_second_prepare_reuses_the_shards(text_corpus, tmp_path, capsys, monkeypatch):
    make(text_corpus, tmp_path).prepare_data()
    monkeypatch.setattr(Tokenizer, "train", lambda *a, **k: pytest.fail("prepared again"))
    make(text_corpus, tmp_path).prepare_data()
    assert "reusing prepared shards" in capsys.readouterr().out
    (text_corpus / "doc00.txt").write_text("changed content\n" * 50)
    with pytest.raises(pytest.fail.Exception, match="prepared again"):
        make(text_corpus, tmp_path).prepare_data()  # a changed source changes the fingerprint


def test_an_interrupted_prepare_leaves_nothing_that_looks_complete(text_corpus, tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Tokenizer, "train", interrupt)
    dm = make(text_corpus, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        dm.prepare_data()
    assert not dm.prepared_dir.exists()
    assert list((tmp_path / "cache").iterdir()) == []


def test_preparing_leaves_the_global_random_generators_alone(text_corpus, tmp_path):
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    expected = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    make(text_corpus, tmp_path).prepare_data()
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected


def test_tokenizer_trains_on_a_bounded_sample(text_corpus, tmp_path, monkeypatch):
    seen = []
    train = Tokenizer.train

    def spy(texts, **kwargs):
        seen.append(sum(len(t.encode()) for t in texts))
        return train(texts, **kwargs)

    monkeypatch.setattr(Tokenizer, "train", spy)
    make(text_corpus, tmp_path, cache_dir=str(tmp_path / "all")).prepare_data()
    total = sum(p.stat().st_size for p in text_corpus.rglob("*.*"))
    make(text_corpus, tmp_path, tokenizer_train_bytes=total // 4, cache_dir=str(tmp_path / "quarter")).prepare_data()
    assert seen[0] > 0.6 * total  # small corpus: all training text
    assert 0.05 * total < seen[1] < 0.45 * total  # about a quarter, by a deterministic hash sample
