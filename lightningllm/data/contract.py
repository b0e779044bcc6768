"""The data → model contract: what ``LitGPT`` and the generic callbacks read from a data module.

A data module that subclasses ``TokenDataModule`` declares, once it is set up, the tokenizer
its token ids come from, the number of tokens per sample, the bytes per token of its
validation text (for bits per byte), a few prompts to sample from during training, and
optionally a ``Task`` (held-out prompts with a checker, see ``lightningllm.tasks``). ``LitGPT``
sizes its vocabulary from ``tokenizer``, refuses a ``block_size`` longer than its context, logs
``val/bpb`` from ``bytes_per_token``; ``SampleGenerations`` continues ``sample_prompts``;
``TaskEval`` scores ``task``. Nothing is guessed from attribute names: a data module that is
not a ``TokenDataModule`` (a user's ``TensorDataset`` of token blocks, say) still trains
``LitGPT``, which then takes its vocabulary from ``model.config.vocab_size``.

Batches are ``(inputs, targets)`` pairs of int64 tensors, each ``(B, T)``: ``T = block_size`` for
packed text, ``T ≤ block_size`` for a corpus of records (one record per row, right-padded to the
longest of its step); a target of ``IGNORE_INDEX`` (-100) is left out of the loss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import lightning as L

if TYPE_CHECKING:
    from lightningllm.data.tokenizer import Tokenizer
    from lightningllm.tasks.base import Task


class TokenDataModule(L.LightningDataModule):
    """Base class of data modules that feed ``LitGPT`` token batches. Subclasses set ``tokenizer`` in ``setup``."""

    tokenizer: Tokenizer | None = None
    """The tokenizer of the batches' token ids, set by ``setup``; None when the ids are not text."""
    block_size: int
    """Tokens per sample (inputs and targets are each this long, or at most this long for records)."""

    @property
    def bytes_per_token(self) -> float | None:
        """UTF-8 bytes per token of the validation text (for bits per byte); None when unknown."""
        return None

    def sample_prompts(self, count: int) -> list[str]:
        """Up to ``count`` prompts to continue during training (TensorBoard text samples)."""
        return ["The"][:count]

    @property
    def task(self) -> Task | None:
        """The task whose held-out examples ``TaskEval`` scores; None for plain text."""
        return None
