"""The tokenizer files of a transformers folder: ``tokenizer.json``, ``tokenizer_config.json``, ``chat_template.jinja``.

Our ``tokenizer.json`` is already a Hugging Face ``tokenizers`` file, so ``AutoTokenizer`` loads it
as a ``PreTrainedTokenizerFast`` and encodes every string to the same ids. ``tokenizer_config.json``
names the special tokens (``<|bos|>``, ``<|eos|>``, ``<|pad|>``), adds none of them on its own
(our models are trained on text without an added BOS), keeps every space on decoding
(``clean_up_tokenization_spaces`` false) and sets ``model_max_length`` to the context length. The chat
template renders a ``messages`` list exactly as lightningllm's chat data does
(``lightningllm.data.instruct``)::

    <|system|>You are terse.<|end|><|user|>Capital of France?<|end|><|assistant|>Paris.<|end|>

and ``add_generation_prompt`` appends the ``<|assistant|>`` tag a chat model continues from.
"""

from __future__ import annotations

import json
from pathlib import Path

from lightningllm.data.instruct import ASSISTANT, END, SYSTEM, USER
from lightningllm.data.tokenizer import BOS, CHAT_ROLES, EOS, PAD, UNK, Tokenizer

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    f"{{%- if message['role'] == 'system' -%}}{{{{ '{SYSTEM}' }}}}"
    f"{{%- elif message['role'] == 'user' -%}}{{{{ '{USER}' }}}}"
    f"{{%- elif message['role'] == 'assistant' -%}}{{{{ '{ASSISTANT}' }}}}"
    "{%- else -%}{{ raise_exception('a message role must be system, user or assistant') }}"
    "{%- endif -%}"
    f"{{{{ message['content'] }}}}{{{{ '{END}' }}}}"
    "{%- endfor -%}"
    f"{{%- if add_generation_prompt -%}}{{{{ '{ASSISTANT}' }}}}{{%- endif -%}}"
)
"""Jinja for transformers' ``apply_chat_template``: the text ``lightningllm.data.instruct`` trains on."""


def save_hf_tokenizer(tokenizer: Tokenizer, directory: Path, model_max_length: int) -> list[str]:
    """Write the tokenizer files to ``directory``; the names written (the chat template when the tokenizer
    has the chat-role tokens, as every tokenizer lightningllm trains does)."""
    (directory / TOKENIZER_FILE).write_text(tokenizer.to_str(), encoding="utf-8")
    vocab = tokenizer.hf.get_vocab(with_added_tokens=True)
    roles = [token for token in CHAT_ROLES if token in vocab]
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "model_max_length": model_max_length,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "padding_side": "left",  # batched generation pads prompts on the left, as lightningllm's does
    }
    if UNK in vocab:
        config["unk_token"] = UNK
    if roles:
        config["additional_special_tokens"] = roles
    (directory / TOKENIZER_CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    written = [TOKENIZER_FILE, TOKENIZER_CONFIG_FILE]
    if len(roles) == len(CHAT_ROLES):
        (directory / CHAT_TEMPLATE_FILE).write_text(CHAT_TEMPLATE + "\n", encoding="utf-8")
        written.append(CHAT_TEMPLATE_FILE)
    return written
