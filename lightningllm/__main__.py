"""``python -m lightningllm`` runs the same CLI as the ``lightningllm`` console script."""

from lightningllm.cli import main

main()
