"""TextDataModule and ReasoningDataModule: prepare once, reuse, split cleanly, never leave partial output."""

import pytest
import torch

from lightningllm.data import DataError, ReasoningDataModule, TextDataModule
from lightningllm.data import datamodule as datamodule_module
from lightningllm.model import IGNORE_INDEX


def make(text_corpus, tmp_path, **kw):
    args = {"sources": [str(text_corpus)], "vocab_size": 300, "block_size": 16, "batch_size": 4}
    args |= {"val_fraction": 0.2, "cache_dir": str(tmp_path / "cache"), "prepare_workers": 1}
    return TextDataModule(**(args | kw))


def test_prepare_setup_and_batches(text_corpus, tmp_path):
    dm = make(text_corpus, tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    inputs, targets = next(iter(dm.train_dataloader()))
    assert inputs.shape == targets.shape == (4, 16)  # block_size + 1 tokens per sample, shifted by one
    assert torch.equal(inputs[:, 1:], targets[:, :-1])
    assert int(inputs.max()) < dm.tokenizer.vocab_size
    assert next(iter(dm.val_dataloader()))[0].shape[1] == 16
    assert inputs.dtype == targets.dtype == torch.int64
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

    def decoded(split):  # whole windows: the inputs plus each window's last target
        windows = [torch.cat([x, y[:, -1:]], dim=1).flatten().tolist() for x, y in dm._loader(split)]
        return "".join(dm.tokenizer.decode(w, skip_special=False) for w in windows)

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


def test_reasoning_datamodule_streams_problems_in_curriculum_order_with_answer_only_loss(tmp_path):
    dm = ReasoningDataModule(
        num_train=400, num_val=30, num_test=30, block_size=160, batch_size=4, cache_dir=str(tmp_path / "cache")
    )
    dm.setup("fit")
    inputs, targets = next(iter(dm.train_dataloader()))
    first = dm.corpus.problems("train")[0]
    assert dm.tokenizer.decode(inputs[0].tolist()) == first.text[:160]  # unshuffled: the stream starts at problem 0
    # The question is read but not trained on: its targets are ignored, the answer's are kept.
    prompt_len = len(dm.tokenizer.encode(first.prompt))
    assert (targets[0, : prompt_len - 1] == IGNORE_INDEX).all()
    assert dm.tokenizer.decode(targets[0, prompt_len - 1 :].tolist()) == first.completion[: 161 - prompt_len]
    assert dm.tokenizer.kind == "char"
    assert len(dm.problems("test")) == 30


def test_reasoning_datamodule_can_train_on_every_token(tmp_path):
    dm = ReasoningDataModule(
        num_train=200, num_val=30, num_test=30, block_size=32, answer_loss_only=False, cache_dir=str(tmp_path / "c")
    )
    dm.setup("fit")
    inputs, targets = next(iter(dm.train_dataloader()))
    assert (targets != IGNORE_INDEX).all()
