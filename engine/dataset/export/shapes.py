"""One record in each export format: a Parquet row (a fixed Arrow schema), an OpenAI
fine-tuning line, a ShareGPT line. Plain records (instruction and answer) keep the shape they
always had; tool calls, tool results and `tools` appear only where a record has them."""

from __future__ import annotations

from typing import Any

import orjson

from gristmill.dataset.conversation import ToolCall, messages_of, tool_calls_of, tools_of

SCALARS = ("id", "seed_id", "skill", "agent", "type", "model")
SHAREGPT_FROM = {"system": "system", "user": "human", "assistant": "gpt"}
TOOL_MARKERS = (b'"tool_calls"', b'"tool_call_id"', b'"tools"')


def mentions_tools(line: bytes) -> bool:
    """Whether a JSONL line may hold tool fields (a key, never an escaped quote in a text)."""
    return b'"tool' in line and any(marker in line for marker in TOOL_MARKERS)


# --- value normalisation: the Parquet schema is fixed, so every value is made to fit it ---

def _str(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode() if isinstance(value, (dict, list)) else str(value)


def int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _call(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function",
            "function": {"name": call.name, "arguments": call.arguments}}


def openai_message(message: dict[str, Any]) -> dict[str, Any]:
    """role and content (null stays null), plus tool_calls, tool_call_id and name where the
    message has them."""
    out: dict[str, Any] = {"role": _str(message.get("role")),
                           "content": _str(message.get("content"))}
    if calls := tool_calls_of(message):
        out["tool_calls"] = [_call(c) for c in calls]
    for key in ("tool_call_id", "name"):
        if message.get(key) is not None:
            out[key] = _str(message[key])
    return out


def openai_tools(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": f} for f in tools_of(record)]


def to_openai(rec: dict[str, Any]) -> dict[str, Any]:
    line: dict[str, Any] = {"messages": [openai_message(m) for m in messages_of(rec)]}
    if tools := openai_tools(rec):
        line["tools"] = tools
    return line  # the fine-tuning API rejects any other key


def _json_or_text(text: str | None) -> Any:
    try:
        return orjson.loads(text or "")
    except orjson.JSONDecodeError:
        return text


def _one_or_list(values: list[Any]) -> str:
    return orjson.dumps(values[0] if len(values) == 1 else values).decode()


def to_sharegpt(rec: dict[str, Any]) -> dict[str, Any]:
    """Turns from human, gpt, system; an assistant's tool calls are one `function_call` turn
    ({"name", "arguments"} as JSON, a list of them for parallel calls), the results that
    follow one `observation` turn (a JSON list of them for several), so turns alternate as
    LLaMA-Factory's sharegpt format requires; `tools` is the JSON text of the function list."""
    turns: list[dict[str, Any]] = []
    results: list[str | None] = []  # consecutive tool results, not yet a turn
    for message in messages_of(rec):
        role, content = _str(message.get("role")), message.get("content")
        if role == "tool":
            results.append(_str(content))
            continue
        _observation(turns, results)
        calls = tool_calls_of(message)
        if not calls or content not in (None, ""):  # text beside tool calls is kept too
            turns.append({"from": SHAREGPT_FROM.get(role or "", role), "value": _str(content)})
        if calls:
            turns.append({"from": "function_call", "value": _one_or_list(
                [{"name": c.name, "arguments": _json_or_text(c.arguments)} for c in calls])})
    _observation(turns, results)
    line: dict[str, Any] = {"id": _str(rec.get("id")), "conversations": turns}
    line.update({k: _str(rec[k]) for k in ("skill", "type") if rec.get(k) is not None})
    if tools := tools_of(rec):
        line["tools"] = orjson.dumps(tools).decode()
    return line


def _observation(turns: list[dict[str, Any]], results: list[str | None]) -> None:
    if len(results) == 1:
        turns.append({"from": "observation", "value": results[0]})
    elif results:
        turns.append({"from": "observation",
                      "value": _one_or_list([_json_or_text(r) for r in results])})
    results.clear()


# --- Parquet rows ---

def _tool_row(function: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function",
            "function": {"name": _str(function.get("name")),
                         "description": _str(function.get("description")),
                         "parameters": _str(function.get("parameters"))}}


def to_row(rec: dict[str, Any], tools: bool = False) -> dict[str, Any]:
    """One record shaped exactly as `arrow_schema(tools)` wants it."""
    row: dict[str, Any] = {key: _str(rec.get(key)) for key in SCALARS}
    if tools:
        row["messages"] = [{"tool_calls": None, "tool_call_id": None, "name": None,
                            **openai_message(m)} for m in messages_of(rec)]
        row["tools"] = [_tool_row(f) for f in tools_of(rec)] or None
    else:
        row["messages"] = [{"role": _str(m.get("role")), "content": _str(m.get("content"))}
                           for m in messages_of(rec)]
    row["lineage"] = [{"id": _str(e.get("id")), "stage": _str(e.get("stage"))}
                      for e in rec.get("lineage") or [] if isinstance(e, dict)]
    usage = rec.get("usage")
    row["usage"] = ({k: int_or_none(usage.get(k)) for k in ("prompt_tokens",
                                                             "completion_tokens")}
                    if isinstance(usage, dict) else None)
    row["refinements"] = [
        {"round": int_or_none(r.get("round")), "instruction": _str(r.get("instruction")),
         "suggestions": [_str(s) for s in r.get("suggestions") or []]}
        for r in rec.get("refinements") or [] if isinstance(r, dict)]
    return row


def arrow_schema(tools: bool = False) -> Any:
    """The schema of every export; with `tools`, messages also carry tool_calls (arguments as
    JSON text), tool_call_id and name, and a `tools` column lists the functions (parameters,
    a free-form JSON Schema, as JSON text: no one Arrow type fits every tool's)."""
    import pyarrow as pa

    text = pa.string()
    message = [("role", text), ("content", text)]
    if tools:
        function = pa.struct([("name", text), ("arguments", text)])
        call = pa.struct([("id", text), ("type", text), ("function", function)])
        message += [("tool_calls", pa.list_(call)), ("tool_call_id", text), ("name", text)]
    fields = [
        ("id", text),
        ("messages", pa.list_(pa.struct(message))),
        ("skill", text), ("agent", text), ("type", text), ("seed_id", text),
        ("lineage", pa.list_(pa.struct([("id", text), ("stage", text)]))),
        ("model", text),
        ("usage", pa.struct([("prompt_tokens", pa.int64()), ("completion_tokens", pa.int64())])),
        ("refinements", pa.list_(pa.struct([("round", pa.int64()), ("suggestions", pa.list_(text)),
                                            ("instruction", text)])))]
    if tools:
        function = pa.struct([("name", text), ("description", text), ("parameters", text)])
        fields.insert(2, ("tools", pa.list_(pa.struct([("type", text), ("function", function)]))))
    return pa.schema(fields)
