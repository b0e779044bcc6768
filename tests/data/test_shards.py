"""The shard format: a stored window decodes into shifted inputs and targets, context tokens out of the loss."""

import numpy as np
import torch

from lightningllm.data.shards import context_flag, decode_sample, token_dtype
from lightningllm.model import IGNORE_INDEX


def test_a_stored_window_decodes_into_inputs_and_targets_with_context_left_out_of_the_loss():
    dtype = token_dtype(300)
    flag = context_flag(dtype)
    stored = np.array([5 | flag, 6 | flag, 7, 8, 9 | flag, 10], dtype=dtype)  # 5, 6 and 9 are context
    inputs, targets = decode_sample(stored)
    assert inputs.dtype == targets.dtype == torch.int64
    assert inputs.tolist() == [5, 6, 7, 8, 9]
    assert targets.tolist() == [IGNORE_INDEX, 7, 8, IGNORE_INDEX, 10]


def test_large_vocabularies_get_wider_storage_with_the_flag_still_free():
    assert token_dtype(32_000) == np.uint16 and token_dtype(50_304) == np.uint32
    inputs, targets = decode_sample(np.array([40_000, 50_000 | context_flag(np.uint32)], dtype=np.uint32))
    assert inputs.tolist() == [40_000] and targets.tolist() == [IGNORE_INDEX]
