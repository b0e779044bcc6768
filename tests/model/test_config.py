import pytest

from lightningllm.model import GPT, PRESETS, GPTConfig


def test_gpt2_124m_has_the_exact_gpt2_small_shape():
    config = GPTConfig.from_name("gpt2-124m")
    assert (config.n_layer, config.n_head, config.n_embd, config.block_size) == (12, 12, 768, 1024)
    assert config.num_params() == 124_439_808  # GPT-2 small with tied head, as in nanoGPT


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_counted_parameters_equal_the_built_model(name):
    config = GPTConfig.from_name(name)
    model = GPT(config)
    assert config.num_params() == model.num_params()
    assert config.param_breakdown() == model.param_breakdown()


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"n_embd": 30, "n_head": 4}, "n_embd"),
        ({"n_kv_head": 3, "n_head": 4, "n_embd": 32}, "n_kv_head"),
        ({"norm": "batchnorm"}, "norm"),
        ({"pos_emb": "alibi"}, "pos_emb"),
        ({"dropout": 1.5}, "dropout"),
        ({"vocab_size": 0}, "vocab_size"),
    ],
)
def test_invalid_configs_raise_a_clear_error_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        GPTConfig.from_name("debug", **overrides)


def test_unknown_preset_and_unknown_field_are_rejected():
    with pytest.raises(ValueError, match="unknown GPTConfig preset"):
        GPTConfig.from_name("gpt-7b")
    with pytest.raises(ValueError, match="n_layers"):
        GPTConfig.from_dict({**GPTConfig().to_dict(), "n_layers": 3})


def test_overrides_replace_preset_fields():
    config = GPTConfig.from_name("llama-20m", vocab_size=1000)
    assert config.vocab_size == 1000 and config.n_kv_head == 2 and config.mlp == "swiglu"


@pytest.mark.parametrize("budget", [300_000, 1_000_000, 2_000_000, 10_000_000])
@pytest.mark.parametrize("vocab_size", [96, 4096, 16384])
def test_for_budget_stays_within_the_budget(budget, vocab_size):
    if vocab_size * 16 > budget:
        with pytest.raises(ValueError, match="no GPT shape"):
            GPTConfig.for_budget(budget, vocab_size=vocab_size, block_size=256)
        return
    config = GPTConfig.for_budget(budget, vocab_size=vocab_size, block_size=256)
    assert config.num_params() <= budget
    assert config.num_params() > 0.5 * budget  # uses the budget rather than returning something tiny
    assert config.n_embd % config.n_head == 0


def test_for_budget_exact_count_matches_the_built_model():
    config = GPTConfig.for_budget(2_000_000, vocab_size=4096, block_size=128, pos_emb="rope")
    assert GPT(config).num_params() == config.num_params() <= 2_000_000


@pytest.mark.parametrize(
    "name, low, high",
    [("gpt-1m", 0.8e6, 1.2e6), ("gpt-2m", 1.7e6, 2.3e6), ("gpt-10m", 9e6, 11e6), ("gpt-30m", 28e6, 33e6)],
)
def test_size_presets_are_near_their_names(name, low, high):
    assert low <= GPTConfig.from_name(name).num_params() <= high
