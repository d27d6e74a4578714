"""The mock OpenAI-compatible server: `python -m gristmill.backends.mock` or `gristmill mock-server`."""
