"""Stages that call a model. `ModelStage` holds what every kind shares: make the request,
account its tokens, and turn a failure into a reject; `TemplateStage` is the configurable
stage of a staged pipeline (`stages:` in a config).

A failure here is the item's, not the run's: after the client's retries, a backend error or
an unusable answer becomes a reject with its reason, and the stage moves on."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from gristmill.protocol import Completion, Request

from gristmill.scheduling.client import ModelClient
from gristmill.config.pipeline import OutputConfig, Sampling, StageConfig
from gristmill.errors import BackendError, InvalidOutput
from gristmill.dataset.records import reject_record
from gristmill.flows.items import Item
from gristmill.flows.outputs import item_format, parse_output, response_format
from gristmill.flows.stats import StageStats
from gristmill.flows.templates import Template, compile_template
from gristmill.flows.tools import call_problem
from gristmill.validation import Rejection
from gristmill.validation.stage import StageValidation, rejection_of

RejectSink = Callable[[dict[str, Any]], None]


class ModelStage:
    def __init__(self, name: str, depth: int, client: ModelClient, model: str, api: str,
                 stats: StageStats, reject: RejectSink, *, sampling: Sampling, stream: bool,
                 workers: int | None, queue_size: int | None, fan_out: int = 1,
                 validation: StageValidation | None = None) -> None:
        self.name = name
        self.depth = depth
        self.client = client
        self.model = model
        self.chat = api == "chat"
        self.stats = stats
        self.reject = reject
        self.stream = stream
        self.fan_out = fan_out
        self.parks = client.backend.capabilities.batches is not None  # waits in batch files
        self.workers = workers or client.pool.cap
        self.queue_size = queue_size or 2 * self.workers
        self.params = sampling.model_dump(exclude_none=True)
        # no validators at all: skip the per-request context, stream watch and verdict
        has_checks = validation is not None and bool(validation.stream or validation.final)
        self.validation = validation if has_checks else None

    def request(self, system: str | None, user: str,
                fmt: dict[str, Any] | None = None) -> Request:
        if self.chat:
            messages = [{"role": "user", "content": user}]
            if system:
                messages.insert(0, {"role": "system", "content": system})
            return Request(self.model, messages=messages, params=self.params,
                           response_format=fmt, stream=self.stream)
        prompt = f"{system}\n\n{user}" if system else user
        return Request(self.model, prompt=prompt, params=self.params, response_format=fmt,
                       stream=self.stream)

    async def ask(self, item: Item, variant: int, request: Request,
                  tools: list[dict[str, Any]] | None = None,
                  read: Callable[[Completion], Completion] | None = None,
                  checks: StageValidation | None = None) -> Completion | None:
        """An answer the validators accept, or None after recording the item as a reject.
        A rejected answer is regenerated: a new request with the next attempt number.
        `read` turns a raw answer into the one checked (a prompted tool call's JSON into
        calls); an answer with calls is checked against `tools`, not by the text checks.
        `checks` replace the stage's validation (a skill that adds checks of its own)."""
        validation = checks or self.validation
        tries = 1 + (validation.max_regenerations if validation else 0)
        for attempt in range(tries):
            request.attempt = attempt
            context = watch = None
            if validation is not None:
                context = validation.context(item.values, request)
                if read is not None:  # the checks see what `read` makes of the JSON asked for
                    context.structured, context.schema = False, None
                elif request.stream and validation.abort_early:
                    watch = validation.watch(context, request)
            client = self.client if attempt == 0 else self.client.regenerate_with or self.client
            try:
                completion = await client.call(request, self.depth, watch)
                self.count_tokens(completion)
                self.stats.answers += 1
                text = completion.text
                completion = read(completion) if read is not None else completion
            except BackendError as error:
                self.reject_item(item, variant, {"error": type(error).__name__}, str(error),
                                 error.attempts, "")
                return None
            except InvalidOutput as error:  # a streaming validator stopped the answer
                rejection, text = rejection_of(error), error.text
            else:
                if completion.tool_calls:
                    problem = call_problem(completion.tool_calls, tools)
                    rejection = None if problem is None else Rejection("tool_calls", problem)
                elif validation is None:
                    return completion
                else:
                    rejection = validation.verdict(
                        completion, context, None if completion.cached or read else watch)
                if rejection is None:
                    return completion
            if validation is not None:
                validation.count(rejection.validator)
            if attempt + 1 == tries:
                self.reject_item(item, variant, {"validator": rejection.validator},
                                 rejection.reason, attempt + 1, text)
        return None

    def count_tokens(self, completion: Completion) -> None:
        self.stats.prompt_tokens += completion.usage.prompt_tokens
        self.stats.completion_tokens += completion.usage.completion_tokens

    def parse(self, item: Item, variant: int, output: OutputConfig,
              completion: Completion) -> list[str] | None:
        try:
            return parse_output(output, completion.text)
        except InvalidOutput as error:
            self.reject_item(item, variant, {"validator": "parse"}, error.reason, 1,
                             completion.text)
            return None

    def children(self, item: Item, variant: int, completion: Completion | None,
                 outputs: list[Any], key: str | None = None) -> list[Item]:
        """One child item per output, carrying the tokens spent to make it."""
        made = []
        for index, output in enumerate(outputs):
            child = item.child(self.name, f"{variant}.{index}", output, key)
            if completion is not None:
                child.usage[0] += completion.usage.prompt_tokens
                child.usage[1] += completion.usage.completion_tokens
                child.model = completion.model or self.model
            made.append(child)
        self.stats.emitted += len(made)
        return made

    def reject_item(self, item: Item, variant: int, cause: dict[str, str], reason: str,
                    attempt: int, text: str, **fields: Any) -> None:
        self.stats.failed += 1
        if "skill" in item.values:  # the AgentInstruct flow's: rejects per skill
            fields = {"skill": item.values["skill"], **fields}
        self.reject(reject_record(item, self.name, variant, cause, reason, attempt, text,
                                  **fields))


class TemplateStage(ModelStage):
    """A stage of a staged pipeline: Jinja2 prompts over the item's values."""

    def __init__(self, config: StageConfig, depth: int, client: ModelClient, model: str,
                 api: str, stats: StageStats, reject: RejectSink,
                 validation: StageValidation | None = None,
                 retrieve: Callable[[Item], Awaitable[Item]] | None = None) -> None:
        super().__init__(config.name, depth, client, model, api, stats, reject,
                         sampling=config.sampling, stream=config.stream,
                         workers=config.workers, queue_size=config.queue_size,
                         fan_out=config.fan_out, validation=validation)
        self.config = config
        self._system: Template | None = compile_template(config.system) if config.system else None
        self._prompt = compile_template(config.prompt)
        self._format = response_format(config.output)
        per_item = config.output.json_schema and isinstance(config.output.format, str)
        self._format_template = compile_template(config.output.format) if per_item else None
        self.retrieve = retrieve  # `retrieve:` adds passages to the item (retrieval/stage.py)

    def build_request(self, item: Item, variant: int) -> Request:
        """The stage's request for this item (ValueError when its per-item format renders
        no JSON schema)."""
        variables = {**item.values, "variant": variant, "id": item.id, "seed_id": item.seed_id}
        system = self._system.render(variables) if self._system else None
        fmt = self._format
        if self._format_template is not None:
            fmt = item_format(self._format_template, variables)
        request = self.request(system, self._prompt.render(variables), fmt)
        request.sample = variant
        return request

    async def process(self, item: Item, variant: int) -> list[Item]:
        if self.retrieve is not None:
            item = await self.retrieve(item)
        try:
            request = self.build_request(item, variant)
        except ValueError as error:
            self.reject_item(item, variant, {"validator": "format"}, str(error), 1, "")
            return []
        completion = await self.ask(item, variant, request)
        if completion is None:
            return []
        outputs = self.parse(item, variant, self.config.output, completion)
        return [] if outputs is None else self.children(item, variant, completion, outputs)
