"""Generated seed inputs shared by the seed tests: prose documents, a Python file, sources."""

from __future__ import annotations

import random
from pathlib import Path

from gristmill.seeds import Seed, SeedSource, SeedsConfig

WORDS = ("river mill grain stone wheel water flour miller sack season harvest barley oats "
         "wind sail gear shaft hopper sieve bran").split()


def sentence(rng: random.Random, n: int = 12) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def paragraph(rng: random.Random, sentences: int = 4) -> str:
    return " ".join(sentence(rng, rng.randint(6, 16)) for _ in range(sentences))


def document(seed: int, paragraphs_: int = 12) -> str:
    rng = random.Random(seed)
    return "\n\n".join(paragraph(rng, rng.randint(1, 6)) for _ in range(paragraphs_))


def source(path: Path | list[Path], **options) -> SeedSource:
    options.setdefault("min_chars", 0)
    return SeedSource(SeedsConfig(path=path, **options))


def collect(src: SeedSource) -> list[Seed]:
    return list(src)


PY_CODE = '''import os


def read(path):
    """Read a file."""
    with open(path) as fh:

        return fh.read()


class Mill:
    def grind(self, grain):
        return grain * 2

    def sift(self, flour):
        return flour
'''
