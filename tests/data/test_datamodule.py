"""TextDataModule and ReasoningDataModule: prepare once, reuse, split cleanly, never leave partial output."""

import functools
import json

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


def test_instruction_data_trains_on_responses_only(tmp_path):
    records = [{"prompt": f"Square {i}?", "response": f"{i * i}."} for i in range(30)]
    records.append({"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]})
    path = tmp_path / "sft.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records * 3))  # the repeats are dropped as duplicates
    dm = TextDataModule(
        sources=[str(path)], tokenizer_kind="char", block_size=64, batch_size=1, val_fraction=0.2, shuffle=False,
        cache_dir=str(tmp_path / "cache"), prepare_workers=1,
    )  # fmt: skip
    dm.setup("fit")
    assert dm.report["documents_kept"] == 31 and dm.report["dropped_duplicate"] == 62
    (inputs, targets), *_ = [(x[0].tolist(), y[0].tolist()) for x, y in dm._loader("train")]
    decode = functools.partial(dm.tokenizer.decode, skip_special=False)
    trained = decode([t for t in targets if t != IGNORE_INDEX])
    context = decode([i for i, t in zip(inputs[1:], targets, strict=False) if t == IGNORE_INDEX])
    # The stream starts with a record's context; from there every answer, its <|end|> and the EOS
    # that joins records are the trained targets, and every prompt and role tag is context only.
    answers = {f"{i * i}.<|end|>" for i in range(30)} | {"Hello.<|end|>"}
    pieces = trained.split("<|eos|>")
    assert len(pieces) >= 3 and set(pieces[:-1]) <= answers and any(a.startswith(pieces[-1]) for a in answers)
    assert "Square " in context and "<|assistant|>" in context and "<|user|>" in context
    assert not any(a in context for a in answers)


def test_tokenizer_trains_on_a_bounded_sample(text_corpus, tmp_path, monkeypatch):
    seen = []
    original = TextDataModule._build_tokenizer

    def spy(self, texts):
        seen.append(sum(len(t.encode()) for t in texts))
        return original(self, texts)

    monkeypatch.setattr(TextDataModule, "_build_tokenizer", spy)
    make(text_corpus, tmp_path, cache_dir=str(tmp_path / "all")).prepare_data()
    total = sum(p.stat().st_size for p in text_corpus.rglob("*.*"))
    make(text_corpus, tmp_path, tokenizer_train_bytes=total // 4, cache_dir=str(tmp_path / "quarter")).prepare_data()
    assert seen[0] > 0.6 * total  # small corpus: all training text
    assert 0.05 * total < seen[1] < 0.45 * total  # about a quarter, by a deterministic hash sample


def test_a_huge_single_line_is_read_in_bounded_memory(tmp_path, monkeypatch):
    import tracemalloc

    from lightningllm.data import sources
    from lightningllm.data.shards import PieceWriter
    from lightningllm.data.sources import CleaningReport

    line = ("lorem ipsum dolor sit amet " * 300_000).encode()  # 8 MB, no newline anywhere
    (tmp_path / "line.txt").write_bytes(line)
    monkeypatch.setattr(sources, "READ_CHUNK_BYTES", 256 << 10)
    dm = TextDataModule(sources=[str(tmp_path / "line.txt")], cache_dir=str(tmp_path / "cache"))
    writer = PieceWriter(tmp_path, "all")
    tracemalloc.start()
    for _, segments, eos in dm._documents(CleaningReport()):
        writer.write(segments, eos)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    writer.close()
    assert writer.text_bytes == len(line) and len(writer.paths) == 8
    assert peak < 3 << 20, f"reading an 8 MB line peaked at {peak / 1e6:.1f} MB of Python memory"


def test_chat_prompts_use_the_format_instruction_data_trains_on():
    from lightningllm.data import PromptDataModule
    from lightningllm.data.instruct import instruct_segments

    dm = PromptDataModule(prompts=["Capital of France?"], chat=True)
    dm.setup("predict")
    context, _ = instruct_segments("Capital of France?", "Paris.")[0]
    assert dm._items[0]["prompt"] == context == "<|user|>Capital of France?<|end|><|assistant|>"
    plain = PromptDataModule(prompts=["Capital of France?"])
    plain.setup("predict")
    assert plain._items[0]["prompt"] == "Capital of France?"


def test_tail_split_holds_out_the_last_characters_in_file_order(tmp_path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    for i in range(10):  # ten files of 1,000 characters, each of its own letter
        (corpus / f"{i}.txt").write_text(("abcdefghij"[i] * 99 + "\n") * 10)
    dm = TextDataModule(
        sources=str(corpus), tokenizer_kind="char", block_size=16, val_fraction=0.15, split="tail",
        cache_dir=str(tmp_path / "cache"), prepare_workers=1,
    )  # fmt: skip
    dm.setup("fit")
    # 8,500 characters (and 8 EOS, one per finished file) train; the last 1,500 validate.
    assert dm.report["tokens"] == {"train": 8500 + 8, "val": 1500 + 2}
    val = "".join(dm.tokenizer.decode(torch.cat([x[0], y[0, -1:]]).tolist()) for x, y in dm._loader("val"))
    assert set(val) == {"i", "j", "\n"} and "h" not in val


def test_a_vocabulary_too_small_for_bpe_is_refused_before_reading_anything(tmp_path):
    with pytest.raises(DataError, match=r"data.vocab_size 200 is too small for byte-level BPE: it needs at least 263"):
        TextDataModule(sources=str(tmp_path / "not-read"), vocab_size=200)
