"""A run's spend: restored from its store when it opens (earlier sessions'), its budget,
and the `cost_usd` that summary.json, state.json, the progress line and /metrics show."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from gristmill.config.prices import require_prices
from gristmill.scheduling.budget import Budget
from gristmill.scheduling.spend import ModelSpend, Usage, total_cost

if TYPE_CHECKING:
    from gristmill.runs.lifecycle import Run


def budget_usd(run: Run) -> float | None:
    """--budget-usd over the config's `budget_usd`; 0 lifts it. A budget needs a price for
    every model the run asks for (ConfigError before anything is sent)."""
    given = run.options.budget_usd
    cap = run.config.budget_usd if given is None else given
    if not cap:
        return None
    require_prices(run.config, cap, "--budget-usd" if given is not None else "budget_usd")
    return cap


def open_spend(run: Run) -> None:
    """Earlier sessions' spend into each client's sums (the run's cost is cumulative), a
    client without a cache persists its spend directly, and the budget starts from what
    was spent."""
    store = run.store
    assert store is not None
    for backend, model, cost, prompt, cached, completion, requests in store.spend():
        client = run.clients.get(backend)
        if client is not None:
            spend = client.spend.setdefault(model, ModelSpend())
            spend.add(cost, Usage(prompt, completion, cached), requests)
    run.spent_before = run_cost(run) or 0.0
    for client in run.clients.values():
        if client.cache is None:
            client.persist_spend = store.add_spend
    cap = budget_usd(run)
    if cap is not None:
        run.budget = Budget(cap, run.spent_before, partial(run.stop_admitting, "budget"))
        for client in run.clients.values():
            client.budget = run.budget


def backend_cost(run: Run) -> dict[str, float | None]:
    """USD per backend; None for one with no priced model (nothing to report), 0.0 for a
    priced one that has paid for nothing yet (every answer replayed from the cache)."""
    wanted = run.config.models_by_backend()
    out = {}
    for name, client in run.clients.items():
        cost = total_cost(client.spend)
        priced = any(client.price(model) is not None for model in wanted.get(name, ()))
        out[name] = cost if cost is not None or not priced else 0.0
    return out


def run_cost(run: Run) -> float | None:
    costs = [c for c in backend_cost(run).values() if c is not None]
    return sum(costs) if costs else None


def cost_summary(run: Run) -> dict[str, Any] | None:
    """`cost_usd` of summary.json and state.json: the total over priced backends, earlier
    sessions included, per backend (null: unpriced) and per model; None when nothing is
    priced and no budget is set."""
    total = run_cost(run)
    if total is None and run.budget is None:
        return None
    by_model = {name: {model: _round(s.cost_usd) for model, s in client.spend.items()}
                for name, client in run.clients.items() if client.spend}
    out: dict[str, Any] = {"total": _round(total or 0.0),
                           "this_session": _round((total or 0.0) - run.spent_before),
                           "by_backend": {k: _round(v) for k, v in backend_cost(run).items()},
                           "by_model": by_model}
    if run.budget is not None:
        out["budget"] = run.budget.as_dict()
    return out


def _round(usd: float | None) -> float | None:
    return None if usd is None else round(usd, 6)


def spend_line(run: Run) -> str:
    """For the progress display: '$0.0123 spent (budget $1.00: $0.0456 reserved)'."""
    total = run_cost(run)
    if total is None and run.budget is None:
        return ""
    line = f"spent ${total or 0.0:,.4f}"
    if run.budget is not None:
        b = run.budget
        line += f" of budget ${b.cap:,.2f} (${b.reserved:,.4f} reserved by requests in flight)"
        if b.closed:
            line += " · budget reached: finishing what is in flight"
    return line
