"""vLLM: `vllm serve` fleets, in-process AsyncLLM, the CPU runtime and the demo model."""
