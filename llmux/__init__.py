"""llmux: several AI models on one GPU behind one OpenAI-compatible API."""

__version__ = "0.1.0"
