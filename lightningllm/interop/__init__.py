"""Other projects' formats: Hugging Face transformers folders (and peft adapters) both ways, and GGUF for llama.cpp.

``lightningllm.interop.hf`` converts a ``GPT`` to and from ``GPT2LMHeadModel``,
``GPTNeoXForCausalLM`` and ``LlamaForCausalLM`` folders, ``lightningllm.interop.peft`` writes LoRA
adapters for them, and ``lightningllm.interop.gguf`` writes a GGUF file. None imports Lightning or
needs ``transformers`` to write: the tests prove the files with the other side's own code.
"""
