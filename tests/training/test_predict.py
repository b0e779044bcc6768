"""LitGPT.predict_step: sampling options refused when the module is made, the default length that fits the
context, cropping on request, and seeded completions that do not depend on the batch."""

import pytest

from lightningllm.data import PromptDataModule, Tokenizer
from lightningllm.model import GPTConfig
from lightningllm.training import LitGPT

TOKENIZER = Tokenizer.train(["abcdefghij 0123456789 the quick brown fox jumps"], kind="char")
PROMPTS = ["the fox", "abc", "0123456789 ab", "quick brown"]


def module(block_size: int = 32, like: LitGPT | None = None, **sampling) -> LitGPT:
    """A debug-sized LitGPT with a char tokenizer, built as ``predict`` builds it (with the weights of ``like``)."""
    lit = LitGPT(GPTConfig.from_name("debug", vocab_size=TOKENIZER.vocab_size, block_size=block_size), **sampling)
    lit.tokenizer = TOKENIZER
    lit.build()
    if like is not None:
        lit.load_state_dict(like.state_dict())
    return lit


def predict(lit: LitGPT, prompts: list[str], batch_size: int = 8) -> dict[str, dict]:
    """The records predict writes, by prompt, for ``prompts`` batched ``batch_size`` at a time."""
    data = PromptDataModule(prompts=prompts, batch_size=batch_size)
    data.setup("predict")
    records = [r for i, batch in enumerate(data.predict_dataloader()) for r in lit.predict_step(batch, i)]
    return {record["prompt"]: record for record in records}


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"top_k": 0}, "model.top_k must be a positive integer or null (got 0)"),
        ({"temperature": -1.0}, "model.temperature must be a finite number >= 0, 0 for greedy (got -1.0)"),
        ({"top_p": 1.5}, "model.top_p must be in (0, 1], or null (got 1.5)"),
        ({"top_p": 2.0}, "model.top_p must be in (0, 1], or null (got 2.0)"),
        (
            {"max_new_tokens": -5},
            "model.max_new_tokens must be an integer >= 1, or null for up to 128 tokens that fit the context (got -5)",
        ),
        ({"on_prompt_too_long": "cut"}, "model.on_prompt_too_long must be 'error' or 'crop' (got 'cut')"),
        ({"sample_seed": 2**64}, f"model.sample_seed must be an integer from -2**63 to 2**64 - 1 (got {2**64})"),
    ],
)
def test_a_bad_sampling_option_is_refused_when_the_module_is_made(option, message):
    with pytest.raises(ValueError) as err:
        LitGPT(**option)
    assert str(err.value) == message


@pytest.mark.parametrize("block_size", [128, 256])
def test_the_default_length_fits_the_context(block_size):
    """The default max_new_tokens of 128 used to leave no room for a prompt in a 128-token context."""
    lit = module(block_size=block_size, temperature=0)
    records = predict(lit, ["the fox", "0123456789" * 10])
    for record in records.values():
        room = min(128, block_size - record["prompt_tokens"])
        assert 0 < record["completion_tokens"] <= room


def test_a_prompt_too_long_for_max_new_tokens_is_one_line_or_cropped_on_request():
    long = "the quick brown fox " * 2  # 40 characters, 40 tokens
    plain = module(max_new_tokens=8, temperature=0)
    with pytest.raises(ValueError) as err:
        predict(plain, [long])
    assert str(err.value) == (
        "a prompt of 40 tokens plus max_new_tokens=8 exceeds the model's block_size 32: shorten the prompt, "
        "lower max_new_tokens or set on_prompt_too_long to crop"
    )
    cropped = predict(module(like=plain, max_new_tokens=8, temperature=0, on_prompt_too_long="crop"), [long])[long]
    assert cropped["prompt_tokens"] == 40 and 0 < cropped["completion_tokens"] <= 8
    kept = long[-24:]  # the prompt's last 32 - 8 tokens
    assert cropped["completion"] == predict(plain, [kept])[kept]["completion"]


@pytest.mark.parametrize("max_new_tokens", [10, None])
def test_a_seeded_prompt_gets_the_same_completion_in_any_batch(max_new_tokens):
    lit = module(temperature=1.0, sample_seed=7, max_new_tokens=max_new_tokens)
    alone = predict(lit, [PROMPTS[0]])[PROMPTS[0]]["completion"]
    a, b, c = PROMPTS[1:]
    for batch in ([PROMPTS[0], a, b], [c, PROMPTS[0], a], [b, c, PROMPTS[0]]):  # each position, other neighbours
        assert predict(lit, batch)[PROMPTS[0]]["completion"] == alone
    by_batch_size = [
        {p: r["completion"] for p, r in predict(lit, PROMPTS, batch_size).items()} for batch_size in (1, 2, 3, 4)
    ]
    assert all(completions == by_batch_size[0] for completions in by_batch_size)
    assert by_batch_size[0][PROMPTS[0]] == alone
    other_seed = module(like=lit, temperature=1.0, sample_seed=8, max_new_tokens=max_new_tokens)
    assert predict(other_seed, [PROMPTS[0]])[PROMPTS[0]]["completion"] != alone
