"""`seeds:` section of a pipeline config: where seed documents are, how to read, clean,
chunk and deduplicate them. Also: the programming languages recognised by file extension,
and the names a config may use."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from annotated_types import MinLen
from pydantic import field_validator, model_validator

from gristmill.config.base import Field, RelPath, Strict

EXTENSIONS: dict[str, str] = {
    ".py": "python", ".pyi": "python",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".tsx": "typescript", ".mts": "typescript", ".cts": "typescript",
    ".java": "java",
    ".go": "go",
    ".rs": "rust",
    ".c": "c", ".h": "c",  # .h is ambiguous; C is the safe common denominator
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".hxx": "cpp",
    ".cs": "csharp",
    ".rb": "ruby",
    ".php": "php",
    ".sh": "shell", ".bash": "shell", ".zsh": "shell",
    ".sql": "sql",
    ".kt": "kotlin", ".kts": "kotlin",
    ".swift": "swift",
    ".scala": "scala", ".sc": "scala",
    ".lua": "lua",
    ".pl": "perl", ".pm": "perl",
    ".r": "r",
    ".hs": "haskell",
    ".dart": "dart",
    ".jl": "julia",
    ".ex": "elixir", ".exs": "elixir",
}

LANGUAGES: frozenset[str] = frozenset(EXTENSIONS.values())

ALIASES: dict[str, str] = {
    "py": "python", "js": "javascript", "ts": "typescript", "golang": "go", "rs": "rust",
    "c++": "cpp", "cxx": "cpp", "c#": "csharp", "cs": "csharp", "rb": "ruby", "bash": "shell",
    "sh": "shell", "zsh": "shell", "kt": "kotlin",
}


def language_of(path: Path) -> str | None:
    """The language for a file name, or None when the extension is not a known one."""
    return EXTENSIONS.get(path.suffix.lower())


def canonical_language(name: str) -> str:
    """'C++' -> 'cpp'; raises ValueError naming the known languages for anything else."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in LANGUAGES:
        raise ValueError(f"unknown language {name!r}; known: {', '.join(sorted(LANGUAGES))}")
    return key


DEFAULT_SKIP_DIRS = ["node_modules", "vendor", "third_party", ".git", "build", "dist",
                     "__pycache__", ".venv", "venv", "site-packages"]


class ChunkConfig(Strict):
    max_tokens: int = Field(512, answers=True, ge=32, description="Largest chunk in tokens, counted with the "
                            "same counter as the rate limiter.")
    overlap_tokens: int = Field(64, answers=True, ge=0, description="Tokens of a chunk's tail repeated at the "
                                "start of the next one (whole sentences/paragraphs when "
                                "possible); 0 for none.")

    @model_validator(mode="after")
    def _overlap_below_max(self) -> "ChunkConfig":
        if self.overlap_tokens >= self.max_tokens:
            raise ValueError(f"overlap_tokens ({self.overlap_tokens}) must be smaller than "
                             f"max_tokens ({self.max_tokens}); e.g. overlap_tokens: "
                             f"{self.max_tokens // 8}")
        return self


class CodeConfig(Strict):
    languages: list[str] | Literal["all"] = Field("all", answers=True, description="Languages to read from "
                                                  "code trees, e.g. [python, go], or 'all'.")
    max_file_bytes: int = Field(200_000, answers=True, ge=1, description="Larger code files are skipped "
                                "(usually generated or data).")
    skip_dirs: list[str] = Field(answers=True, default_factory=lambda: list(DEFAULT_SKIP_DIRS),
                                 description="Folder names (fnmatch patterns) never entered, "
                                 "for prose and code alike: vendored files are poor seeds.")

    @field_validator("languages")
    @classmethod
    def _known_languages(cls, value: list[str] | str) -> list[str] | str:
        if value == "all":
            return value
        if not value:
            raise ValueError("languages is empty; list some, e.g. [python], or write 'all'")
        return sorted({canonical_language(name) for name in value})

    def wants(self, language: str | None) -> bool:
        return self.languages == "all" or language in self.languages


SeedKind = Literal["prose", "code", "html", "table"]
DEFAULT_KINDS: list[SeedKind] = ["code", "prose"]  # what was read before `kinds` existed
PROSE_FORMATS = frozenset({"text", "jsonl", "parquet", "hf"})


class TableConfig(Strict):
    rows_per_chunk: int = Field(20, answers=True, ge=1, description="Most rows in one table "
                                "seed; a longer table is split into chunks of rows (each with "
                                "the header), also kept within chunk.max_tokens.")
    max_columns: int = Field(12, answers=True, ge=1, description="Columns shown; the rest are "
                             "left out of the seed and named in its structured form.")


class SeedsConfig(Strict):
    path: RelPath | Annotated[list[RelPath], MinLen(1)] = Field(answers=True,
        description="A file or folder, or a list of them. Ids use each file's path relative "
        "to the folder it was found under, so moving that folder keeps them.")
    format: Literal["auto", "jsonl", "text", "code", "parquet", "hf"] = Field(
        "auto", answers=True, description="'auto': by suffix, per file (a folder may mix prose, code, "
        "JSONL and Parquet; a saved Hugging Face dataset folder is read with `datasets`). "
        "Any other value reads every file in the path that way.")
    field: str = Field("text", answers=True, description="JSONL field / Parquet or dataset column holding "
                       "the text.")
    min_chars: int = Field(300, answers=True, ge=0, description="Chunks with fewer characters (after "
                           "cleaning) are dropped and counted as 'too_short'; a chunk of "
                           "exactly min_chars is kept. A short document is one chunk.")
    chunk: ChunkConfig = Field(answers=True, default_factory=ChunkConfig, description="How long "
                               "documents are split into chunks.")
    dedup: bool = Field(True, answers=True, description="Drop chunks whose cleaned text was already "
                        "seen in this run (exact match, 8-byte digest).")
    code: CodeConfig = Field(answers=True, default_factory=CodeConfig, description="Which source files "
                             "of code trees are read.")
    hf_split: str = Field("train", answers=True, description="Split to read from a Hugging Face dataset.")
    kinds: Annotated[list[SeedKind], MinLen(1)] = Field(
        answers=True, default_factory=lambda: list(DEFAULT_KINDS),
        description="Seed kinds read from folders: prose (text files and records), code, "
        "html (.html/.htm pages: main text and element view) and table (.csv, .tsv, "
        "*.table.jsonl). html and table are opt-in; files of an unlisted kind are counted "
        "as 'ignored'.")
    table: TableConfig = Field(answers=True, default_factory=TableConfig, description="How "
                               "table seeds are cut and shown.")

    @field_validator("kinds")
    @classmethod
    def _sorted_kinds(cls, value: list[str]) -> list[str]:
        return sorted(set(value))  # order and repeats do not matter: [prose, code] == [code, prose]

    @model_validator(mode="after")
    def _format_kind_listed(self) -> "SeedsConfig":
        needed = ("prose" if self.format in PROSE_FORMATS
                  else "code" if self.format == "code" else None)
        if needed is not None and needed not in self.kinds:
            raise ValueError(f"format {self.format!r} reads {needed} seeds, but kinds "
                             f"{self.kinds} does not list {needed!r}; add it or use format: auto")
        return self

    @property
    def paths(self) -> list[Path]:
        return list(self.path) if isinstance(self.path, list) else [self.path]
