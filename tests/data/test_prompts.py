"""PromptDataModule and prompt files: what ``predict`` continues, batched with their ids."""

import pytest

from lightningllm.data import DataError, PromptDataModule
from lightningllm.data.instruct import instruct_segments
from lightningllm.data.prompts import read_prompt_file


def batches(dm: PromptDataModule) -> list[dict]:
    dm.setup("predict")
    return list(dm.predict_dataloader())


def test_prompts_from_the_command_line_and_a_file_are_batched_in_order_with_ids(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("second\n\nthird with\\na newline\n")
    dm = PromptDataModule(prompts=["first\\nline"], prompt_file=str(path), batch_size=2)
    assert batches(dm) == [
        {"id": [0, 1], "prompt": ["first\nline", "second"]},
        {"id": [2], "prompt": ["third with\na newline"]},
    ]


def test_chat_prompts_use_the_format_instruction_data_trains_on():
    context, _ = instruct_segments("Capital of France?", "Paris.")[0]
    (batch,) = batches(PromptDataModule(prompts=["Capital of France?"], chat=True))
    assert batch["prompt"] == [context] == ["<|user|>Capital of France?<|end|><|assistant|>"]
    (plain,) = batches(PromptDataModule(prompts=["Capital of France?"]))
    assert plain["prompt"] == ["Capital of France?"]


def test_jsonl_prompt_files_and_their_errors_name_the_file_and_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a"}\n\n{"prompt": "b\\nc"}\n')
    assert read_prompt_file(path) == ["a", "b\nc"]
    path.write_text('{"prompt": "a"}\n{"text": "b"}\n')
    with pytest.raises(DataError, match=r"p.jsonl:2: record has no string 'prompt' field"):
        read_prompt_file(path)
    path.write_text("{broken\n")
    with pytest.raises(DataError, match=r"p.jsonl:1: malformed JSON"):
        read_prompt_file(path)
    with pytest.raises(DataError, match=r"prompt file .*missing.txt does not exist"):
        read_prompt_file(tmp_path / "missing.txt")


def test_no_prompts_at_all_is_a_clear_error_and_hparams_hold_the_arguments():
    dm = PromptDataModule(batch_size=3, chat=True, system="Be terse.")
    assert dict(dm.hparams) == {
        "prompts": None,
        "prompt_file": None,
        "batch_size": 3,
        "chat": True,
        "system": "Be terse.",
    }
    with pytest.raises(DataError, match="no prompts given"):
        dm.setup("predict")


@pytest.mark.parametrize("batch_size", [0, -2])
def test_a_batch_size_below_one_is_one_line_naming_the_field(batch_size):
    with pytest.raises(ValueError) as err:
        PromptDataModule(prompts=["hi"], batch_size=batch_size)
    assert str(err.value) == f"data.batch_size must be a positive integer (got {batch_size})"
