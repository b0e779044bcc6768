"""LoRA: only adapters train and the base stays bit-identical, merge/unmerge, target selection, peft-named
adapter files that load back, optimizer state for adapters only, and KV-cache decoding with adapters."""

import json
import math

import pytest
import torch

from lightningllm.model import (
    GPT,
    GPTConfig,
    LoRAConfig,
    LoRALinear,
    apply_lora,
    load_adapter,
    lora_state_dict,
    merge_lora,
    merged_state_dict,
    param_groups,
    save_adapter,
    trainable_parameters,
    unmerge_lora,
)
from lightningllm.model.lora import lora_layers

ALL = ("attn.*", "mlp.*")


def tiny(**overrides) -> GPT:
    return GPT(GPTConfig.from_name("debug", **overrides))


def batch(vocab: int = 128, B: int = 2, T: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.randint(0, vocab, (B, T + 1))
    return idx[:, :-1], idx[:, 1:]


def train(gpt: GPT, steps: int = 3, lr: float = 1e-2) -> torch.optim.AdamW:
    optimizer = torch.optim.AdamW(param_groups(gpt, weight_decay=0.1), lr=lr)
    x, y = batch()
    for _ in range(steps):
        gpt(x, y).backward()
        optimizer.step()
        optimizer.zero_grad()
    return optimizer


def base_snapshot(gpt: GPT) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in gpt.named_parameters() if "lora_" not in n}


@pytest.mark.parametrize("mlp", ["gelu", "swiglu"])
def test_only_adapters_train_and_the_base_stays_bit_identical(mlp):
    gpt = tiny(mlp=mlp)
    weight = gpt.blocks[0].attn.qkv.weight
    apply_lora(gpt, LoRAConfig(r=4, alpha=8, targets=ALL))
    assert gpt.blocks[0].attn.qkv.base.weight is weight  # the very same tensor, wrapped
    trainable = {n for n, p in gpt.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    before = base_snapshot(gpt)
    adapters_before = {n: t.clone() for n, t in lora_state_dict(gpt).items()}
    x, y = batch()
    gpt(x, y).backward()
    assert all((p.grad is not None) == p.requires_grad for p in gpt.parameters())
    gpt.zero_grad()
    train(gpt)
    for name, param in gpt.named_parameters():
        if "lora_" not in name:
            assert torch.equal(param, before[name]), name
    for name, tensor in lora_state_dict(gpt).items():
        assert not torch.equal(tensor, adapters_before[name]), name


def test_zero_initialized_b_leaves_the_logits_unchanged():
    gpt = tiny().eval()
    x, _ = batch()
    expected = gpt(x)
    apply_lora(gpt, LoRAConfig(r=4, targets=ALL))
    assert torch.equal(gpt(x), expected)


def test_merged_logits_equal_unmerged_and_unmerge_restores_the_base_exactly():
    gpt = tiny()
    apply_lora(gpt, LoRAConfig(r=4, alpha=8, dropout=0.1, targets=ALL))
    train(gpt)
    gpt.eval()
    base = base_snapshot(gpt)
    x, _ = batch()
    unmerged = gpt(x)
    merge_lora(gpt)
    assert all(layer.merged for layer in lora_layers(gpt).values())
    torch.testing.assert_close(gpt(x), unmerged, atol=1e-5, rtol=0)
    merge_lora(gpt)  # a second merge does nothing
    torch.testing.assert_close(gpt(x), unmerged, atol=1e-5, rtol=0)
    unmerge_lora(gpt)
    for name, param in gpt.named_parameters():
        if "lora_" not in name:
            assert torch.equal(param, base[name]), name
    assert torch.equal(gpt(x), unmerged)


def test_merged_state_dict_loads_into_a_plain_gpt_with_the_same_logits():
    gpt = tiny()
    apply_lora(gpt, LoRAConfig(r=4, targets=ALL))
    train(gpt)
    gpt.eval()
    plain = GPT(gpt.config).eval()
    plain.load_state_dict(merged_state_dict(gpt))  # strict: exactly a GPT's names
    x, _ = batch()
    torch.testing.assert_close(plain(x), gpt(x), atol=1e-5, rtol=0)
    assert plain.lm_head.weight is plain.wte.weight
    assert not any(layer.merged for layer in lora_layers(gpt).values())  # the LoRA model is untouched


@pytest.mark.parametrize(("rslora", "expected"), [(False, 16 / 4), (True, 16 / math.sqrt(4))])
def test_scaling_is_alpha_over_r_or_over_sqrt_r_with_rslora(rslora, expected):
    config = LoRAConfig(r=4, alpha=16, rslora=rslora)
    assert config.scaling == expected
    layer = LoRALinear(torch.nn.Linear(8, 6), r=4, alpha=16, rslora=rslora)
    assert layer.scaling == expected
    torch.nn.init.normal_(layer.lora_B.weight)
    x = torch.randn(3, 8)
    delta = layer(x) - layer.base(x)
    torch.testing.assert_close(delta, x @ layer.lora_A.weight.T @ layer.lora_B.weight.T * expected)
    torch.testing.assert_close(layer.delta_weight(), layer.lora_B.weight @ layer.lora_A.weight * expected)


@pytest.mark.parametrize(
    ("mlp", "targets", "expected"),
    [
        ("gelu", ("attn.*",), {"attn.qkv", "attn.proj"}),
        ("gelu", ("mlp.*",), {"mlp.fc", "mlp.proj"}),
        ("swiglu", ("mlp.*",), {"mlp.gate", "mlp.up", "mlp.proj"}),
        ("gelu", ("proj",), {"attn.proj", "mlp.proj"}),
        ("gelu", ("attn.qkv",), {"attn.qkv"}),
    ],
)
def test_targets_select_attention_or_mlp_linears(mlp, targets, expected):
    gpt = apply_lora(tiny(mlp=mlp), LoRAConfig(targets=targets))
    paths = list(lora_layers(gpt))
    assert {p.split(".", 2)[2] for p in paths} == expected
    assert len(paths) == len(expected) * gpt.config.n_layer
    assert "lm_head" not in " ".join(paths)


def test_a_target_for_one_layer_adapts_only_it():
    gpt = apply_lora(tiny(), LoRAConfig(targets=("blocks.1.attn.qkv",)))
    assert list(lora_layers(gpt)) == ["blocks.1.attn.qkv"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"r": 0}, r"lora\.r must be a positive integer, got 0"),
        ({"r": 2.5}, r"lora\.r must be a positive integer"),
        ({"alpha": float("inf")}, r"lora\.alpha must be a finite number"),
        ({"dropout": 1.0}, r"lora\.dropout must be in \[0, 1\), got 1.0"),
        ({"targets": ()}, r"lora\.targets must be one or more"),
    ],
)
def test_a_bad_lora_field_is_one_line_naming_it(fields, message):
    with pytest.raises(ValueError, match=message) as err:
        LoRAConfig(**fields)
    assert "\n" not in str(err.value)


def test_a_target_matching_no_linear_is_an_error_naming_it():
    gpt = tiny()
    with pytest.raises(ValueError, match=r"lora\.targets: 'mlp\.gate' matches no linear") as err:
        apply_lora(gpt, LoRAConfig(targets=("attn.*", "mlp.gate")))
    assert "\n" not in str(err.value)
    assert not lora_layers(gpt) and all(p.requires_grad for p in gpt.parameters())  # nothing changed
    apply_lora(gpt, LoRAConfig())
    with pytest.raises(ValueError, match="has LoRA adapters already"):
        apply_lora(gpt, LoRAConfig())


def test_trainable_parameters_counts_the_adapters_and_the_total():
    gpt = tiny()
    total = gpt.num_params()
    config = LoRAConfig(r=4, targets=("attn.qkv",))
    apply_lora(gpt, config)
    c = gpt.config
    qkv_out = (c.n_head + 2 * c.n_kv_head) * c.head_size
    adapters = c.n_layer * config.r * (c.n_embd + qkv_out)
    assert trainable_parameters(gpt) == (adapters, total + adapters)
    assert sum(gpt.param_breakdown().values()) == total + adapters


def test_the_optimizer_holds_state_for_the_adapters_only():
    gpt = apply_lora(tiny(), LoRAConfig(r=4, targets=ALL))
    optimizer = train(gpt, steps=1)
    adapters = {id(p) for n, p in gpt.named_parameters() if "lora_" in n}
    grouped = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert grouped == adapters
    assert {id(p) for p in optimizer.state} == adapters


def test_adapter_files_use_peft_names_shapes_and_config_keys(tmp_path):
    gpt = tiny(mlp="swiglu")
    config = LoRAConfig(r=4, alpha=8, dropout=0.05, targets=("attn.qkv", "mlp.up"), rslora=True)
    apply_lora(gpt, config)
    save_adapter(gpt, config, tmp_path, base_model_name_or_path="out/base")
    from safetensors.torch import load_file

    tensors = load_file(tmp_path / "adapter_model.safetensors")
    c = gpt.config
    qkv_out = (c.n_head + 2 * c.n_kv_head) * c.head_size
    expected = {}
    for i in range(c.n_layer):
        expected[f"base_model.model.blocks.{i}.attn.qkv.lora_A.weight"] = (4, c.n_embd)
        expected[f"base_model.model.blocks.{i}.attn.qkv.lora_B.weight"] = (qkv_out, 4)
        expected[f"base_model.model.blocks.{i}.mlp.up.lora_A.weight"] = (4, c.n_embd)
        expected[f"base_model.model.blocks.{i}.mlp.up.lora_B.weight"] = (c.mlp_hidden, 4)
    assert {name: tuple(t.shape) for name, t in tensors.items()} == expected
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["peft_type"] == "LORA" and saved["task_type"] == "CAUSAL_LM" and saved["bias"] == "none"
    assert (saved["r"], saved["lora_alpha"], saved["lora_dropout"], saved["use_rslora"]) == (4, 8, 0.05, True)
    assert saved["base_model_name_or_path"] == "out/base"
    assert saved["target_modules"] == [f"blocks.{i}.{m}" for i in range(c.n_layer) for m in ("attn.qkv", "mlp.up")]


def test_saved_adapters_load_into_a_fresh_gpt_with_the_same_logits(tmp_path):
    gpt = tiny()
    base_state = {k: v.clone() for k, v in gpt.state_dict().items()}
    config = LoRAConfig(r=4, alpha=8, targets=ALL)
    apply_lora(gpt, config)
    train(gpt)
    gpt.eval()
    save_adapter(gpt, config, tmp_path)
    fresh = tiny()
    fresh.load_state_dict(base_state)
    loaded = load_adapter(fresh, tmp_path)
    assert (loaded.r, loaded.alpha, loaded.rslora) == (4, 8, False)
    fresh.eval()
    x, _ = batch()
    assert torch.equal(fresh(x), gpt(x))
    assert trainable_parameters(fresh) == trainable_parameters(gpt)


def test_adapter_files_that_do_not_fit_the_model_are_refused_in_one_line(tmp_path):
    gpt = tiny()
    config = LoRAConfig(r=4, targets=("attn.qkv",))
    save_adapter(apply_lora(gpt, config), config, tmp_path)
    wider = tiny(n_embd=64)
    with pytest.raises(ValueError, match=r"adapter_model\.safetensors: .*lora_A\.weight has shape \[4, 32\]") as err:
        load_adapter(wider, tmp_path)
    assert "\n" not in str(err.value) and not lora_layers(wider)
    with pytest.raises(ValueError, match=r"adapter_config\.json: lora\.targets: 'blocks\.1\.attn\.qkv' matches no"):
        load_adapter(tiny(n_layer=1), tmp_path)  # one block fewer than the adapters were trained on
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    (tmp_path / "adapter_config.json").write_text(json.dumps({**saved, "r": 8}))
    with pytest.raises(
        ValueError, match=r"adapter_model\.safetensors: .* has shape \[4, 32\], the model needs \[8, 32\]"
    ):
        load_adapter(tiny(), tmp_path)
    (tmp_path / "adapter_config.json").write_text(json.dumps({**saved, "peft_type": "IA3"}))
    with pytest.raises(ValueError, match=r"adapter_config\.json: peft_type must be 'LORA'"):
        load_adapter(tiny(), tmp_path)
    (tmp_path / "adapter_config.json").write_text(json.dumps({**saved, "r": 0}))
    with pytest.raises(ValueError, match=r"adapter_config\.json: lora\.r must be a positive integer"):
        load_adapter(tiny(), tmp_path)


@pytest.mark.parametrize("pos_emb", ["learned", "rope"])
def test_kv_cache_decoding_with_adapters_equals_the_full_forward(pos_emb):
    gpt = tiny(pos_emb=pos_emb)
    apply_lora(gpt, LoRAConfig(r=4, targets=ALL))
    for layer in lora_layers(gpt).values():
        torch.nn.init.normal_(layer.lora_B.weight, std=0.1)  # a non-zero update
    gpt.eval()
    x, _ = batch()
    with torch.no_grad():
        full = gpt(x)
        gpt.setup_kv_cache(x.size(0))
        steps = [gpt(x[:, :8], start=0)] + [gpt(x[:, t : t + 1], start=t) for t in range(8, x.size(1))]
        gpt.clear_kv_cache()
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
