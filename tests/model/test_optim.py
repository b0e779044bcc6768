import math

import pytest
import torch

from lightningllm.model import GPT, GPTConfig, lr_at, param_groups


def test_weight_decay_applies_to_matmul_weights_only():
    model = GPT(GPTConfig.from_name("debug", tie_embeddings=False))
    decay, no_decay = param_groups(model, weight_decay=0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    kept = {names[id(p)] for p in no_decay["params"]}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert "lm_head.weight" in decayed and "blocks.0.attn.qkv.weight" in decayed
    assert {"wte.weight", "wpe.weight", "blocks.0.norm_1.weight", "blocks.0.attn.qkv.bias"} <= kept
    assert len(decayed) + len(kept) == len(list(model.parameters()))


def test_tied_embedding_is_not_decayed_and_appears_once():
    model = GPT(GPTConfig.from_name("debug", tie_embeddings=True))
    groups = param_groups(model, 0.1)
    all_params = [p for g in groups for p in g["params"]]
    assert len(all_params) == len({id(p) for p in all_params}) == len(list(model.parameters()))
    assert any(p is model.wte.weight for p in groups[1]["params"])


def test_cosine_schedule_values():
    kw = {"max_lr": 1e-3, "warmup_steps": 10, "total_steps": 110, "min_lr": 1e-4}
    assert lr_at(0, **kw) == pytest.approx(1e-4)
    assert lr_at(9, **kw) == pytest.approx(1e-3)
    assert lr_at(10, **kw) == pytest.approx(1e-3)
    assert lr_at(60, **kw) == pytest.approx(1e-4 + 0.5 * 9e-4)
    assert lr_at(110, **kw) == pytest.approx(1e-4)
    assert lr_at(500, **kw) == pytest.approx(1e-4)  # past the end: stays at min_lr
    values = [lr_at(s, **kw) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_linear_and_constant_schedules():
    assert lr_at(55, 1.0, 5, 105, 0.0, "linear") == pytest.approx(0.5)
    assert lr_at(1000, 1.0, 5, 105, 0.0, "constant") == 1.0
    with pytest.raises(ValueError, match="schedule"):
        lr_at(50, 1.0, 5, 105, 0.0, "exponential")


@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"norm": "rmsnorm", "mlp": "swiglu", "pos_emb": "rope", "bias": False, "n_kv_head": 1},
        {"pos_emb": "sinusoidal", "tie_embeddings": False},
        {"pos_emb": "rope", "n_head": 4, "n_kv_head": 2},
    ],
    ids=["gpt2", "llama", "sinusoidal", "rope-gqa"],
)
def test_each_variant_overfits_a_tiny_batch(variant):
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_name("debug", **variant))
    batch = torch.randint(0, 128, (4, 33))
    optimizer = torch.optim.AdamW(param_groups(model, 0.0), lr=3e-3)
    initial = model(batch[:, :-1], batch[:, 1:]).item()
    for _ in range(150):
        loss = model(batch[:, :-1], batch[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert initial > math.log(128) - 0.5
    assert loss.item() < 0.3
