"""API keys by convention: which key a backend sends where, the warning for a key kept back,
Azure's header, and a canary key that reaches its server and nothing else."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import urllib.request

import pytest
import yaml

from gristmill.backends.openai_http.backend import OpenAIHTTPBackend
from gristmill.config.keys import ApiKey, api_key, auth_headers
from gristmill.config.load import validate_config
from tests.conftest import pipeline_config

LOCAL = ["http://127.0.0.1:8000/v1"]
OPENAI = ["https://api.openai.com/v1"]
OTHER = ["https://llm.example.com/v1"]
BOTH = {"GRISTMILL_API_KEY": "gm-key", "OPENAI_API_KEY": "oa-key"}


@pytest.mark.parametrize("variable, urls, environ, sent, source", [
    ("auto", OTHER, BOTH, "gm-key", "GRISTMILL_API_KEY"),  # gristmill's own key goes anywhere
    ("auto", OPENAI, {"OPENAI_API_KEY": "oa-key"}, "oa-key", "OPENAI_API_KEY"),
    ("auto", LOCAL, {"OPENAI_API_KEY": "oa-key"}, "oa-key", "OPENAI_API_KEY"),
    ("auto", ["http://localhost:8000/v1", "http://[::1]:8001/v1"], {"OPENAI_API_KEY": "oa-key"},
     "oa-key", "OPENAI_API_KEY"),
    ("auto", OTHER, {"OPENAI_API_KEY": "oa-key"}, None, None),  # kept back, with a warning
    ("auto", LOCAL + OTHER, {"OPENAI_API_KEY": "oa-key"}, None, None),
    ("auto", LOCAL, {}, None, None),
    ("MILL_KEY", OTHER, {"MILL_KEY": "mine", **BOTH}, "mine", "MILL_KEY"),
    ("OPENAI_API_KEY", OTHER, BOTH, "oa-key", "OPENAI_API_KEY"),  # said explicitly: sent
    (None, LOCAL, BOTH, None, None),  # null: no key at all
])
def test_which_key_goes_where(variable, urls, environ, sent, source):
    key = api_key("default", variable, urls, environ)
    assert (key.value, key.variable) == (sent, source)
    assert (key.warning is not None) == (variable == "auto" and sent is None
                                         and "OPENAI_API_KEY" in environ)


def test_the_warning_names_the_host_and_the_line_to_add():
    key = api_key("hosted", "auto", OTHER, {"OPENAI_API_KEY": "oa-key"})
    assert "llm.example.com" in key.warning and "api_key_env: OPENAI_API_KEY" in key.warning
    assert "oa-key" not in key.warning


def test_the_key_travels_in_the_header_its_style_names():
    key = ApiKey("k", "V")
    assert auth_headers(key, "bearer") == {"Authorization": "Bearer k"}
    assert auth_headers(key, "api-key") == {"api-key": "k"}
    assert auth_headers(ApiKey(), "bearer") == {}
    assert "k" not in repr(key).replace("variable='V'", "")


def test_validate_warns_about_a_key_it_keeps_back(tmp_path):
    data = pipeline_config(OTHER[0], tmp_path)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    done = subprocess.run([sys.executable, "-m", "gristmill", "validate", str(path)],
                          capture_output=True, text=True, timeout=60,
                          env={"OPENAI_API_KEY": "sk-canary-validate", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert "warning: backend 'default': $OPENAI_API_KEY is set but not sent" in done.stderr
    assert "sk-canary-validate" not in done.stdout + done.stderr


@pytest.mark.integration
async def test_a_canary_openai_key_reaches_a_loopback_server_and_nothing_else(mock_server,
                                                                             tmp_path,
                                                                             monkeypatch):
    canary = "sk-canary-3b7e19d04c2a"
    data = pipeline_config(mock_server.base_url, tmp_path, seeds=3)  # no api_key_env
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    mock_server.reset()
    done = subprocess.run([sys.executable, "-m", "gristmill", "run", str(path), "--run-dir",
                           str(tmp_path / "run"), "--no-progress"], capture_output=True,
                          text=True, timeout=120,
                          env={"OPENAI_API_KEY": canary, "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    stats = mock_server.stats()
    sent = stats["last_request"]["headers"]["authorization"]
    assert sent == "sha256:" + hashlib.sha256(f"Bearer {canary}".encode()).hexdigest()[:16]
    assert canary not in str(stats) and canary not in done.stdout + done.stderr
    for file in (tmp_path / "run").rglob("*"):
        if file.is_file():
            assert canary.encode() not in file.read_bytes(), file
    monkeypatch.setenv("OPENAI_API_KEY", canary)
    config = validate_config(data)
    backend = OpenAIHTTPBackend("default", config.backends["default"])
    assert backend.headers["Authorization"] == f"Bearer {canary}"  # held here only
    assert canary not in repr(config) + repr(config.backends["default"]) + repr(backend)
    assert canary not in repr(vars(backend).get("config")) + repr(backend.capabilities)


@pytest.mark.parametrize("edge", [(), ("--fast",)], ids=["aiohttp", "fast"])
def test_both_mock_edges_show_a_credential_only_as_its_fingerprint(mock_server_factory, edge):
    server = mock_server_factory(*edge)
    body = json.dumps({"model": "mock", "messages": [{"role": "user", "content": "hi"}]})
    for header, value in (("Authorization", "Bearer sk-canary-edge"), ("api-key", "az-canary")):
        request = urllib.request.Request(server.base_url + "/chat/completions", body.encode(),
                                         {"Content-Type": "application/json", header: value})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200
        stats = server.stats()
        shown = stats["last_request"]["headers"][header.lower()]
        assert shown == "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:16]
        assert value not in json.dumps(stats)
        assert stats["last_request"]["headers"]["content-type"] == "application/json"
