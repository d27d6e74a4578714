"""The stream watch: what the client feeds the validators while an answer streams."""

from __future__ import annotations

import pytest

from gristmill.errors import InvalidOutput
from gristmill.validation.stage import StreamWatch
from gristmill.validation import Context, build_stream, start_checks


def watch_of(specs):
    aborted = []
    watch = StreamWatch(lambda: start_checks(build_stream(specs), Context(stage="answer")),
                        512, aborted.append)
    watch.start()  # as the client does when a stream begins
    return watch, aborted


def test_the_watch_checks_the_unfed_rest_once_at_the_end():
    watch, aborted = watch_of([{"name": "forbidden", "patterns": ["XYZ"]}])
    watch.feed("abc ")
    rejection = watch.finish("abc XYZ")  # the client fed only the first part
    assert rejection is not None and rejection.validator == "forbidden" and not aborted
    # what was fed is not fed again: one copy of a line is not a repeat
    watch, _ = watch_of([{"name": "repetition", "max_line_repeats": 2}])
    line = "a line long enough to be counted\n"
    watch.feed(line)
    assert watch.finish(line) is None
    assert watch_of([{"name": "repetition", "max_line_repeats": 2}])[0].finish(2 * line)
    # a retried stream starts over: what the failed attempt fed is forgotten
    watch, _ = watch_of([{"name": "repetition", "max_line_repeats": 2}])
    watch.feed(line + "and half of a second")
    watch.start()
    watch.feed(line)
    assert watch.finish(line) is None


def test_a_rejecting_feed_aborts_with_the_text_so_far():
    watch, aborted = watch_of([{"name": "forbidden", "patterns": ["XYZ"]}])
    watch.feed("first part, ")
    with pytest.raises(InvalidOutput) as caught:
        watch.feed("then XYZ and more")
    assert caught.value.text == "first part, then XYZ and more"
    assert aborted == [len(caught.value.text)]
