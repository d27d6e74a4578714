"""The metrics-driven cap decision, as plain code."""

from gristmill.backends.openai_http.prometheus import parse_metrics
from gristmill.runs.metrics_poller import metrics_url
from gristmill.scheduling.saturation import MetricsController, ServerLoad

VLLM_TEXT = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 12.0
vllm:num_requests_waiting{engine="0",model_name="m"} 3.0
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.42
vllm:num_preemptions_total{engine="0",model_name="m"} 5.0
vllm:generation_tokens_total{model_name="m"} 1.2e+04
process_open_fds 17
"""


def test_parse_vllm_metrics_text():
    m = parse_metrics(VLLM_TEXT)
    assert m["vllm:num_requests_running"] == 12 and m["vllm:num_requests_waiting"] == 3
    assert m["vllm:generation_tokens_total"] == 12000 and m["process_open_fds"] == 17
    load = ServerLoad.from_metrics(m)
    assert (load.running, load.waiting, load.kv_usage, load.preemptions) == (12, 3, 0.42, 5)


def test_metrics_url():
    assert metrics_url("http://h:8000/v1") == "http://h:8000/metrics"


def load(running, waiting=0, kv=0.1, preemptions=0):
    return ServerLoad(running, waiting, kv, preemptions)


def test_slow_start_doubles_while_the_server_has_room():
    c = MetricsController(ceiling=1000, initial=8)
    assert c.next_cap(load(8), in_flight=8) == 16
    assert c.next_cap(load(16), in_flight=16) == 32
    assert c.next_cap(load(20), in_flight=10) == 32  # cap not binding: no growth


def test_queue_beyond_target_twice_shrinks_to_running_plus_margin_and_ends_slow_start():
    c = MetricsController(ceiling=1000, initial=256)
    assert c.next_cap(load(64, waiting=150), in_flight=214) == 256  # once: may be admission lag
    assert c.slow_start
    assert c.next_cap(load(64, waiting=150), in_flight=214) == 64 + 7
    assert not c.slow_start
    assert c.next_cap(load(64, waiting=3), in_flight=71) == 71 + 4  # then grows gently


def test_preemption_or_full_kv_backs_off():
    c = MetricsController(ceiling=1000, initial=100)
    c.slow_start = False
    c.next_cap(load(50, preemptions=2), in_flight=10)  # first sample: a baseline only
    assert c.cap == 100
    assert c.next_cap(load(50, preemptions=3), in_flight=100) == 80
    assert c.next_cap(load(50, kv=0.99, preemptions=3), in_flight=80) == 64


def test_cap_stays_within_floor_and_ceiling():
    c = MetricsController(ceiling=40, initial=30)
    assert c.next_cap(load(30), in_flight=30) == 40
    c.cap = 1
    c._preemptions = 0
    assert c.next_cap(load(1, preemptions=1), in_flight=1) == 1
