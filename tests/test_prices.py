"""Prices, the cost of an answer, the budget and cached prompt tokens, as units."""

from __future__ import annotations


import orjson
import pytest

from gristmill.backends.openai_http.wire import read_chunk, usage_of
from gristmill.config.load import validate_config
from gristmill.config.prices import price_for, price_table, table_price
from gristmill.dataset.cache import decode, encode
from gristmill.errors import ConfigError
from gristmill.protocol import Completion, Usage
from gristmill.scheduling.budget import Budget
from gristmill.scheduling.spend import Price
from tests.conftest import pipeline_config


def test_the_table_has_the_common_models_dated_and_sourced():
    table = price_table()
    assert table["as_of"] and table["source"] and table["batch_discount"] == 0.5
    for model in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o3",
                  "o4-mini", "gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-3.5-turbo"):
        price = table_price(model)
        assert price is not None and 0 < price.cached_input <= price.input <= price.output


def test_lookup_by_name_then_by_a_dated_snapshot():
    assert table_price("gpt-4o") == Price(2.5, 1.25, 10.0, 0.5)
    assert table_price("gpt-4o-2024-08-06") == table_price("gpt-4o")
    assert table_price("gpt-4o-mini-2024-07-18") == table_price("gpt-4o-mini")
    assert table_price("gpt-3.5-turbo-0125") == Price(0.5, 0.5, 1.5, 0.5)  # no cache price
    assert table_price("mock") is None and table_price("gpt-4o-large") is None


def test_a_backends_price_overrides_the_table(tmp_path):
    data = pipeline_config("http://127.0.0.1:9/v1", tmp_path)
    data["backends"]["default"]["model"] = "gpt-4o"
    config = validate_config(data)
    assert price_for(config.backends["default"], "gpt-4o") == table_price("gpt-4o")
    data["backends"]["default"]["price"] = {"input": 1, "output": 3}
    backend = validate_config(data).backends["default"]
    assert price_for(backend, "gpt-4o") == Price(1.0, 1.0, 3.0, 0.5)  # cached: the input's
    data["backends"]["default"]["price"] = {"input": 1, "cached_input": 0.1, "output": 3,
                                            "batch_discount": 0.25}
    assert price_for(validate_config(data).backends["default"], "x") == Price(1, 0.1, 3, 0.25)


def test_cost_prices_cached_prompt_tokens_and_the_batch_discount():
    price = Price(input=2.0, cached_input=0.5, output=8.0, batch_discount=0.5)
    usage = Usage(prompt_tokens=1000, completion_tokens=200, cached_prompt_tokens=400)
    online = (600 * 2.0 + 400 * 0.5 + 200 * 8.0) / 1e6
    assert price.cost(usage) == pytest.approx(online)
    assert price.cost(usage, batch=True) == pytest.approx(online / 2)
    assert price.worst_case(1000, 300) == pytest.approx((1000 * 2.0 + 300 * 8.0) / 1e6)


def test_usage_reads_cached_tokens_plain_and_streamed():
    data = {"prompt_tokens": 50, "completion_tokens": 7,
            "prompt_tokens_details": {"cached_tokens": 32}}
    assert usage_of(data) == Usage(50, 7, 32)
    assert usage_of({"prompt_tokens": 5, "completion_tokens": 1,
                     "prompt_tokens_details": None}) == Usage(5, 1, 0)  # vLLM sends null
    _, streamed = read_chunk({"choices": [], "usage": data}, True, [], [])
    assert streamed == Usage(50, 7, 32)


def test_the_cache_keeps_cached_tokens_and_reads_answers_stored_without_them():
    completion = Completion("text", "stop", Usage(10, 3, 4), "m")
    assert decode(encode(completion)).usage == Usage(10, 3, 4)
    old = orjson.dumps(["text", "stop", 10, 3, "m"])  # a store written before the field
    assert decode(old).usage == Usage(10, 3, 0) and decode(old).text == "text"


def test_a_budget_counts_reservations_and_closes_on_the_first_refusal():
    told = []
    budget = Budget(1.0, spent_usd=0.2, on_exhausted=lambda: told.append(1))
    assert budget.reserve(0.5) and budget.reserve(0.3)  # 0.2 + 0.8: at the cap, not over
    assert not budget.reserve(0.01)  # in flight together they may not pass it
    assert budget.closed and told == [1]
    budget.settle(0.5, 0.1)  # answered for less: but a closed budget admits nothing more
    assert not budget.reserve(0.01) and told == [1]
    assert budget.spent == pytest.approx(0.3) and budget.outstanding == 1
    assert budget.refused == 2 and "2 request(s) not sent" in budget.reached()


def test_a_budget_with_an_unpriced_model_names_the_backend_and_model(tmp_path):
    data = pipeline_config("http://127.0.0.1:9/v1", tmp_path)
    data["stages"][1]["model"] = "gpt-4o-mini"  # priced: only the backend's model is not
    data["budget_usd"] = 5
    with pytest.raises(ConfigError, match="budget_usd.*backend 'default' model 'mock'") as e:
        validate_config(data)
    assert "gpt-4o-mini" not in str(e.value)
    data["backends"]["default"]["price"] = {"input": 1, "output": 2}
    assert validate_config(data).budget_usd == 5
