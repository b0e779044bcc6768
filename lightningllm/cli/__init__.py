"""The ``lightningllm`` command: ``main`` (no Lightning import until a subcommand needs it) and the LightningCLI.

``lightningllm.cli.commands`` holds the entry point, the top-level help, ``export`` and the
shortcuts that expand into LightningCLI arguments; ``lightningllm.cli.app`` holds
``LightningLLMCLI`` itself (a module-level class, so strategies that pickle it, such as
``ddp_spawn``, can).
"""

from importlib import import_module

from lightningllm.cli.commands import main

__all__ = ["LightningLLMCLI", "build_cli", "main"]


def __getattr__(name: str):
    if name in ("LightningLLMCLI", "build_cli"):
        return getattr(import_module("lightningllm.cli.app"), name)
    raise AttributeError(f"module 'lightningllm.cli' has no attribute {name!r}")
