"""Runtime adapters: load weights, tokenize, generate (text), transcribe, speak."""
