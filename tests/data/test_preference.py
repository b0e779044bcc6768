"""PreferenceDataModule: response-only targets, chat and plain formats, one-line errors, the split, the loader."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from lightningllm.data import DataError, PreferenceDataModule, Tokenizer
from lightningllm.data.instruct import END
from lightningllm.data.preference import PairBatches, PairLoader
from lightningllm.model import IGNORE_INDEX

ALPHABET = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789?:+=.,!é"


@pytest.fixture
def tokenizer_path(tmp_path: Path) -> str:
    return str(Tokenizer.train([ALPHABET], kind="char").save(tmp_path / "tok" / "tokenizer.json"))


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def pairs_file(tmp_path: Path, count: int = 10, name: str = "pairs.jsonl") -> Path:
    records = [{"prompt": f"is {i} ok?", "chosen": "yes", "rejected": "no" * (1 + i % 3)} for i in range(count)]
    return write_jsonl(tmp_path / name, records)


def setup_data(path: Path, tokenizer_path: str, **args) -> PreferenceDataModule:
    data = PreferenceDataModule(train_file=str(path), tokenizer_path=tokenizer_path, **args)
    data.setup("fit")
    return data


def answer(tokenizer: Tokenizer, targets: torch.Tensor) -> str:
    return tokenizer.hf.decode([int(t) for t in targets if t != IGNORE_INDEX], skip_special_tokens=False)


def test_chat_pairs_train_on_the_answers_only(tmp_path, tokenizer_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "is 1 ok?", "chosen": "yes", "rejected": "no"}])
    data = setup_data(path, tokenizer_path, val_fraction=0)
    tok = data.tokenizer
    batch = data.splits()["train"].collate([0])
    assert set(batch) == {"chosen_inputs", "chosen_targets", "rejected_inputs", "rejected_targets"}
    assert all(t.dtype == torch.long for t in batch.values())
    assert answer(tok, batch["chosen_targets"][0]) == f"yes{END}<|eos|>"
    assert answer(tok, batch["rejected_targets"][0]) == f"no{END}<|eos|>"
    chosen = "<|user|>is 1 ok?<|end|><|assistant|>yes<|end|>"  # the inputs: everything but the last token
    assert tok.hf.decode(batch["chosen_inputs"][0].tolist(), skip_special_tokens=False) == chosen
    # Targets are the inputs shifted by one where they are not ignored.
    inputs, targets = batch["chosen_inputs"][0], batch["chosen_targets"][0]
    kept = (targets != IGNORE_INDEX).nonzero().flatten()
    assert torch.equal(targets[kept[:-1]], inputs[kept[:-1] + 1])
    # The rejected row is shorter: right-padded with EOS, targets with IGNORE_INDEX, to the batch's longest row.
    assert batch["rejected_inputs"].shape == batch["chosen_inputs"].shape
    assert batch["rejected_inputs"][0, -1] == tok.eos_id and batch["rejected_targets"][0, -1] == IGNORE_INDEX


def test_plain_pairs_continue_the_prompt_and_end_with_eos(tmp_path, tokenizer_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Q: 2+2? A:", "chosen": " 4", "rejected": " 5"}])
    data = setup_data(path, tokenizer_path, val_fraction=0, chat=False)
    batch = data.splits()["train"].collate([0])
    tok = data.tokenizer
    assert answer(tok, batch["chosen_targets"][0]) == " 4<|eos|>"
    assert tok.hf.decode(batch["rejected_inputs"][0].tolist(), skip_special_tokens=False) == "Q: 2+2? A: 5"
    assert data.sample_prompts(1) == ["Q: 2+2? A:"]


def test_messages_are_the_context_of_the_next_assistant_answer(tmp_path, tokenizer_path):
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "is it ok?"},
    ]
    path = write_jsonl(tmp_path / "p.jsonl", [{"messages": messages, "chosen": "yes", "rejected": "no"}])
    data = setup_data(path, tokenizer_path, val_fraction=0)
    batch = data.splits()["train"].collate([0])
    context = "<|system|>be brief<|end|><|user|>hi<|end|><|assistant|>hello<|end|><|user|>is it ok?<|end|><|assistant|>"
    assert data.sample_prompts(1) == [context]
    assert answer(data.tokenizer, batch["chosen_targets"][0]) == f"yes{END}<|eos|>"  # earlier answers are context


@pytest.mark.parametrize(
    "line, chat, message",
    [
        ('{"prompt": "a", "chosen": "b"', True, "malformed JSON"),
        ('["a", "b"]', True, "a record must be a JSON object, got list"),
        ('{"prompt": "a", "rejected": "b"}', True, "missing field 'chosen'"),
        ('{"prompt": "a", "chosen": 3, "rejected": "b"}', True, "field 'chosen' must be a string"),
        ('{"prompt": null, "chosen": "a", "rejected": "b"}', True, "field 'prompt' must be a string"),
        ('{"chosen": "a", "rejected": "b"}', True, "missing field 'prompt' (or 'messages')"),
        ('{"messages": [], "chosen": "a", "rejected": "b"}', True, "'messages' must be a non-empty list"),
        (
            '{"messages": [{"role": "user", "content": "q"}], "chosen": "a", "rejected": "b"}',
            False,
            "a 'messages' record needs data.chat true",
        ),
        ('{"prompt": "", "chosen": "a", "rejected": "b"}', False, "field 'prompt' is empty"),
    ],
)
def test_a_bad_record_is_one_line_naming_file_and_line(tmp_path, tokenizer_path, line, chat, message):
    good = '{"prompt": "q", "chosen": "a", "rejected": "b"}'
    path = write_jsonl(tmp_path / "pairs.jsonl", [good, "", line])  # a blank line is skipped, not counted out
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:3: {re.escape(message)}") as err:
        setup_data(path, tokenizer_path, chat=chat)
    assert "\n" not in str(err.value)


def test_undecodable_bytes_empty_and_missing_files_are_one_line_errors(tmp_path, tokenizer_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"prompt": "q", "chosen": "a", "rejected": "b"}\n{"prompt": "\xff"}\n')
    with pytest.raises(DataError, match=rf"^{re.escape(str(bad))}:2: not UTF-8 text \(byte 0xff at column 13\)$"):
        setup_data(bad, tokenizer_path)
    empty = write_jsonl(tmp_path / "empty.jsonl", ["", "  "])
    with pytest.raises(DataError, match=rf"^data.train_file {re.escape(str(empty))} holds no preference pairs"):
        setup_data(empty, tokenizer_path)
    with pytest.raises(DataError, match=r"^data.train_file .*nope.jsonl does not exist$"):
        setup_data(tmp_path / "nope.jsonl", tokenizer_path)
    with pytest.raises(DataError, match=r"^data.val_file .*nope.jsonl does not exist$"):
        setup_data(pairs_file(tmp_path), tokenizer_path, val_file=str(tmp_path / "nope.jsonl"))
    with pytest.raises(DataError, match=r"^data.tokenizer_path is not set"):
        setup_data(pairs_file(tmp_path), None)


def test_a_pair_longer_than_the_context_names_its_line(tmp_path, tokenizer_path):
    records = [{"prompt": "q", "chosen": "a", "rejected": "b"}, {"prompt": "q", "chosen": "a", "rejected": "b" * 40}]
    path = write_jsonl(tmp_path / "pairs.jsonl", records)
    data = setup_data(path, tokenizer_path, val_fraction=0)
    assert data.block_size == 4 + 42 - 1  # <|user|>q<|end|><|assistant|>, b * 40 <|end|><|eos|>, less the last
    data.check_fits(data.block_size)
    with pytest.raises(
        DataError, match=rf"^{re.escape(str(path))}:2: the prompt and the rejected answer are 45 tokens"
    ):
        data.check_fits(32)


def test_the_held_out_split_is_seeded_and_a_val_file_replaces_it(tmp_path, tokenizer_path):
    path = pairs_file(tmp_path, count=20)

    def val_contexts(**args):
        return [p.context for p in setup_data(path, tokenizer_path, **args).splits()["val"].pairs]

    first = val_contexts(val_fraction=0.2)
    assert len(first) == 4 and first == val_contexts(val_fraction=0.2)
    assert first != val_contexts(val_fraction=0.2, seed=7)
    data = setup_data(path, tokenizer_path, val_fraction=0.2)
    assert len(data.splits()["train"]) == 16
    data = setup_data(path, tokenizer_path, val_file=str(pairs_file(tmp_path, count=3, name="val.jsonl")))
    assert len(data.splits()["train"]) == 20 and len(data.splits()["val"]) == 3
    assert "val" not in setup_data(path, tokenizer_path, val_fraction=0).splits()
    with pytest.raises(ValueError, match=r"^data.val_fraction must be in \[0, 1\)"):
        PreferenceDataModule(train_file=str(path), val_fraction=1.0)


def rows(batch: dict) -> list[str]:
    """Each row of a batch as the text of its chosen inputs, without the padding (EOS is id 1)."""
    return [str([t for t in row.tolist() if t != 1]) for row in batch["chosen_inputs"]]


def test_the_loader_is_seeded_keeps_the_last_partial_batch_and_resumes_at_the_next_pair(tmp_path, tokenizer_path):
    data = setup_data(pairs_file(tmp_path, count=10), tokenizer_path, val_fraction=0, batch_size=4)
    loader = data.train_dataloader()
    epoch0 = list(loader)
    assert len(loader) == 3 and [len(b["chosen_inputs"]) for b in epoch0] == [4, 4, 2]  # the last 2 pairs train
    epoch1 = list(loader)
    assert [rows(b) for b in epoch1] != [rows(b) for b in epoch0] and len(epoch1) == 3  # a new order each epoch
    again = list(
        setup_data(pairs_file(tmp_path, count=10), tokenizer_path, val_fraction=0, batch_size=4).train_dataloader()
    )
    assert [rows(b) for b in again] == [rows(b) for b in epoch0]  # the same seed, the same order
    # Stop after one batch of epoch 1, save the position, and continue in a new loader from it.
    it = iter(loader)
    next(it)
    state = loader.state_dict()
    fresh = data.train_dataloader()
    fresh.load_state_dict(state)
    rest = list(fresh)
    assert [rows(b) for b in rest] == [rows(b) for b in list(iter_epoch(data, epoch=2))[1:]]
    other = setup_data(pairs_file(tmp_path, count=9), tokenizer_path, val_fraction=0, batch_size=4).train_dataloader()
    with pytest.raises(DataError, match="cannot resume the data position"):
        other.load_state_dict(state)


def iter_epoch(data: PreferenceDataModule, epoch: int):
    """The batches of one epoch of a fresh loader (its first ``iter`` is epoch 0)."""
    loader = data.train_dataloader()
    for _ in range(epoch):
        list(loader)
    return iter(loader)


def test_ranks_share_each_step_evenly_and_validation_pads_the_last_step(tmp_path, tokenizer_path):
    data = setup_data(pairs_file(tmp_path, count=7), tokenizer_path, val_fraction=0, batch_size=2)
    pairs = data.splits()["train"]
    shares = [list(PairLoader(PairBatches(pairs, 2, rank, 2, seed=0, shuffle=True, train=True))) for rank in (0, 1)]
    assert [len(s) for s in shares] == [2, 2]
    sizes = [[len(b["chosen_inputs"]) for b in s] for s in shares]
    assert sizes == [[2, 2], [2, 2]]  # 7 pairs: the last step's 3 are filled to 4 from the start of the order
    seen = [row for share in shares for batch in share for row in rows(batch)]
    assert len(set(seen)) == 7
    val = [list(PairBatches(pairs, 2, rank, 2, seed=0, shuffle=False, train=False)) for rank in (0, 1)]
    padding = val[1][-1]["chosen_targets"][1]  # 7 pairs on 2 ranks × 2: the 8th row is padding
    assert (padding == IGNORE_INDEX).all()
    assert sum(int((b["chosen_targets"] != IGNORE_INDEX).any(1).sum()) for v in val for b in v) == 7
