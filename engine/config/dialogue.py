"""`dialogue:` of a stage: the stage's answer becomes a conversation of several turns, a
simulated user and the assistant taking turns, optionally with tools the assistant calls and
a simulated API answering them."""

from __future__ import annotations

from typing import Any

from pydantic import model_validator

from gristmill.config.base import Field, Strict

USER_SYSTEM = ("You play the user in a conversation with an AI assistant. Write only the "
               "user's next message: a natural follow-up that asks for more, questions a "
               "detail or changes the request. If the user has what they need, reply with "
               "exactly {{ stop }}.")
USER_PROMPT = ("The conversation so far:\n\n{{ transcript }}\n\nWrite the user's next "
               "message (turn {{ turn }} of at most {{ turns }}).")
TOOL_SYSTEM = ("You simulate an API. Given the API's description and a call, write the body "
               "the API returns: JSON only, realistic values, consistent with the call.")
TOOL_PROMPT = ("API: {{ tool }}\nCall: {{ name }}({{ arguments }})\n\n{% if fail %}The call "
               "fails this time: write the error body a real API would return (e.g. a 4xx "
               "or 5xx with a message).{% else %}Write the JSON body it returns.{% endif %}")


class TurnsConfig(Strict):
    min: int = Field(2, answers=True, ge=1, le=50, description="Fewest user turns.")
    max: int = Field(4, answers=True, ge=1, le=50, description="Most user turns; each item "
                     "draws its count between min and max from its id.")

    @model_validator(mode="after")
    def _ordered(self) -> "TurnsConfig":
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max}); e.g. min: 2, max: 4")
        return self


class UserSimulator(Strict):
    system: str = Field(USER_SYSTEM, answers=True, description="Jinja2 template of the user "
                        "simulator's system message (`stop` is the stop word).")
    prompt: str = Field(USER_PROMPT, answers=True, min_length=1, description="Jinja2 template "
                        "of its prompt: it sees the item's values, `transcript` (the "
                        "conversation so far as text), `turn` and `turns`.")


class ToolSimulator(Strict):
    system: str = Field(TOOL_SYSTEM, answers=True, description="Jinja2 template of the "
                        "tool simulator's system message.")
    prompt: str = Field(TOOL_PROMPT, answers=True, min_length=1, description="Jinja2 template "
                        "of its prompt: `tool` (the tool's JSON description), `name`, "
                        "`arguments`, `fail` (this call fails), `transcript`, the item's values.")
    failure_rate: float = Field(0.1, answers=True, ge=0, le=1, description="Share of calls "
                                "that fail as a real API sometimes does (drawn from the item "
                                "and call, so a rerun fails the same calls).")


class ToolsConfig(Strict):
    offer: str | list[dict[str, Any]] = Field(answers=True, description="The tools offered, "
        "in OpenAI's format ({type: function, function: {name, description, parameters}}): "
        "a list, or a Jinja2 template rendering the JSON list per item (e.g. "
        "'{{ api | tojson }}' for a list an earlier `type: json` stage wrote).")
    max_rounds: int = Field(3, answers=True, ge=1, le=20, description="Tool rounds per user "
                            "turn; after the last one the assistant must answer in text.")
    simulator: ToolSimulator = Field(answers=True, default_factory=ToolSimulator,
                                     description="The agent that writes the tools' results.")


class DialogueConfig(Strict):
    turns: TurnsConfig = Field(answers=True, default_factory=TurnsConfig, description="How many "
                               "user turns the conversation has; the stage's `prompt` is the "
                               "first.")
    user: UserSimulator = Field(answers=True, default_factory=UserSimulator,
                                description="The agent that writes the later user turns.")
    stop: str | None = Field("DONE", answers=True, description="The user simulator ends the "
                             "conversation early by answering this; null: never early.")
    tools: ToolsConfig | None = Field(None, answers=True, description="Tools the assistant may "
                                      "call; the record gets `tools` and the calls.")
