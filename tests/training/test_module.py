"""LitGPT on its own: the model it builds from the data contract, checkpoints across torch.compile, and the
optimizer and LR schedule it configures."""

from unittest.mock import Mock

import lightning as L
import pytest
import torch
from lightning.pytorch.strategies import FSDPStrategy

from lightningllm.data import Tokenizer
from lightningllm.data.contract import TokenDataModule
from lightningllm.model import GPTConfig, Muon, lr_at
from lightningllm.training import LitGPT


class Blocks(TokenDataModule):
    """The smallest data module that declares the contract: a tokenizer and a block size."""

    def __init__(self, block_size: int = 16):
        super().__init__()
        self.block_size = block_size
        self.tokenizer = Tokenizer.train(["abcdefghij 0123456789"], kind="char")

    def train_dataloader(self):
        blocks = torch.randint(0, self.tokenizer.vocab_size, (8, self.block_size + 1))
        return torch.utils.data.DataLoader(blocks, batch_size=4)


def built(config: GPTConfig | None = None, data: TokenDataModule | None = None, steps: int = 10, **kwargs) -> LitGPT:
    """A LitGPT built from ``data`` (as ``setup`` does), attached to a ``max_steps=steps`` trainer (lazily compiled)."""
    module = LitGPT(config or GPTConfig.from_name("debug"), **kwargs)
    module.build(data)
    module.configure_model()
    module.trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    return module


def test_the_vocabulary_comes_from_the_data_modules_tokenizer_when_unset():
    data = Blocks()
    module = built(GPTConfig.from_name("debug", vocab_size=None), data)
    assert module.model.config.vocab_size == data.tokenizer.vocab_size
    assert module.model.wte.num_embeddings == 64  # padded up to padding_multiple
    assert module.tokenizer is data.tokenizer and module.hparams.config["vocab_size"] == data.tokenizer.vocab_size


def test_a_vocabulary_smaller_than_the_tokenizer_or_a_longer_data_block_is_refused():
    with pytest.raises(ValueError, match="model.config.vocab_size 8 is smaller than the data's tokenizer"):
        built(GPTConfig.from_name("debug", vocab_size=8), Blocks())
    with pytest.raises(ValueError, match=r"data.block_size \(64\) is longer than model.config.block_size \(32\)"):
        built(GPTConfig.from_name("debug", vocab_size=None), Blocks(block_size=64))
    with pytest.raises(ValueError, match="model.config.vocab_size is not set and the data module has no tokenizer"):
        built(GPTConfig.from_name("debug", vocab_size=None))


def save(module: LitGPT, path) -> None:
    """What Lightning writes: the state dict and hyperparameters, after the module's ``on_save_checkpoint``."""
    checkpoint = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "pytorch-lightning_version": L.__version__,
    }
    module.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)


@pytest.mark.parametrize("saved_compiled, loaded_compiled", [(True, False), (False, True), (True, True)])
def test_checkpoints_load_across_torch_compile(tmp_path, saved_compiled, loaded_compiled):
    source = built(compile=saved_compiled)
    save(source, tmp_path / "model.ckpt")
    keys = torch.load(tmp_path / "model.ckpt", weights_only=True)["state_dict"].keys()
    assert not any("_orig_mod." in k for k in keys)  # the file is the same either way

    loaded = LitGPT.load_from_checkpoint(tmp_path / "model.ckpt", compile=loaded_compiled)  # strict loading
    loaded.configure_model()
    idx = torch.randint(0, 128, (2, 8))
    torch.testing.assert_close(loaded(idx), source(idx), rtol=1e-5, atol=1e-5)  # through the compiled call, if any
    expected, got = source.model.state_dict(), loaded.model.state_dict()
    assert expected.keys() == got.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(got[name], tensor, rtol=0, atol=0, msg=name)


# --- optimizer and learning-rate schedule --------------------------------------------------------


def optimizer_and_lrs(steps: int = 110, **kwargs) -> tuple[LitGPT, torch.optim.Optimizer, list[float]]:
    """Configure the module's optimizer and scheduler for a ``max_steps=steps`` run; the LR at each step."""
    module = built(steps=steps, **kwargs)
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "step"
    lrs = []
    for _ in range(steps + 5):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return module, optimizer, lrs


@pytest.mark.parametrize("schedule", ["cosine", "linear", "constant"])
def test_schedule_through_the_modules_scheduler(schedule):
    args = {"learning_rate": 1e-3, "min_lr": 1e-4, "warmup_steps": 10, "lr_schedule": schedule}
    _, _, lrs = optimizer_and_lrs(110, **args)
    assert lrs[0] == pytest.approx(1e-4)  # warmup starts at learning_rate / warmup_steps
    assert lrs[9] == pytest.approx(1e-3) and max(lrs) == pytest.approx(1e-3)
    end = 1e-3 if schedule == "constant" else 1e-4
    assert lrs[110] == pytest.approx(end) and lrs[-1] == pytest.approx(end)  # decayed over trainer.max_steps
    expected = [lr_at(s, 1e-3, 10, 110, 1e-4, schedule) for s in range(len(lrs))]
    assert lrs == pytest.approx(expected)
    if schedule == "cosine":
        assert lrs[60] == pytest.approx(1e-4 + 0.5 * 9e-4)  # halfway through the decay


def test_train_minutes_decays_over_the_wall_clock_budget():
    module = built(steps=1000, learning_rate=1e-3, min_lr=1e-4, warmup_steps=0, train_minutes=2.0)
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    module.clock.seconds = 60.0  # half the budget spent, whatever the step
    optimizer.step()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-4 + 0.5 * 9e-4)


def test_with_max_steps_and_train_minutes_the_schedule_follows_the_nearer_end():
    module = built(steps=100, learning_rate=1e-3, min_lr=1e-4, warmup_steps=0, train_minutes=2.0)
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    for _ in range(50):  # half the steps, no time spent: the step budget is nearer its end
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-4 + 0.5 * 9e-4)
    module.clock.seconds = 108.0  # 90% of the time budget: now the clock is nearer
    optimizer.step()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(lr_at(0, 1e-3, 0, 1, 1e-4, progress=0.9))


def test_adamw_gets_betas_eps_and_decays_matmul_weights_only():
    module, optimizer, _ = optimizer_and_lrs(10, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.05)
    assert isinstance(optimizer, torch.optim.AdamW)
    decay, no_decay = optimizer.param_groups
    assert decay["betas"] == (0.8, 0.9) and decay["eps"] == 1e-6 and no_decay["betas"] == (0.8, 0.9)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    names = {id(p): name for name, p in module.model.named_parameters()}
    decayed, kept = {names[id(p)] for p in decay["params"]}, {names[id(p)] for p in no_decay["params"]}
    assert {"blocks.0.attn.qkv.weight", "blocks.1.mlp.fc.weight"} <= decayed
    assert {"wte.weight", "wpe.weight", "blocks.0.norm_1.weight", "blocks.0.attn.qkv.bias", "norm_f.weight"} <= kept
    assert len(decayed) + len(kept) == len(names)


def test_muon_option_steps_block_matrices_with_muon_on_the_same_schedule():
    module, optimizer, lrs = optimizer_and_lrs(110, optimizer="muon", learning_rate=1e-3, min_lr=1e-4, warmup_steps=10)
    assert isinstance(optimizer, Muon)
    muon_groups = [g for g in optimizer.param_groups if g["use_muon"]]
    assert len(muon_groups) == 1 and muon_groups[0]["weight_decay"] == 0.1
    names = {id(p): name for name, p in module.model.named_parameters()}
    assert {names[id(p)] for p in muon_groups[0]["params"]} == {
        name for name, p in module.model.named_parameters() if name.startswith("blocks.") and p.dim() == 2
    }
    params = [p for g in optimizer.param_groups for p in g["params"]]
    assert len(params) == len({id(p) for p in params}) == len(names)
    assert lrs == pytest.approx([lr_at(s, 1e-3, 10, 110, 1e-4) for s in range(len(lrs))])
    assert {g["lr"] for g in optimizer.param_groups} == {lrs[-1]}  # every group follows the schedule


def test_muon_is_refused_under_a_sharding_strategy(monkeypatch):
    module = built(optimizer="muon")
    # Lightning's FSDP needs a GPU to construct; the guard only asks what kind of strategy runs.
    monkeypatch.setattr(L.Trainer, "strategy", property(lambda self: Mock(spec=FSDPStrategy)))
    with pytest.raises(ValueError, match="model.optimizer=muon needs whole weight matrices"):
        module.configure_optimizers()


def test_optimizer_covers_every_parameter_once_when_compiled():
    module = built(compile=True)
    groups = module.configure_optimizers()["optimizer"].param_groups
    params = [p for g in groups for p in g["params"]]
    assert len(params) == len({id(p) for p in params}) == len(list(module.parameters()))


def test_a_budget_that_would_outlast_max_steps_leaves_the_step_schedule_exact():
    # A machine fast enough for the recipe: the run must not depend on its speed (it once did right after
    # warmup, where the step-based position is 0 and any time spent already looked nearer the end).
    module = built(steps=110, learning_rate=1e-3, min_lr=1e-4, warmup_steps=10, train_minutes=60.0)
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    lrs = []
    for step in range(110):
        module.clock.seconds = 0.5 * (step + 1)  # 2 steps a second: 110 steps take 1 of the 60 minutes
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([lr_at(s, 1e-3, 10, 110, 1e-4) for s in range(110)], rel=1e-12)
