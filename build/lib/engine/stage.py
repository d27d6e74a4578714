"""An LLM stage: render the prompt for an item, call the model, turn the answer into items.

A failure here is the item's, not the run's: after the client's retries, a backend error or
an unusable answer becomes a reject with its reason, and the stage moves on."""

from __future__ import annotations

from typing import Any, Callable

from backends.protocol import Request

from .client import ModelClient
from .config import StageConfig
from .errors import BackendError, InvalidOutput
from .items import Item
from .outputs import parse_output, response_format
from .stats import StageStats
from .templates import compile_template

RejectSink = Callable[[dict[str, Any]], None]


class LLMStage:
    def __init__(self, config: StageConfig, depth: int, client: ModelClient, model: str,
                 api: str, stats: StageStats, reject: RejectSink) -> None:
        self.name = config.name
        self.config = config
        self.depth = depth
        self.client = client
        self.model = model
        self.chat = api == "chat"
        self.stats = stats
        self.reject = reject
        self.fan_out = config.fan_out
        self.workers = config.workers or client.pool.cap
        self.queue_size = config.queue_size or 2 * self.workers
        self._system = compile_template(config.system) if config.system else None
        self._prompt = compile_template(config.prompt)
        self._params = config.sampling.model_dump(exclude_none=True)
        self._response_format = response_format(config.output)

    def build_request(self, item: Item, variant: int) -> Request:
        variables = {**item.values, "variant": variant, "id": item.id, "seed_id": item.seed_id}
        user = self._prompt.render(variables)
        system = self._system.render(variables) if self._system else None
        if self.chat:
            messages = [{"role": "user", "content": user}]
            if system:
                messages.insert(0, {"role": "system", "content": system})
            return Request(self.model, messages=messages, params=self._params,
                           response_format=self._response_format, stream=self.config.stream)
        prompt = f"{system}\n\n{user}" if system else user
        return Request(self.model, prompt=prompt, params=self._params,
                       response_format=self._response_format, stream=self.config.stream)

    async def process(self, item: Item, variant: int) -> list[Item]:
        request = self.build_request(item, variant)
        try:
            completion = await self.client.call(request, priority=self.depth)
        except BackendError as error:
            self._reject(item, variant, {"error": type(error).__name__}, str(error),
                         error.attempts, "")
            return []
        usage = completion.usage
        self.stats.prompt_tokens += usage.prompt_tokens
        self.stats.completion_tokens += usage.completion_tokens
        try:
            outputs = parse_output(self.config.output, completion.text)
        except InvalidOutput as error:
            self._reject(item, variant, {"validator": "parse"}, error.reason, 1, completion.text)
            return []
        children = []
        for index, output in enumerate(outputs):
            child = item.child(self.name, f"{variant}.{index}", output)
            child.usage[0] += usage.prompt_tokens
            child.usage[1] += usage.completion_tokens
            child.model = completion.model or self.model
            children.append(child)
        self.stats.emitted += len(children)
        return children

    def _reject(self, item: Item, variant: int, kind: dict[str, str], reason: str,
                attempt: int, text: str) -> None:
        self.stats.failed += 1
        self.reject({"id": item.id, "seed_id": item.seed_id, "stage": self.name,
                     "variant": variant, **kind, "reason": reason, "attempt": attempt,
                     "text": text})
