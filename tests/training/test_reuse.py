"""Our pieces in someone else's Lightning project: a plain ``Trainer``, no CLI, the user's own other half.

(a) the user's ``LightningDataModule`` of token blocks feeds our ``LitGPT``;
(b) our ``TextDataModule`` feeds the user's own ``LightningModule``.
"""

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightningllm.checkpoint import export_checkpoint
from lightningllm.data import TextDataModule
from lightningllm.model import GPT, IGNORE_INDEX, GPTConfig
from lightningllm.training import LitGPT

VOCAB = 48


class LossHistory(L.Callback):
    def __init__(self):
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def plain_trainer(max_steps: int, callbacks: list) -> L.Trainer:
    return L.Trainer(
        max_steps=max_steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, callbacks=callbacks,
    )  # fmt: skip


class CountingBlocks(L.LightningDataModule):
    """A user's data module: (N, T + 1) blocks of a repeating pattern, as a ``TensorDataset`` (no tokenizer)."""

    def __init__(self, block_size: int = 16, pairs: bool = False):
        super().__init__()
        self.block_size, self.pairs = block_size, pairs

    def setup(self, stage: str) -> None:
        starts = torch.arange(256)[:, None]
        blocks = (starts + 3 * torch.arange(self.block_size + 1)[None, :]) % VOCAB  # (N, T + 1)
        tensors = (blocks[:, :-1], blocks[:, 1:]) if self.pairs else (blocks,)
        self.dataset = TensorDataset(*tensors)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=16, shuffle=True)


def test_users_data_module_trains_our_litgpt_without_a_tokenizer(tmp_path):
    L.seed_everything(0)
    module = LitGPT(GPTConfig.from_name("debug", vocab_size=VOCAB), learning_rate=1e-2, warmup_steps=2)
    history = LossHistory()
    trainer = plain_trainer(30, [history])
    trainer.fit(module, CountingBlocks())
    assert module.model.config.vocab_size == VOCAB  # no tokenizer: the vocabulary is the config's
    assert module.tokenizer is None
    first, last = sum(history.losses[:3]) / 3, sum(history.losses[-3:]) / 3
    assert len(history.losses) == 30 and last < 0.6 * first, history.losses
    # The user's checkpoint exports like ours (without tokenizer.json) and loads as plain PyTorch.
    trainer.save_checkpoint(tmp_path / "user.ckpt")
    export_checkpoint(tmp_path / "user.ckpt", tmp_path / "export")
    assert not (tmp_path / "export" / "tokenizer.json").exists()
    idx = torch.arange(16)[None] % VOCAB
    with torch.no_grad():
        torch.testing.assert_close(GPT.from_pretrained(tmp_path / "export")(idx), module.model(idx), rtol=0, atol=0)


def test_users_input_target_pairs_train_our_litgpt():
    L.seed_everything(0)
    module = LitGPT(GPTConfig.from_name("debug", vocab_size=VOCAB), learning_rate=1e-2, warmup_steps=2)
    history = LossHistory()
    plain_trainer(10, [history]).fit(module, CountingBlocks(pairs=True))
    assert history.losses[-1] < history.losses[0]


class Bigram(L.LightningModule):
    """A user's own tiny model: next-token logits from the current token alone."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.table = nn.Embedding(vocab_size, vocab_size)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        inputs, targets = batch  # (B, T) each
        logits = self.table(inputs)  # (B, T, V)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.1)


def test_our_text_data_module_trains_a_users_own_model(text_corpus, tmp_path):
    data = TextDataModule(
        sources=[str(text_corpus)], tokenizer_kind="char", block_size=32, batch_size=8,
        cache_dir=str(tmp_path / "cache"), prepare_workers=1,
    )  # fmt: skip
    data.prepare_data()
    data.setup("fit")
    model = Bigram(data.tokenizer.vocab_size)
    history = LossHistory()
    plain_trainer(25, [history]).fit(model, datamodule=data)
    assert len(history.losses) == 25
    first, last = sum(history.losses[:3]) / 3, sum(history.losses[-3:]) / 3
    assert last < 0.7 * first, history.losses
    text = "the quick brown fox"
    assert data.tokenizer.decode(data.tokenizer.encode(text)) == text  # the user can read the model's tokens
