"""TextDataModule and ReasoningDataModule: prepare once, reuse, split cleanly, never leave partial output."""

import pytest
import torch

from lightningllm.data import DataError, ReasoningDataModule, TextDataModule
from lightningllm.data import datamodule as datamodule_module


def make(text_corpus, tmp_path, **kw):
    args = {"sources": [str(text_corpus)], "vocab_size": 300, "block_size": 16, "batch_size": 4}
    args |= {"val_fraction": 0.2, "cache_dir": str(tmp_path / "cache"), "prepare_workers": 1}
    return TextDataModule(**(args | kw))


def test_prepare_setup_and_batches(text_corpus, tmp_path):
    dm = make(text_corpus, tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (4, 17)  # block_size + 1 tokens per sample
    assert int(batch.max()) < dm.tokenizer.vocab_size
    assert next(iter(dm.val_dataloader())).shape[1] == 17
    assert batch.dtype == torch.int64
    assert dm.report["documents_kept"] == 27 and dm.bytes_per_token > 1.0


def test_second_prepare_reuses_the_shards(text_corpus, tmp_path, capsys, monkeypatch):
    make(text_corpus, tmp_path).prepare_data()
    monkeypatch.setattr(datamodule_module, "write_shards", lambda *a, **k: pytest.fail("re-tokenized"))
    make(text_corpus, tmp_path).prepare_data()
    assert "reusing prepared shards" in capsys.readouterr().out
    (text_corpus / "doc00.txt").write_text("changed content\n" * 50)
    with pytest.raises(pytest.fail.Exception, match="re-tokenized"):
        make(text_corpus, tmp_path).prepare_data()  # a changed source changes the fingerprint


def test_an_interrupted_prepare_leaves_nothing_that_looks_complete(text_corpus, tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(datamodule_module, "write_shards", crash)
    dm = make(text_corpus, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        dm.prepare_data()
    assert not dm.prepared_dir.exists()
    assert list((tmp_path / "cache").iterdir()) == []


def test_validation_documents_never_appear_in_training(tmp_path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    for i in range(40):
        (corpus / f"{i}.txt").write_text(f"unique document {i:03d} " + "x y z " * 30)
    dm = TextDataModule(
        sources=[str(corpus)], tokenizer_kind="char", block_size=8, batch_size=2, val_fraction=0.3,
        cache_dir=str(tmp_path / "cache"), prepare_workers=1,
    )  # fmt: skip
    dm.setup("fit")

    def decoded(split):
        return "".join(dm.tokenizer.decode(b.flatten().tolist(), skip_special=False) for b in dm._loader(split))

    train, val = decoded("train"), decoded("val")
    val_ids = {i for i in range(40) if f"document {i:03d}" in val}
    assert val_ids and not any(f"document {i:03d}" in train for i in val_ids)


def test_empty_corpus_after_cleaning_and_too_few_tokens_are_clear_errors(tmp_path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.txt").write_text("   \n")
    with pytest.raises(DataError, match="no text left after cleaning"):
        TextDataModule(sources=[str(corpus)], cache_dir=str(tmp_path / "cache")).prepare_data()
    for i in range(10):
        (corpus / f"{i}.txt").write_text(f"tiny {i}")
    dm = TextDataModule(
        sources=[str(corpus)],
        tokenizer_kind="char",
        block_size=512,
        val_fraction=0.3,
        cache_dir=str(tmp_path / "k"),
    )
    with pytest.raises(DataError, match="fewer than one block"):
        dm.prepare_data()
    assert list((tmp_path / "k").iterdir()) == []


def test_reasoning_datamodule_streams_problems_in_curriculum_order(tmp_path):
    dm = ReasoningDataModule(
        num_train=400, num_val=30, num_test=30, block_size=64, batch_size=4, cache_dir=str(tmp_path / "cache")
    )
    dm.setup("fit")
    first = dm.tokenizer.decode(next(iter(dm.train_dataloader()))[0].tolist(), skip_special=False)
    assert first.startswith("Q: ")
    assert first == dm.corpus.problems("train")[0].text[:65]  # unshuffled: the stream starts at problem 0
    assert dm.tokenizer.kind == "char"
    assert len(dm.problems("test")) == 30
    assert torch.is_tensor(next(iter(dm.val_dataloader())))
