"""generate and sample_next: option checks, the default that fits the context, cropping, per-prompt seeded
streams that make a completion independent of its batch, and sampling that follows the distribution."""

import pytest
import torch

from lightningllm.model import GPT, GPTConfig, generate, sample_next
from lightningllm.model.generate import DEFAULT_NEW_TOKENS


def tiny(**overrides) -> GPT:
    return GPT(GPTConfig.from_name("debug", **overrides)).eval()


PROMPT = [3, 1, 4, 1, 5]
NEIGHBOURS = [[9] * 20, [2, 7], [11, 12, 13, 14, 15, 16, 17, 18]]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"top_k": 0}, r"top_k must be a positive integer or None \(got 0\)"),
        ({"top_k": -3}, r"top_k must be a positive integer or None \(got -3\)"),
        ({"temperature": -1.0}, r"temperature must be a finite number >= 0, 0 for greedy \(got -1.0\)"),
        ({"temperature": float("nan")}, r"temperature must be a finite number >= 0, 0 for greedy \(got nan\)"),
        ({"top_p": 1.5}, r"top_p must be in \(0, 1\], or None \(got 1.5\)"),
        ({"top_p": 2.0}, r"top_p must be in \(0, 1\], or None \(got 2.0\)"),
        ({"top_p": 0.0}, r"top_p must be in \(0, 1\], or None \(got 0.0\)"),
        ({"max_new_tokens": -5}, r"max_new_tokens must be an integer >= 1, or None for up to 128 .*\(got -5\)"),
        ({"max_new_tokens": 0}, r"max_new_tokens must be an integer >= 1, .*\(got 0\)"),
        ({"on_prompt_too_long": "cut"}, r"on_prompt_too_long must be 'error' or 'crop' \(got 'cut'\)"),
        ({"seed": 2**64}, r"seed must be an integer from -2\*\*63 to 2\*\*64 - 1"),
    ],
)
def test_a_bad_sampling_option_is_one_line_naming_it(option, message):
    with pytest.raises(ValueError, match=message) as err:
        generate(tiny(), [PROMPT], **{"max_new_tokens": 4, "temperature": 1.0, **option})
    assert "\n" not in str(err.value)


def test_sample_next_checks_its_options_too():
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        sample_next(torch.randn(2, 10), top_k=0)
    with pytest.raises(ValueError, match="top_p must be in"):
        sample_next(torch.randn(2, 10), top_p=1.5)


def test_by_default_up_to_128_new_tokens_fit_the_context():
    short = [[1, 2, 3]]
    assert len(generate(tiny(block_size=32), short, temperature=0)[0]) == 32 - 3  # fewer: the room left
    assert len(generate(tiny(block_size=256), short, temperature=0)[0]) == DEFAULT_NEW_TOKENS == 128


def test_an_explicit_max_new_tokens_that_does_not_fit_names_the_lengths_unless_cropping():
    model = tiny(block_size=32)
    with pytest.raises(
        ValueError, match="a prompt of 30 tokens plus max_new_tokens=8 exceeds the model's block_size 32"
    ):
        generate(model, [list(range(30))], 8)
    with pytest.raises(ValueError, match="max_new_tokens=40 leaves no room for a prompt in block_size 32"):
        generate(model, [[1]], 40)
    cropped = generate(model, [list(range(30))], 8, temperature=0, on_prompt_too_long="crop")
    assert cropped == generate(model, [list(range(6, 30))], 8, temperature=0)  # the prompt's last 24 tokens


def test_a_prompt_filling_the_context_raises_by_default_and_crop_makes_room_for_half_of_it():
    model = tiny(block_size=32)
    with pytest.raises(ValueError, match="a prompt of 40 tokens fills the model's block_size 32"):
        generate(model, [list(range(40))], temperature=0)
    cropped = generate(model, [list(range(40))], temperature=0, on_prompt_too_long="crop")
    assert len(cropped[0]) == 16  # min(128, block_size // 2)
    assert cropped == generate(model, [list(range(24, 40))], 16, temperature=0)


def test_each_prompt_keeps_its_own_default_length_next_to_a_longer_one():
    """A short prompt batched with a long one still gets all the room it has alone (no EOS here)."""
    model = tiny(block_size=32, pos_emb="rope")
    long = list(range(28))
    for kwargs in ({"temperature": 0}, {"temperature": 1.0, "seed": 3}):
        alone = generate(model, [PROMPT], **kwargs)[0]
        batched = generate(model, [long, PROMPT], **kwargs)
        assert len(alone) == 32 - len(PROMPT) and len(batched[0]) == 4
        assert batched[1] == alone


@pytest.mark.parametrize("use_kv_cache", [True, False])
def test_a_seeded_prompt_continues_the_same_in_any_batch_at_any_position(use_kv_cache):
    model = tiny(pos_emb="rope")
    sample = {"max_new_tokens": 12, "temperature": 1.0, "top_k": 50, "seed": 7, "use_kv_cache": use_kv_cache}
    alone = generate(model, [PROMPT], **sample)[0]
    a, b, c = NEIGHBOURS
    for batch in ([PROMPT, a, b], [c, PROMPT, a], [b, c, PROMPT]):  # each position, other neighbours
        assert generate(model, batch, **sample)[batch.index(PROMPT)] == alone
    assert generate(model, [PROMPT], **{**sample, "seed": 8})[0] != alone
    assert generate(model, [PROMPT, PROMPT], **sample) == [alone, alone]  # same prompt, same seed: same text


def test_seeded_sampling_leaves_the_global_generator_alone_and_unseeded_follows_it():
    model = tiny()
    state = torch.get_rng_state()
    generate(model, [PROMPT], 6, temperature=1.0, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(5)
    first = generate(model, [PROMPT, [2, 7]], 6, temperature=1.0)
    torch.manual_seed(5)
    assert generate(model, [PROMPT, [2, 7]], 6, temperature=1.0) == first


def test_one_generator_per_row_equals_each_row_sampled_alone():
    logits = torch.randn(3, 40)
    together = sample_next(logits, generator=[torch.Generator().manual_seed(s) for s in (1, 2, 3)])
    alone = [
        sample_next(logits[r : r + 1], generator=torch.Generator().manual_seed(s)) for r, s in enumerate((1, 2, 3))
    ]
    assert together.tolist() == torch.cat(alone).tolist()
    with pytest.raises(ValueError, match="got 2 generators for 3 rows"):
        sample_next(logits, generator=[torch.Generator(), torch.Generator()])
    with pytest.raises(ValueError, match="pass seed or generator to generate, not both"):
        generate(tiny(), [PROMPT], 2, seed=1, generator=torch.Generator())


def test_samples_follow_the_distribution_and_never_pick_a_filtered_token():
    torch.manual_seed(0)
    logits = torch.randn(2, 8) * 2
    probs = logits.softmax(dim=-1)
    generator = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_next(logits, generator=generator) for _ in range(8000)])  # (N, 2)
    for row in range(2):
        frequency = torch.bincount(draws[:, row], minlength=8) / len(draws)
        torch.testing.assert_close(frequency, probs[row], atol=0.02, rtol=0)
    top2 = logits.topk(2).indices
    kept = torch.stack([sample_next(logits, top_k=2, generator=generator) for _ in range(500)])
    for row in range(2):
        assert set(kept[:, row].tolist()) == set(top2[row].tolist())
    nucleus = torch.stack([sample_next(logits, top_p=1e-6, generator=generator) for _ in range(50)])
    assert (nucleus == logits.argmax(dim=-1)).all()  # the best token always stays


def test_non_finite_logits_are_a_clear_error_not_garbage_tokens():
    logits = torch.randn(2, 8)
    logits[1, 3] = float("nan")
    with pytest.raises(ValueError, match="next-token probabilities are not finite"):
        sample_next(logits, generator=torch.Generator().manual_seed(0))
