"""``lightningllm serve``: an OpenAI-compatible HTTP server (``app``) over a batching decode engine (``engine``)."""
