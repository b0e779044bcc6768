"""A corpus of instruction and chat records trains one record per sample: right-padded rows, nothing across records.

Sources that hold only ``prompt``/``response`` or ``messages`` records are prepared in the ``records``
layout: each record is a sample of its own, cut to ``block_size + 1`` tokens when longer (counted and
printed), every record trains once an epoch (the last step padded), and the loader position resumes
exactly. Plain text keeps the packed layout.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from lightningllm.data import DataError, TextDataModule
from lightningllm.data.instruct import ASSISTANT, END, USER
from lightningllm.data.prepare import read_report
from lightningllm.data.shard_writer import write_shards
from lightningllm.data.shards import RECORD_LENGTHS, PieceWriter, chunk_records, context_flag, record_lengths
from lightningllm.data.tokenizer import Tokenizer
from lightningllm.model import GPT, IGNORE_INDEX, GPTConfig
from lightningllm.training import LitGPT

PROMPT = re.compile(r"What is (\d+) plus \1\?")


def write_records(path: Path, count: int, long_every: int = 0) -> dict[str, str]:
    """``count`` records ``What is i plus i?`` → ``2i.`` (every ``long_every``-th with a long answer); their
    answers by prompt."""
    answers = {}
    for i in range(count):
        answers[f"What is {i} plus {i}?"] = f"{2 * i}." * (12 if long_every and i % long_every == 0 else 1)
    path.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in answers.items()))
    return answers


def records_module(path: Path, tmp_path: Path, **kw) -> TextDataModule:
    args = {"sources": str(path), "tokenizer_kind": "char", "block_size": 32, "batch_size": 4, "val_fraction": 0.2}
    args |= {"test_fraction": 0.0, "cache_dir": str(tmp_path / "cache"), "prepare_workers": 1}
    return TextDataModule(**(args | kw))


def rows(batches) -> list[tuple[list[int], list[int]]]:
    """Each row of ``batches`` that holds a record: (its inputs, its targets), padding cut off."""
    out = []
    for inputs, targets in batches:
        for x, y in zip(inputs.tolist(), targets.tolist(), strict=True):
            trained = [i for i, t in enumerate(y) if t != IGNORE_INDEX]
            if trained:  # a row that fills the last step has no target
                out.append((x[: trained[-1] + 1], y[: trained[-1] + 1]))  # a record's last target is its EOS
    return out


def prompt_of(dm: TextDataModule, inputs: list[int]) -> str:
    return PROMPT.search(dm.tokenizer.decode(inputs, skip_special=False)).group(0)


def test_records_written_by_several_workers_are_one_item_each_with_their_lengths(tmp_path, monkeypatch):
    from litdata import StreamingDataset
    from litdata.utilities.env import _DistributedEnv

    tokenizer = Tokenizer.train(["ab"], kind="char")
    pieces = PieceWriter(tmp_path, "train", piece_bytes=300)  # several pieces: both workers write chunks
    for i in range(1, 40):
        pieces.write([("a" * (1 + i % 3), False), ("b" * i, True)], eos=True)
    pieces.close()
    assert len(pieces.paths) > 2
    write_shards(pieces.paths, tokenizer.to_str(), tmp_path / "out", 2, tmp_path, chunk_tokens=64, records=True)
    items = StreamingDataset(str(tmp_path / "out"), shuffle=False)
    stored = [items[i] for i in range(len(items))]
    assert sum(chunk_records(tmp_path / "out")) == len(stored) == 39 and len(chunk_records(tmp_path / "out")) > 2
    assert record_lengths(tmp_path / "out").tolist() == [len(record) for record in stored]
    with monkeypatch.context() as patch:  # in one process of two (prepared under DDP): still every record
        patch.setattr(_DistributedEnv, "detect", lambda: _DistributedEnv(world_size=2, global_rank=0, num_nodes=1))
        assert len(StreamingDataset(str(tmp_path / "out"), shuffle=False)) < 39  # litdata's len: the rank's share
        assert record_lengths(tmp_path / "out").tolist() == [len(record) for record in stored]
    flag, (a, b) = context_flag(stored[0].dtype), tokenizer.encode("ab")
    for record in stored:  # one whole record each: flagged context, the answer, EOS
        context = int((record == (a | flag)).sum())
        assert record.tolist() == [a | flag] * context + [b] * (len(record) - context - 1) + [tokenizer.eos_id]
    assert sorted(int((record == b).sum()) for record in stored) == list(range(1, 40))


def test_each_row_is_one_record_and_no_token_attends_across_records(tmp_path):
    answers = write_records(tmp_path / "chat.jsonl", 30, long_every=4)
    dm = records_module(tmp_path / "chat.jsonl", tmp_path, block_size=64)
    dm.setup("fit")
    assert dm.report["layout"] == "records"
    inputs, targets = next(iter(dm.train_dataloader()))
    assert inputs.dtype == targets.dtype == torch.int64 and inputs.shape == targets.shape
    eos, tokenizer = dm.tokenizer.eos_id, dm.tokenizer
    lengths = []
    for x, y in rows([(inputs, targets)]):  # exactly one record per row: its text, and its answer + EOS trained
        prompt = prompt_of(dm, x)
        assert tokenizer.decode(x, skip_special=False) == f"{USER}{prompt}{END}{ASSISTANT}{answers[prompt]}{END}"
        assert [t for t in y if t != IGNORE_INDEX] == tokenizer.encode(answers[prompt] + END) + [eos]
        lengths.append(len(x))
    assert len(lengths) == 4 and len(set(lengths)) > 1 and inputs.shape[1] == max(lengths)  # padded to the longest
    assert (inputs[0, lengths[0] :] == eos).all() and (targets[0, lengths[0] :] == IGNORE_INDEX).all()

    model = GPT(GPTConfig.from_name("debug", vocab_size=tokenizer.vocab_size, block_size=64)).eval()
    with torch.no_grad():
        logits = model(inputs)
        other = inputs.clone()
        other[1:] = torch.randint(0, tokenizer.vocab_size, other[1:].shape)  # every other record changed
        other[0, lengths[0] :] = torch.randint(0, tokenizer.vocab_size, (inputs.shape[1] - lengths[0],))  # and padding
        changed = model(other)
        alone = model(inputs[:1, : lengths[0]])  # the first record without its batch or padding
    n = lengths[0]
    torch.testing.assert_close(changed[0, :n], logits[0, :n], rtol=0, atol=0)
    torch.testing.assert_close(alone[0], logits[0, :n])
    assert not torch.allclose(changed[1:], logits[1:])


def test_every_record_appears_once_an_epoch_whole_or_cut_and_the_cut_ones_are_counted(tmp_path, capsys):
    answers = write_records(tmp_path / "chat.jsonl", 40, long_every=5)
    dm = records_module(tmp_path / "chat.jsonl", tmp_path, block_size=24, batch_size=3, num_workers=1)
    dm.setup("fit")
    lengths = np.load(dm.prepared_dir / RECORD_LENGTHS)
    cut = {split: int((lengths[split] > 25).sum()) for split in ("train", "val")}
    assert cut["train"] > 0 and dm.report["split_documents"]["train"] == len(lengths["train"])
    assert dm.report["tokens"]["train"] == int(lengths["train"].sum())
    where = f"train {len(lengths['train'])}, val {len(lengths['val'])}, test 0 records"
    longer = f"{cut['train'] + cut['val']} longer than data.block_size + 1 = 25 tokens (train {cut['train']}"
    assert f"data: one sample per record ({where}); {longer}" in capsys.readouterr().out

    seen = {}
    for split in ("train", "val"):
        loader = dm._loader(split)
        for x, y in rows(loader):
            whole = x + [y[-1]]  # the stored tokens: the inputs and the last target
            prompt = prompt_of(dm, x)
            assert prompt not in seen
            text = f"{USER}{prompt}{END}{ASSISTANT}{answers[prompt]}{END}"
            record = dm.tokenizer.encode(text) + [dm.tokenizer.eos_id]
            seen[prompt] = len(record) > 25
            assert whole == record[:25]  # whole, or its first block_size + 1 tokens
    assert set(seen) == set(answers)  # each record once: training keeps the last, partial step
    assert sum(seen.values()) == cut["train"] + cut["val"]
    assert len(loader := dm.train_dataloader()) == -(-len(lengths["train"]) // 3)
    epochs = [[prompt_of(dm, x) for x, _ in rows(loader)] for _ in range(2)]
    assert epochs[0] != epochs[1] and all(sorted(epoch) == sorted(epochs[0]) for epoch in epochs)  # each its order
    assert len(set(epochs[0])) == len(lengths["train"])


class Batches(L.Callback):
    """The loss and the batch of every training step."""

    def __init__(self):
        self.steps: list[tuple[float, torch.Tensor, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.steps.append((float(outputs["loss"]), *batch))


def test_three_records_with_batch_size_16_train_one_step(tmp_path):
    # The tail split keeps file order: the first three records train, the last two validate.
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Q{i}?", "response": f"A{i}."}) + "\n" for i in range(5)))
    data = records_module(path, tmp_path, batch_size=16, val_fraction=0.45, split="tail")
    batches = Batches()
    trainer = L.Trainer(
        max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[batches],
    )  # fmt: skip
    trainer.fit(LitGPT(GPTConfig.from_name("debug", vocab_size=None)), datamodule=data)
    assert data.report["split_documents"] == {"train": 3, "val": 2, "test": 0}
    assert trainer.global_step == 1 and len(batches.steps) == 1
    loss, inputs, targets = batches.steps[0]
    assert np.isfinite(loss) and inputs.shape[0] == 16
    assert (targets[:3] != IGNORE_INDEX).any(1).all() and (targets[3:] == IGNORE_INDEX).all()  # 13 rows of padding


def test_the_loader_position_resumes_at_the_next_record_with_any_batch_size(tmp_path):
    write_records(tmp_path / "chat.jsonl", 40)
    dm = records_module(tmp_path / "chat.jsonl", tmp_path, batch_size=3)
    dm.setup("fit")
    uninterrupted = dm.train_dataloader()
    whole = [prompt_of(dm, x) for _ in range(2) for x, _ in rows(uninterrupted)]  # two epochs

    before = records_module(tmp_path / "chat.jsonl", tmp_path, batch_size=3)
    before.setup("fit")
    loader = before.train_dataloader()
    iterator = iter(loader)
    done = [prompt_of(before, x) for x, _ in rows([next(iterator), next(iterator)])]
    state = loader.state_dict()
    assert state["sample"] == 6
    resumed = records_module(tmp_path / "chat.jsonl", tmp_path, batch_size=5)
    resumed.setup("fit")
    resumed.load_state_dict(before.state_dict())
    again = resumed.train_dataloader()
    again.load_state_dict(state)
    rest = [prompt_of(resumed, x) for _ in range(2) for x, _ in rows(again)]
    assert done + rest == whole


def test_a_split_without_a_record_is_refused_in_one_line(tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Q{i}?", "response": f"A{i}."}) + "\n" for i in range(5)))
    dm = records_module(path, tmp_path, split="tail", val_fraction=0.1)  # the last record starts before the cut
    with pytest.raises(DataError) as refused:
        dm.setup("fit")
    assert str(refused.value) == (
        f"too little validation data: the val split of data.sources {path} holds no record; raise "
        "data.val_fraction (now 0.1) or add text"
    )


def test_sources_that_mix_plain_text_and_records_are_refused_in_one_line_naming_them(tmp_path):
    sources = tmp_path / "sources"
    sources.mkdir()
    write_records(sources / "chat.jsonl", 3)
    (sources / "notes.txt").write_text("Some plain text.\n")
    dm = records_module(sources, tmp_path)
    with pytest.raises(DataError) as refused:
        dm.prepare_data()
    assert str(refused.value) == (
        f"data.sources {sources} mix plain text ({sources / 'notes.txt'}) with instruction or chat records "
        f"({sources / 'chat.jsonl'}), which train differently (text packed into windows, each record a sample of its "
        "own): train on them in separate runs"
    )
    assert not list((tmp_path / "cache").glob("text-*"))


def test_plain_text_stays_packed_and_a_records_folder_reads_as_records_without_its_sources(text_corpus, tmp_path):
    text = TextDataModule(
        sources=str(text_corpus), tokenizer_kind="char", block_size=16, batch_size=4, cache_dir=str(tmp_path / "c"),
        prepare_workers=1,
    )  # fmt: skip
    text.setup("fit")
    assert text.report["layout"] == "packed" and not (text.prepared_dir / RECORD_LENGTHS).exists()
    inputs, targets = next(iter(text.train_dataloader()))
    assert inputs.shape == (4, 16) and torch.equal(inputs[:, 1:], targets[:, :-1])  # windows of one stream

    write_records(tmp_path / "chat.jsonl", 30)
    dm = records_module(tmp_path / "chat.jsonl", tmp_path)
    dm.setup("fit")
    assert read_report(dm.prepared_dir)["layout"] == "records" and dm.prepared_dir != text.prepared_dir
    prepared = TextDataModule(prepared=str(dm.prepared_dir), block_size=32, batch_size=4)
    prepared.setup("fit")
    assert prepared.layout == "records"
    for split in ("train", "val"):
        for (x, y), (x2, y2) in zip(dm._loader(split), prepared._loader(split), strict=True):
            assert torch.equal(x, x2) and torch.equal(y, y2)


def test_a_corpus_of_records_in_a_bucket_streams_with_its_record_lengths(s3_server, tmp_path, monkeypatch):
    import os

    for key in [key for key in os.environ if key.startswith("AWS_")]:
        monkeypatch.delenv(key)
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    write_records(tmp_path / "chat.jsonl", 30, long_every=7)
    local = records_module(tmp_path / "chat.jsonl", tmp_path)
    local.setup("fit")
    remote = records_module(
        tmp_path / "chat.jsonl", tmp_path, cache_dir="s3://corpora/records", local_cache_dir=str(tmp_path / "mirror")
    )
    remote.setup("fit")
    assert (remote.prepared_dir / RECORD_LENGTHS).is_file() and remote.report["layout"] == "records"
    for split in ("train", "val"):
        for (x, y), (x2, y2) in zip(local._loader(split), remote._loader(split), strict=True):
            assert torch.equal(x, x2) and torch.equal(y, y2)
