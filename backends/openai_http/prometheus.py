"""Reading a Prometheus text exposition (vLLM's `/metrics`)."""

from __future__ import annotations


def parse_metrics(text: str) -> dict[str, float]:
    """Metric name -> value, summed over label sets (one server may report several models)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, rest = line.rpartition("}") if "}" in line else ("", "", line)
        if head:
            name = head.split("{", 1)[0]
            fields = rest.split()
        else:
            name, *fields = line.split()
        if not fields:
            continue
        try:
            value = float(fields[0])
        except ValueError:
            continue
        values[name] = values.get(name, 0.0) + value
    return values
