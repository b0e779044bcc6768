import copy
import math

import pytest
import torch

from lightningllm.model import GPT, GPTConfig, Muon, lr_at, param_groups
from lightningllm.model.optim import orthogonalize


def train_steps(model: GPT, optimizer: torch.optim.Optimizer, batch: torch.Tensor, steps: int) -> float:
    for _ in range(steps):
        loss = model(batch[:, :-1], batch[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return loss.item()


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
    loss = train_steps(model, optimizer, batch, 150)
    assert initial > math.log(128) - 0.5
    assert loss < 0.3


# --- Muon ----------------------------------------------------------------------------------------


def test_muon_groups_hold_the_blocks_matrices_and_adamw_the_rest():
    model = GPT(GPTConfig.from_name("debug", tie_embeddings=False))
    groups = param_groups(model, 0.1, muon=True)
    names = {id(p): n for n, p in model.named_parameters()}
    by_kind = {}
    for group in groups:
        by_kind.setdefault(group["use_muon"], set()).update(names[id(p)] for p in group["params"])
    hidden = {n for n, p in model.named_parameters() if n.startswith("blocks.") and p.dim() == 2}
    assert by_kind[True] == hidden and "blocks.1.mlp.proj.weight" in hidden
    assert {"wte.weight", "wpe.weight", "lm_head.weight", "blocks.0.norm_1.weight"} <= by_kind[False]
    assert len(by_kind[True]) + len(by_kind[False]) == len(names)
    assert all(g["weight_decay"] == 0.1 for g in groups if g["use_muon"])


@pytest.mark.parametrize("shape", [(96, 32), (32, 96), (48, 48)])
def test_orthogonalize_brings_singular_values_near_one(shape):
    torch.manual_seed(0)
    rank = min(shape)
    u, _ = torch.linalg.qr(torch.randn(shape[0], rank))
    v, _ = torch.linalg.qr(torch.randn(shape[1], rank))
    update = 7.0 * u @ torch.diag(torch.logspace(-1.5, 0, rank)) @ v.T  # singular values 0.2 .. 7
    singular = torch.linalg.svdvals(orthogonalize(update))
    assert singular.min() > 0.6 and singular.max() < 1.25, singular
    # the same directions as the exact U @ V.T
    assert torch.nn.functional.cosine_similarity(orthogonalize(update).flatten(), (u @ v.T).flatten(), dim=0) > 0.95


def test_orthogonalize_a_stack_equals_each_matrix_alone():
    torch.manual_seed(0)
    stack = torch.randn(3, 40, 24)
    together = orthogonalize(stack)
    for matrix, result in zip(stack, together, strict=True):
        torch.testing.assert_close(result, orthogonalize(matrix), rtol=1e-4, atol=1e-5)


def test_muon_without_muon_groups_is_adamw():
    torch.manual_seed(0)
    model, reference = GPT(GPTConfig.from_name("debug")), GPT(GPTConfig.from_name("debug"))
    reference.load_state_dict(model.state_dict())
    batch = torch.randint(0, 128, (4, 17))
    kwargs = {"lr": 3e-3, "betas": (0.8, 0.9), "eps": 1e-6}
    train_steps(model, Muon(param_groups(model, 0.1), **kwargs), batch, 5)
    train_steps(reference, torch.optim.AdamW(param_groups(reference, 0.1), **kwargs), batch, 5)
    for (name, got), expected in zip(model.state_dict().items(), reference.state_dict().values(), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6, msg=name)


def test_muon_overfits_and_resumes_exactly_from_its_state_dict():
    torch.manual_seed(0)
    batch = torch.randint(0, 128, (4, 33))
    model = GPT(GPTConfig.from_name("debug", pos_emb="rope", bias=False))
    optimizer = Muon(param_groups(model, 0.0, muon=True), lr=3e-3)
    initial = model(batch[:, :-1], batch[:, 1:]).item()
    train_steps(model, optimizer, batch, 100)
    saved_model, saved_optimizer = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    loss = train_steps(model, optimizer, batch, 50)
    assert initial > math.log(128) - 0.5 and loss < 0.3

    resumed = GPT(GPTConfig.from_name("debug", pos_emb="rope", bias=False))
    resumed.load_state_dict(saved_model)
    resumed_optimizer = Muon(param_groups(resumed, 0.0, muon=True), lr=3e-3)
    resumed_optimizer.load_state_dict(saved_optimizer)
    train_steps(resumed, resumed_optimizer, batch, 50)
    for (name, got), expected in zip(resumed.state_dict().items(), model.state_dict().values(), strict=True):
        torch.testing.assert_close(got, expected, rtol=0, atol=0, msg=name)


def test_muon_refuses_non_matrix_parameters_in_a_muon_group():
    model = GPT(GPTConfig.from_name("debug"))
    with pytest.raises(ValueError, match="2-D"):
        Muon([{"params": [model.norm_f.weight], "use_muon": True}])
