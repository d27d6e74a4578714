"""A tiny chat model built locally, for tests and benchmarks against a real vLLM: no model
hub is needed. A byte-level BPE tokenizer trained on the shipped seed texts, a ChatML chat
template and a 2-layer Llama with seeded random weights (small, deterministic, built in
seconds).

Its answers are noise, but every byte of the serving path is real: tokenization, the chat
template, scheduling, sampling, streaming, aborts, usage counts and /metrics.

    python backends/vllm/tiny_model.py OUT_DIR # in an interpreter that has transformers

Needs `tokenizers`, `transformers` and `torch` (all come with vLLM)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

SEEDS = Path(__file__).resolve().parents[2] / "configs" / "seeds"
CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
          "{{ message['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# head_dim 64: vLLM's CPU attention kernels do not support head_dim 16
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 1024
MARKER = "tiny-model.json"  # written last: a folder without it is incomplete


def corpus() -> Iterator[str]:
    """The shipped seed texts, plus the characters every prompt template uses."""
    for path in sorted(SEEDS.rglob("*")):
        if path.is_file():
            yield path.read_text(encoding="utf-8", errors="replace")
    yield "".join(chr(c) for c in range(32, 127)) + "\n\t"


def build(out: Path, *, seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    if (out / MARKER).exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>",
                                   eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   unk_token="<|endoftext|>")
    fast.chat_template = CHATML
    fast.save_pretrained(out)

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=128, intermediate_size=256,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=4096, tie_word_embeddings=True,
                         bos_token_id=tok.token_to_id("<|im_start|>"),
                         eos_token_id=tok.token_to_id("<|im_end|>"),
                         pad_token_id=tok.token_to_id("<|endoftext|>"))
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.generation_config.eos_token_id = config.eos_token_id
    model.save_pretrained(out)
    (out / MARKER).write_text('{"built_by": "gristmill.backends.vllm.tiny_model", "seed": %d}\n' % seed)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python backends/vllm/tiny_model.py OUT_DIR")
    print(build(Path(sys.argv[1])))
