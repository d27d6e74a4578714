"""OpenAI-compatible HTTP: hosted APIs, `vllm serve`, llama.cpp; endpoints, SSE, rate-limit headers."""
