"""LoRA through ``LitGPT``: only the adapters train, checkpoints hold them, export merges them, resume is checked.

A base model is saved as an export (``GPT.save_pretrained``), fine-tuned with ``LitGPT(init_from=...,
lora=...)`` on a plain ``Trainer``, and the results read back the ways a user reads them.
"""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightningllm.checkpoint import export_adapter, export_checkpoint, load_checkpoint
from lightningllm.model import GPT, GPTConfig, LoRAConfig, load_adapter
from lightningllm.model.lora import lora_layers
from lightningllm.training import LitGPT

VOCAB = 48


class Blocks(L.LightningDataModule):
    """(N, T + 1) token blocks of a pattern the base model has not seen: one batch, so an epoch is a step (a
    plain ``DataLoader`` has no position to resume at)."""

    def setup(self, stage: str) -> None:
        starts = torch.arange(16)[:, None]
        self.dataset = TensorDataset((starts * 5 + 7 * torch.arange(17)[None, :]) % VOCAB)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=16, shuffle=False)


@pytest.fixture
def base(tmp_path):
    """An export folder of a freshly initialized debug model (config.json, model.safetensors)."""
    torch.manual_seed(1)
    model = GPT(GPTConfig.from_name("debug", vocab_size=VOCAB))
    model.save_pretrained(tmp_path / "base")
    return tmp_path / "base"


def trainer(tmp_path, max_steps: int, **kwargs) -> L.Trainer:
    return L.Trainer(
        max_steps=max_steps, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, default_root_dir=tmp_path, **kwargs,
    )  # fmt: skip


def lora_module(base, **kwargs) -> LitGPT:
    lora = LoRAConfig(r=4, alpha=8, targets=("attn.*", "mlp.*"))
    return LitGPT(init_from=str(base), lora=lora, learning_rate=2e-2, warmup_steps=0, weight_decay=0.0, **kwargs)


def test_only_the_adapters_train_and_the_base_stays_bit_identical(base, tmp_path, capsys):
    start = GPT.from_pretrained(base).state_dict()
    module = lora_module(base)
    trainer(tmp_path, 8, enable_checkpointing=False).fit(module, Blocks())
    assert "lora: training 4,096 of" in capsys.readouterr().out  # reported at start-up
    state, adapted = module.model.state_dict(), lora_layers(module.model)
    assert len(adapted) == 2 * 2 + 2 * 2  # attn qkv, proj and mlp fc, proj in each of 2 blocks
    for name, tensor in start.items():  # every base weight, under its wrapped name where adapted
        path, _, leaf = name.rpartition(".")
        wrapped = f"{path}.base.{leaf}" if path in adapted else name
        assert torch.equal(state[wrapped], tensor), name
    trained = [n for n, p in module.model.named_parameters() if p.requires_grad]
    assert trained and all(".lora_A." in n or ".lora_B." in n for n in trained)
    assert any(state[n.replace("lora_A", "lora_B")].abs().sum() > 0 for n in trained if "lora_A" in n)  # B moved
    optimizer = module.optimizers().optimizer
    held = {id(p) for p in optimizer.state}
    assert held == {id(p) for p in module.model.parameters() if p.requires_grad}  # state for adapters only


def test_the_checkpoint_holds_adapters_and_export_writes_the_merged_model(base, tmp_path):
    module = lora_module(base)
    run = trainer(tmp_path, 6)
    run.fit(module, Blocks())
    ckpt = tmp_path / "lora.ckpt"
    run.save_checkpoint(ckpt)
    stored = torch.load(ckpt, weights_only=True)
    assert stored["lora"]["r"] == 4
    assert any(k.endswith("lora_B.weight") for k in stored["state_dict"])

    ids = torch.randint(0, VOCAB, (2, 16))
    module.model.eval()
    with torch.no_grad():
        expected = module.model(ids)
    exported = GPT.from_pretrained(export_checkpoint(ckpt, tmp_path / "merged")).eval()
    assert not any("lora" in name for name in exported.state_dict())
    torch.testing.assert_close(exported(ids), expected, atol=1e-5, rtol=0)
    loaded, _ = load_checkpoint(ckpt)  # what predict and validate read: the same merged model
    torch.testing.assert_close(loaded(ids), expected, atol=1e-5, rtol=0)

    adapter = export_adapter(ckpt, tmp_path / "adapter")  # the adapters alone, onto the base model
    assert sorted(p.name for p in adapter.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    on_base = GPT.from_pretrained(base)
    load_adapter(on_base, adapter)
    torch.testing.assert_close(on_base.eval()(ids), expected, atol=1e-5, rtol=0)


def test_a_full_model_checkpoint_has_no_adapters_to_export(base, tmp_path):
    module = LitGPT(init_from=str(base), warmup_steps=0)
    run = trainer(tmp_path, 1)
    run.fit(module, Blocks())
    run.save_checkpoint(tmp_path / "full.ckpt")
    with pytest.raises(ValueError, match="trained no LoRA adapters"):
        export_adapter(tmp_path / "full.ckpt", tmp_path / "adapter")


def test_resume_with_lora_equals_an_uninterrupted_run_and_other_lora_settings_are_refused(base, tmp_path):
    # A constant rate: the first run stops at step 3 of its own 3, the others run to 6.
    L.seed_everything(0)
    whole = lora_module(base, lr_schedule="constant")
    trainer(tmp_path / "whole", 6, enable_checkpointing=False).fit(whole, Blocks())

    L.seed_everything(0)
    first = lora_module(base, lr_schedule="constant")
    run = trainer(tmp_path / "first", 3, enable_checkpointing=False)
    run.fit(first, Blocks())
    run.save_checkpoint(tmp_path / "half.ckpt")
    resumed = lora_module(base, lr_schedule="constant")
    trainer(tmp_path / "second", 6, enable_checkpointing=False).fit(resumed, Blocks(), ckpt_path=tmp_path / "half.ckpt")
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)

    other = LitGPT(init_from=str(base), lora=LoRAConfig(r=2, alpha=8, targets=("attn.*", "mlp.*")), warmup_steps=0)
    with pytest.raises(ValueError, match="checkpoint trained with LoRA adapters r=4.*asks for r=2"):
        trainer(tmp_path / "other", 6, enable_checkpointing=False).fit(
            other, Blocks(), ckpt_path=tmp_path / "half.ckpt"
        )


def test_lora_is_refused_under_fsdp2_before_any_process_starts():
    from lightning.pytorch.strategies import ModelParallelStrategy

    module = LitGPT(lora=LoRAConfig(r=4))
    with pytest.raises(ValueError, match="model.lora under trainer.strategy ModelParallelStrategy"):
        module.check_strategy(ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1))


def test_the_command_line_and_yaml_set_lora(monkeypatch):
    from lightningllm.cli import build_cli
    from tests.conftest import CONFIGS

    monkeypatch.setattr("sys.argv", ["lightningllm"])
    args = ["--config", str(CONFIGS / "debug.yaml"), "--model.lora.r=16", "--model.lora.targets=[mlp.*]"]
    cli = build_cli(args, run=False)
    assert cli.model.lora == LoRAConfig(r=16, alpha=16.0, targets=("mlp.*",))
    cli = build_cli(["--config", str(CONFIGS / "lora-chat.yaml")], run=False)
    assert cli.model.lora.r == 8 and cli.model.lora.targets == ("attn.qkv", "attn.proj", "mlp.*")
