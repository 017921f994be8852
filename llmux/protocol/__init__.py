"""OpenAI and admin wire shapes, the error body, SSE framing: the bottom layer (imports nothing from llmux)."""
