"""``lightningllm export --format hf`` and ``--model.init_from`` of a transformers folder, as a user runs them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightningllm.checkpoint import EXPORT_MARKER, load_checkpoint
from lightningllm.cli import main
from lightningllm.data import Tokenizer
from lightningllm.interop.hf import load_hf
from lightningllm.model import GPT, GPTConfig, LoRAConfig
from lightningllm.training import LitGPT
from tests.conftest import run_cli

transformers = pytest.importorskip("transformers", reason="transformers is a test dependency (make test installs it)")

LLAMA = dict(norm="rmsnorm", mlp="swiglu", pos_emb="rope", bias=False, n_head=4, n_kv_head=2, n_embd=64)


class Blocks(L.LightningDataModule):
    """One batch of (16, 17) token blocks of a fixed pattern: an epoch is a step."""

    def setup(self, stage: str) -> None:
        starts = torch.arange(16)[:, None]
        self.dataset = TensorDataset((starts * 5 + 7 * torch.arange(17)[None, :]) % 48 + 7)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=16, shuffle=False)


def fit(module: LitGPT, root: Path, steps: int) -> L.Trainer:
    trainer = L.Trainer(
        max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, default_root_dir=root, enable_checkpointing=False,
    )  # fmt: skip
    trainer.fit(module, Blocks())
    return trainer


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A Llama-style base export (with a tokenizer), a LoRA run's checkpoint on it, and a full run's checkpoint."""
    root = tmp_path_factory.mktemp("export-command")
    torch.manual_seed(3)
    tokenizer = Tokenizer.train(["the quick brown fox 123 jumps over the lazy dog"] * 50, vocab_size=300)
    GPT(GPTConfig.from_name("debug", vocab_size=tokenizer.vocab_size, **LLAMA)).save_pretrained(root / "base")
    tokenizer.save(root / "base" / "tokenizer.json")
    lora = LoRAConfig(r=4, alpha=8, targets=("attn.*", "mlp.*"))
    module = LitGPT(init_from=str(root / "base"), lora=lora, learning_rate=2e-2, warmup_steps=0)
    fit(module, root, 4).save_checkpoint(root / "lora.ckpt")
    full = LitGPT(init_from=str(root / "base"), learning_rate=1e-2, warmup_steps=0)
    fit(full, root, 2).save_checkpoint(root / "full.ckpt")
    return {"root": root, "base": root / "base", "lora": root / "lora.ckpt", "full": root / "full.ckpt"}


def ids_for(config: GPTConfig) -> torch.Tensor:
    return torch.randint(0, config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))


def test_the_command_writes_a_folder_transformers_loads_with_our_logits(runs, tmp_path):
    out = tmp_path / "hf"
    result = run_cli("export", "--ckpt_path", str(runs["full"]), "--out", str(out), "--format", "hf", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    marker = json.loads((out / EXPORT_MARKER).read_text())["files"]
    assert sorted(marker) == sorted(p.name for p in out.iterdir() if p.name != EXPORT_MARKER)
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= set(marker)
    ours, _ = load_checkpoint(runs["full"])
    theirs = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        torch.testing.assert_close(theirs(ids_for(ours.config)).logits, ours(ids_for(ours.config)), atol=1e-4, rtol=0)
    (out / "NOTES.md").write_text("mine")  # a re-export (now native) replaces our files and keeps the user's
    main(["export", "--ckpt_path", str(runs["full"]), "--out", str(out)])
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [EXPORT_MARKER, "NOTES.md", "config.json", "model.safetensors", "tokenizer.json"]
    )
    assert (out / "NOTES.md").read_text() == "mine"


def test_peft_applies_the_exported_adapters_to_the_exported_base(runs, tmp_path):
    peft = pytest.importorskip("peft", reason="peft is a test dependency (make test installs it)")
    main(["export", "--ckpt_path", str(runs["base"]), "--out", str(tmp_path / "base-hf"), "--format", "hf"])
    main(["export", "--ckpt_path", str(runs["lora"]), "--format", "hf", "--adapter_only", "--out", str(tmp_path / "a")])
    merged, _ = load_checkpoint(runs["lora"])  # what the LoRA run computes
    base = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "base-hf")
    tuned = peft.PeftModel.from_pretrained(base, tmp_path / "a").eval()
    ids = ids_for(merged.config)
    with torch.no_grad():
        torch.testing.assert_close(tuned(ids).logits, merged(ids), atol=1e-4, rtol=0)
        assert (merged(ids) - GPT.from_pretrained(runs["base"]).eval()(ids)).abs().max() > 1e-3  # it did train


def test_fit_starts_from_a_transformers_folder(runs, tmp_path):
    main(["export", "--ckpt_path", str(runs["full"]), "--out", str(tmp_path / "hf"), "--format", "hf"])
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    hf.model.layers[0].mlp.up_proj.weight.data.mul_(1.5)  # changed in transformers, saved by transformers
    hf.save_pretrained(tmp_path / "edited")
    (tmp_path / "edited" / "tokenizer.json").write_bytes((tmp_path / "hf" / "tokenizer.json").read_bytes())
    expected, _ = load_hf(tmp_path / "edited")
    module = LitGPT(init_from=str(tmp_path / "edited"), learning_rate=1e-2, warmup_steps=0)
    module.build()
    assert module.model.config == expected.config
    for name, value in expected.state_dict().items():
        assert torch.equal(module.model.state_dict()[name], value), name
    fit(module, tmp_path, 1)
    assert not torch.equal(module.model.blocks[0].mlp.up.weight, expected.blocks[0].mlp.up.weight)  # and it trains


def test_the_command_writes_a_gguf_file_whole(runs, tmp_path, capsys):
    gguf = pytest.importorskip("gguf", reason="gguf is a test dependency (make test installs it)")
    out = tmp_path / "model.gguf"
    main(["export", "--ckpt_path", str(runs["lora"]), "--out", str(out), "--format", "gguf", "--quant", "q8_0"])
    assert "GGUF, q8_0" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["model.gguf"]  # no temporary file left beside it
    reader = gguf.GGUFReader(out)
    merged, _ = load_checkpoint(runs["lora"])  # the adapters are folded in
    embedding = next(t for t in reader.tensors if t.name == "token_embd.weight")
    assert embedding.tensor_type == gguf.GGMLQuantizationType.Q8_0
    values = gguf.dequantize(embedding.data, embedding.tensor_type).reshape(merged.wte.weight.shape)
    torch.testing.assert_close(torch.from_numpy(values), merged.wte.weight, atol=2e-3, rtol=0)


def _neox_export(tmp_path: Path) -> Path:
    folder = tmp_path / "neox"
    GPT(GPTConfig.from_name("debug", pos_emb="rope", vocab_size=300)).save_pretrained(folder)
    Tokenizer.train(["some text 12"] * 20, vocab_size=300).save(folder / "tokenizer.json")
    return folder


def _sinusoidal_export(tmp_path: Path) -> Path:
    folder = tmp_path / "sinusoidal"
    GPT(GPTConfig.from_name("debug", pos_emb="sinusoidal")).save_pretrained(folder)
    return folder


BAD = {
    "unknown_format": (lambda r, t: ["--ckpt_path", str(r["full"]), "--out", str(t / "o"), "--format", "onnx"],
                       "argument --format: invalid choice: 'onnx'"),
    "unknown_quant": (lambda r, t: ["--ckpt_path", str(r["full"]), "--out", str(t / "o.gguf"), "--format", "gguf",
                                    "--quant", "q4_k"], "argument --quant: invalid choice: 'q4_k'"),
    "quant_without_gguf": (lambda r, t: ["--ckpt_path", str(r["full"]), "--out", str(t / "o"), "--quant", "q8_0"],
                           "--quant applies to --format gguf only"),
    "bad_shard_size": (lambda r, t: ["--ckpt_path", str(r["full"]), "--out", str(t / "o"), "--format", "hf",
                                     "--max_shard_size", "lots"], "--max_shard_size 'lots' is not a size"),
    "existing_file_hf": (lambda r, t: ["--ckpt_path", str(r["full"]), "--out", str(t / "taken"), "--format", "hf"],
                         "exists and is not a folder"),
    "existing_file_gguf": (lambda r, t: ["--ckpt_path", str(r["full"]), "--out", str(t / "taken"), "--format",
                                         "gguf"], "exists: name a new .gguf file"),
    "inexpressible_shape": (lambda r, t: ["--ckpt_path", str(_sinusoidal_export(t)), "--out", str(t / "o"),
                                          "--format", "hf"], "pos_emb sinusoidal is not GPT-2-style"),
    "demo_shape_gguf": (lambda r, t: ["--ckpt_path", str(_neox_export(t)), "--out", str(t / "o.gguf"), "--format",
                                      "gguf"], "GGUF export supports Llama-style models only"),
    "adapter_only_gguf": (lambda r, t: ["--ckpt_path", str(r["lora"]), "--out", str(t / "o"), "--format", "gguf",
                                        "--adapter_only"], "--adapter_only writes peft adapters"),
    "adapters_of_a_full_run": (lambda r, t: ["--ckpt_path", str(r["full"]), "--out", str(t / "o"), "--format", "hf",
                                             "--adapter_only"], "trained no LoRA adapters"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD))
def test_bad_export_options_are_one_line_errors_that_write_nothing(case, runs, tmp_path, capsys):
    (tmp_path / "taken").write_text("someone's file")
    args = BAD[case][0](runs, tmp_path)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(SystemExit) as info:
        main(["export", *args])
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and BAD[case][1] in lines[0], lines
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    assert (tmp_path / "taken").read_text() == "someone's file"


def test_gguf_export_without_the_gguf_package_names_the_extra(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gguf", None)  # `import gguf` raises ImportError, as when it is not installed
    with pytest.raises(SystemExit) as info:
        main(["export", "--ckpt_path", str(runs["full"]), "--out", str(tmp_path / "m.gguf"), "--format", "gguf"])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "error: GGUF export needs the gguf package: pip install 'lightningllm[gguf]'"
    )
    assert not list(tmp_path.iterdir())
