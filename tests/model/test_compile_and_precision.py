"""GPT under torch.compile (CPU) and bf16 autocast (CPU here; CUDA where a GPU is present)."""

import pytest
import torch

from lightningllm.model import GPT, GPTConfig, generate


def tiny_llama() -> GPT:
    return GPT(GPTConfig.from_name("debug", norm="rmsnorm", mlp="swiglu", pos_emb="rope", n_head=4, n_kv_head=2))


def test_forward_has_no_graph_breaks():
    model = tiny_llama()
    idx = torch.randint(0, 128, (2, 16))
    explanation = torch._dynamo.explain(model)(idx, idx)
    assert explanation.graph_break_count == 0, explanation.break_reasons


def test_compiled_model_matches_eager_and_trains():
    model = tiny_llama()
    compiled = torch.compile(model)
    idx = torch.randint(0, 128, (2, 16))
    torch.testing.assert_close(compiled(idx), model(idx), atol=1e-5, rtol=1e-5)
    loss = compiled(idx, idx)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def _bf16_checks(model: GPT, device: str) -> None:
    idx = torch.randint(0, 128, (2, 24), device=device)
    fp32 = model(idx, idx).item()
    with torch.autocast(device, dtype=torch.bfloat16):
        bf16 = model(idx, idx)
        out = generate(model, [[1, 2, 3], [4, 5, 6, 7, 8]], max_new_tokens=5, temperature=0)
    assert torch.isfinite(bf16) and abs(bf16.item() - fp32) < 0.05
    bf16.backward()
    assert [len(o) for o in out] == [5, 5]


def test_bf16_autocast_on_cpu():
    _bf16_checks(tiny_llama(), "cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on a GPU machine: pytest -m gpu)")
def test_bf16_autocast_on_gpu():
    _bf16_checks(tiny_llama().cuda(), "cuda")
