"""Behaviour of the pure-PyTorch GPT: shapes, causality, KV cache, RoPE, GQA, tying, generation."""

import pytest
import torch

from lightningllm.model import GPT, IGNORE_INDEX, GPTConfig, generate
from lightningllm.model.layers import apply_rope, rope_cache

VARIANTS = {
    "gpt2": {},
    "llama": {"norm": "rmsnorm", "mlp": "swiglu", "pos_emb": "rope", "bias": False, "n_kv_head": 1},
    "sinusoidal": {"pos_emb": "sinusoidal", "tie_embeddings": False},
    "rope-gqa": {"pos_emb": "rope", "n_head": 4, "n_kv_head": 2},
}


def tiny(**overrides) -> GPTConfig:
    return GPTConfig.from_name("debug", **overrides)


@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_shapes_and_loss(variant):
    model = GPT(tiny(**VARIANTS[variant]))
    idx = torch.randint(0, 128, (3, 17))
    assert model(idx).shape == (3, 17, 128)
    loss = model(idx, idx)
    assert loss.shape == () and torch.isfinite(loss)


@pytest.mark.parametrize("variant", VARIANTS)
def test_changing_a_future_token_never_changes_past_logits(variant):
    model = GPT(tiny(**VARIANTS[variant])).eval()
    idx = torch.randint(0, 128, (2, 20))
    changed = idx.clone()
    changed[:, 12] = (changed[:, 12] + 1) % 128
    a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :12], b[:, :12])
    assert not torch.allclose(a[:, 12:], b[:, 12:])


@pytest.mark.parametrize("variant", VARIANTS)
def test_kv_cache_decoding_equals_the_full_forward(variant):
    model = GPT(tiny(**VARIANTS[variant])).eval()
    idx = torch.randint(0, 128, (3, 24))
    full = model(idx)
    model.setup_kv_cache(batch_size=3, max_seq_len=24)
    steps = [model(idx[:, :8], start=0)]
    steps += [model(idx[:, t : t + 1], start=t) for t in range(8, 24)]
    model.clear_kv_cache()
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)


def test_left_padded_batch_generation_equals_one_prompt_at_a_time():
    model = GPT(tiny(pos_emb="rope", n_head=4, n_kv_head=2)).eval()
    prompts = [[5, 6, 7], [1, 2, 3, 4, 5, 6, 7, 8, 9], [42]]
    batched = generate(model, prompts, max_new_tokens=6, temperature=0)
    alone = [generate(model, [p], max_new_tokens=6, temperature=0)[0] for p in prompts]
    assert batched == alone
    assert generate(model, prompts, max_new_tokens=6, temperature=0, use_kv_cache=False) == alone


def test_gqa_with_as_many_kv_heads_as_heads_is_plain_multi_head_attention():
    torch.manual_seed(1)
    mha = GPT(tiny(n_head=4, n_kv_head=None, pos_emb="rope")).eval()
    gqa = GPT(tiny(n_head=4, n_kv_head=4, pos_emb="rope")).eval()
    gqa.load_state_dict(mha.state_dict())
    idx = torch.randint(0, 128, (2, 16))
    torch.testing.assert_close(gqa(idx), mha(idx))


def test_rope_attention_scores_depend_only_on_relative_position():
    head_size = 16
    cos, sin = rope_cache(64, head_size, base=10000.0)
    q, k = torch.randn(1, 1, 1, head_size), torch.randn(1, 1, 1, head_size)

    def score(i, j):
        qi = apply_rope(q, cos[i : i + 1], sin[i : i + 1])
        kj = apply_rope(k, cos[j : j + 1], sin[j : j + 1])
        return (qi * kj).sum().item()

    assert score(10, 7) == pytest.approx(score(40, 37), abs=1e-4)
    assert score(5, 5) == pytest.approx(score(50, 50), abs=1e-4)
    assert score(10, 7) != pytest.approx(score(10, 2), abs=1e-4)


def test_tied_embeddings_share_storage_and_untied_do_not():
    tied = GPT(tiny(tie_embeddings=True))
    assert tied.lm_head.weight.data_ptr() == tied.wte.weight.data_ptr()
    untied = GPT(tiny(tie_embeddings=False))
    assert untied.lm_head.weight.data_ptr() != untied.wte.weight.data_ptr()
    assert untied.num_params() == tied.num_params() + 128 * 32


@pytest.mark.parametrize("variant", VARIANTS)
def test_measured_parameter_breakdown_equals_the_configs_count(variant):
    config = tiny(**VARIANTS[variant])
    model = GPT(config)
    assert model.param_breakdown() == config.param_breakdown()  # measured by name vs counted from the shape
    assert sum(model.param_breakdown().values()) == sum(p.numel() for p in model.parameters())
    assert f"{config.num_params():,}" in model.breakdown_table().splitlines()[-1]


def test_chunked_loss_equals_plain_cross_entropy_and_skips_ignored_targets():
    model = GPT(tiny())
    idx = torch.randint(0, 128, (4, 32))
    targets = torch.randint(0, 128, (4, 32))
    targets[:, :10] = IGNORE_INDEX
    hidden = {}
    model.norm_f.register_forward_hook(lambda module, args, out: hidden.update(x=out))
    logits = model(idx)
    expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(model(idx, targets), expected)
    chunked = model._chunked_loss(hidden["x"], targets, chunk_tokens=50, min_elements=0)
    torch.testing.assert_close(chunked, expected)


def test_greedy_generation_is_reproducible_and_seeded_sampling_too():
    model = GPT(tiny()).eval()
    prompt = [[3, 1, 4, 1, 5]]
    assert generate(model, prompt, 10, temperature=0) == generate(model, prompt, 10, temperature=0)
    a = generate(model, prompt, 10, temperature=1.0, top_k=20, seed=7)
    b = generate(model, prompt, 10, temperature=1.0, top_k=20, seed=7)
    c = generate(model, prompt, 10, temperature=1.0, top_k=20, seed=8)
    assert a == b and a != c


def test_generation_stops_each_sequence_at_eos():
    model = GPT(tiny()).eval()
    prompts = [[1, 2, 3], [9, 8, 7, 6]]
    free = generate(model, prompts, 8, temperature=0)
    eos = free[0][2]  # a token the first sequence emits at step 3
    out = generate(model, prompts, 8, temperature=0, eos_id=eos)
    for row, unstopped in zip(out, free, strict=True):
        cut = unstopped.index(eos) + 1 if eos in unstopped else len(unstopped)
        assert row == unstopped[:cut]  # each row stops at its own EOS, and only there
    assert out[0][-1] == eos and len(out[0]) < 8


def test_too_long_prompt_raises_or_is_cropped_explicitly():
    model = GPT(tiny(block_size=16)).eval()
    with pytest.raises(ValueError, match="block_size"):
        generate(model, [list(range(20))], 4)
    out = generate(model, [list(range(20))], 4, temperature=0, on_prompt_too_long="crop")
    assert out == generate(model, [list(range(8, 20))], 4, temperature=0)
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_activation_checkpointing_gives_the_same_gradients():
    torch.manual_seed(3)
    plain = GPT(tiny(pos_emb="rope"))
    checkpointed = GPT(tiny(pos_emb="rope"))
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.activation_checkpointing = True
    idx = torch.randint(0, 128, (2, 16))
    plain(idx, idx).backward()
    checkpointed(idx, idx).backward()
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_save_and_load_pretrained_round_trip(tmp_path):
    model = GPT(tiny(pos_emb="rope")).eval()
    model.save_pretrained(tmp_path / "export")
    loaded = GPT.from_pretrained(tmp_path / "export").eval()
    idx = torch.randint(0, 128, (1, 10))
    torch.testing.assert_close(loaded(idx), model(idx))
    with pytest.raises(FileNotFoundError, match="config.json"):
        GPT.from_pretrained(tmp_path)


def test_a_batch_whose_targets_are_all_ignored_has_loss_zero_and_zero_gradients(tiny_config):
    # A data-parallel rank's share of a padded last step can hold no trained target: it must add nothing, not NaN.
    model = GPT(tiny_config)
    idx = torch.randint(0, tiny_config.vocab_size, (2, 8))
    loss = model(idx, torch.full((2, 8), IGNORE_INDEX))
    loss.backward()
    assert loss.item() == 0.0
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in model.parameters() if p.grad is not None)
