"""The price of a model: a backend's own `price:` if it has one, else the shipped table
(configs/prices.yaml). Local models (vLLM, the mock) are in no table: unpriced, so their cost
is not reported, and a budget refuses them (a cap on an unknown price would be a guess)."""

from __future__ import annotations

import functools
import re
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gristmill.config.base import Field, Strict
from gristmill.scheduling.spend import Price

if TYPE_CHECKING:
    from gristmill.config.backend import BackendConfig
    from gristmill.config.pipeline import PipelineConfig

# A dated snapshot: gpt-4o-2024-08-06, gpt-3.5-turbo-0125 -> the name before the date.
SNAPSHOT = re.compile(r"^(.+?)-(\d{4}-\d{2}-\d{2}|\d{4})$")


class PriceConfig(Strict):
    """A backend's prices, USD per million tokens, for every model it is asked for."""

    input: float = Field(answers=False, ge=0, description="Prompt tokens.")
    cached_input: float | None = Field(None, answers=False, ge=0, description="Prompt tokens "
                                       "the server's prompt cache served; default: input.")
    output: float = Field(answers=False, ge=0, description="Completion tokens.")
    batch_discount: float | None = Field(None, answers=False, ge=0, lt=1, description="Share "
                                         "a batch API takes off; default: the table's (0.5).")

    def price(self, default_discount: float) -> Price:
        return Price(self.input, self.input if self.cached_input is None else self.cached_input,
                     self.output, default_discount if self.batch_discount is None
                     else self.batch_discount)


@functools.lru_cache(maxsize=1)
def price_table() -> dict[str, Any]:
    """configs/prices.yaml, read once."""
    from gristmill.config.yaml_file import read_yaml

    return read_yaml(Path(str(resources.files("gristmill.configs") / "prices.yaml")))


def table_price(model: str, table: dict[str, Any] | None = None) -> Price | None:
    """The shipped price of `model`: by its name, else a dated snapshot's by the name before
    the date; None if the table has neither."""
    table = table or price_table()
    models = table["models"]
    entry = models.get(model)
    if entry is None and (dated := SNAPSHOT.match(model)):
        entry = models.get(dated.group(1))
    if entry is None:
        return None
    return Price(entry["input"], entry.get("cached_input", entry["input"]), entry["output"],
                 table["batch_discount"])


def price_for(backend: BackendConfig, model: str) -> Price | None:
    if backend.price is not None:
        return backend.price.price(price_table()["batch_discount"])
    return table_price(model)


def unpriced(config: PipelineConfig) -> list[tuple[str, str]]:
    """(backend, model) pairs the run asks for that have no price."""
    return [(name, model) for name, models in sorted(config.models_by_backend().items())
            for model in sorted(models) if price_for(config.backends[name], model) is None]


def require_prices(config: PipelineConfig, budget: float | None, where: str) -> None:
    """A budget caps spend by price: every model the run asks for must have one."""
    from gristmill.errors import ConfigError

    missing = unpriced(config) if budget else []
    if missing:
        pairs = ", ".join(f"backend {b!r} model {m!r}" for b, m in missing)
        raise ConfigError(f"{where}: a budget needs a price for every model; no price for "
                          f"{pairs}: give the backend `price: {{input, cached_input, output}}` "
                          "(USD per million tokens), or lift the budget")
