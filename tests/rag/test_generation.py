"""runfleet.rag.generation: the OpenAI-compatible generator against a local fake endpoint
(answers, usage and cost, retries after 429 and 5xx, timeouts, the key from the named
environment variable), a local causal LM, and prompt templates."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from runfleet.rag.embedding import ModelNotFoundError
from runfleet.rag.generation import (
    DEFAULT_PROMPT,
    Generation,
    GenerationError,
    Generator,
    LocalGenerator,
    MissingAPIKeyError,
    OpenAIGenerator,
    PromptError,
    check_template,
    format_prompt,
)

KEY_ENV = "RUNFLEET_TEST_LLM_KEY"
KEY = "sk-test-0123456789abcdef"


class FakeEndpoint:
    """A /v1/chat/completions server in a thread. ``script`` says how to answer the next
    requests (``"ok"``, an HTTP status like ``429``, ``"hang"``); when it runs out, "ok"."""

    def __init__(self) -> None:
        self.script: list[Any] = []
        self.requests: list[dict[str, Any]] = []
        self.usage: dict[str, int] | None = {"prompt_tokens": 12, "completion_tokens": 3,
                                             "total_tokens": 15}
        self.answer = "  Mach 2.  "
        self.release = threading.Event()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                endpoint.requests.append({"path": self.path, "headers": headers,
                                          "body": json.loads(body or b"{}")})
                action = endpoint.script.pop(0) if endpoint.script else "ok"
                if action == "hang":
                    endpoint.release.wait(30)
                    return
                if action == "ok":
                    reply: dict[str, Any] = {
                        "id": "chatcmpl-1", "object": "chat.completion", "created": 0,
                        "model": "fake-model",
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant",
                                                 "content": endpoint.answer}}]}
                    if endpoint.usage is not None:
                        reply["usage"] = endpoint.usage
                    self._send(200, reply, {})
                else:
                    self._send(int(action), {"error": {"message": f"scripted {action}",
                                                       "type": "test"}},
                               {"retry-after-ms": "10"})

            def _send(self, status: int, payload: dict[str, Any],
                      headers: dict[str, str]) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEndpoint]:
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    server = FakeEndpoint()
    yield server
    server.close()


def make(endpoint: FakeEndpoint, **kwargs: Any) -> OpenAIGenerator:
    settings: dict[str, Any] = {"model": "fake-model", "api_key_env": KEY_ENV, "timeout": 5,
                                "max_retries": 2}
    settings.update(kwargs)
    return OpenAIGenerator(endpoint.base_url, **settings)


def test_answer_usage_and_cost(endpoint: FakeEndpoint) -> None:
    generator = make(endpoint, price_in=0.5, price_out=1.5, max_new_tokens=20)
    assert isinstance(generator, Generator)
    result = generator.generate("What speed? Context: ...")
    assert (result.text, result.tokens_in, result.tokens_out) == ("Mach 2.", 12, 3)
    assert result.cost == pytest.approx((12 * 0.5 + 3 * 1.5) / 1000)
    [request] = endpoint.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == f"Bearer {KEY}"
    body = request["body"]
    assert body["model"] == "fake-model" and body["temperature"] == 0.0
    assert body["messages"] == [{"role": "user", "content": "What speed? Context: ..."}]
    assert body["max_tokens"] == 20


def test_no_usage_or_prices_means_none(endpoint: FakeEndpoint) -> None:
    assert make(endpoint).generate("q").cost is None
    endpoint.usage = None
    assert make(endpoint, price_in=1, price_out=1).generate("q") == Generation("Mach 2.")
    assert "max_tokens" not in endpoint.requests[-1]["body"]


@pytest.mark.parametrize("status", [429, 503])
def test_rate_limit_or_server_error_then_success_is_retried(endpoint: FakeEndpoint,
                                                            status: int) -> None:
    endpoint.script = [status]
    assert make(endpoint).generate("q").text == "Mach 2."
    assert len(endpoint.requests) == 2


def test_rate_limited_every_time_fails_with_the_reason(endpoint: FakeEndpoint) -> None:
    endpoint.script = [429] * 10
    with pytest.raises(GenerationError, match=r"endpoint http://127\.0\.0\.1:\d+/v1 \(model "
                                              r"'fake-model'\) rate-limited \(HTTP 429\) on "
                                              r"each of 3 attempts: .*scripted 429"):
        make(endpoint, max_retries=2).generate("q")
    assert len(endpoint.requests) == 3


def test_a_hang_times_out_after_the_retries(endpoint: FakeEndpoint) -> None:
    endpoint.script = ["hang"] * 10
    start = time.monotonic()
    with pytest.raises(GenerationError, match=r"timed out: no answer within 0\.3 s, on each of "
                                              r"2 attempts"):
        make(endpoint, timeout=0.3, max_retries=1).generate("q")
    assert len(endpoint.requests) == 2
    assert time.monotonic() - start < 10


def test_a_hang_then_an_answer_succeeds(endpoint: FakeEndpoint) -> None:
    endpoint.script = ["hang"]
    assert make(endpoint, timeout=0.3, max_retries=1).generate("q").text == "Mach 2."
    assert len(endpoint.requests) == 2


def test_client_errors_are_not_retried(endpoint: FakeEndpoint) -> None:
    endpoint.script = [401]
    with pytest.raises(GenerationError, match=r"answered HTTP 401 \(not retried\)"):
        make(endpoint).generate("q")
    assert len(endpoint.requests) == 1


def test_unreachable_endpoint(endpoint: FakeEndpoint) -> None:
    base = endpoint.base_url
    endpoint.close()
    generator = OpenAIGenerator(base, model="m", api_key_env=KEY_ENV, timeout=2,
                                max_retries=0)
    with pytest.raises(GenerationError, match=r"cannot be reached after 1 attempt"):
        generator.generate("q")


def test_key_comes_from_the_named_variable(endpoint: FakeEndpoint,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTHER_KEY_VAR", "sk-other")
    make(endpoint, api_key_env="OTHER_KEY_VAR").generate("q")
    assert endpoint.requests[-1]["headers"]["authorization"] == "Bearer sk-other"
    make(endpoint, api_key_env=None).generate("q")  # a server without auth
    assert endpoint.requests[-1]["headers"]["authorization"] == "Bearer EMPTY"
    monkeypatch.delenv("OTHER_KEY_VAR")
    with pytest.raises(MissingAPIKeyError, match=r"environment variable OTHER_KEY_VAR .* is not "
                                                 r"set"):
        make(endpoint, api_key_env="OTHER_KEY_VAR")
    monkeypatch.setenv("OTHER_KEY_VAR", "")
    with pytest.raises(MissingAPIKeyError, match="OTHER_KEY_VAR"):
        make(endpoint, api_key_env="OTHER_KEY_VAR")
    # a key put where the variable's name goes is refused without being echoed
    with pytest.raises(ValueError, match="NAME of an environment variable") as caught:
        make(endpoint, api_key_env=KEY)
    assert KEY not in str(caught.value)
    generator = make(endpoint)
    assert KEY not in repr(generator) and KEY not in str(vars(generator))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"price_in": 1.0}, "give both price_in and price_out"),
    ({"price_in": -1.0, "price_out": 1.0}, "price_in must be None or a finite number >= 0"),
    ({"timeout": 0}, "timeout must be a number of seconds > 0"),
    ({"max_retries": -1}, "max_retries must be an integer >= 0"),
    ({"max_new_tokens": 0}, "max_new_tokens must be None or an integer >= 1"),
    ({"model": ""}, "model must be the endpoint's model name"),
])
def test_bad_settings(endpoint: FakeEndpoint, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(endpoint, **kwargs)


def test_format_prompt() -> None:
    prompt = format_prompt(None, "What is a shock?", ["First passage. ", "Second {context}"])
    assert prompt == DEFAULT_PROMPT.replace("{context}", "[1] First passage.\n\n"
                                            "[2] Second {context}").replace(
        "{question}", "What is a shock?")
    custom = format_prompt("Q: {question}\nDocs:\n{context}\nJSON like {\"a\": 1}",
                           "why {question}?", ["p"])
    assert custom == "Q: why {question}?\nDocs:\n[1] p\nJSON like {\"a\": 1}"
    assert format_prompt("closed book: {question}", "q", ["unused"]) == "closed book: q"
    with pytest.raises(PromptError, match=r"no \{question\} placeholder"):
        format_prompt("Context: {context}", "q", [])
    with pytest.raises(PromptError, match="must be a string"):
        check_template(42)
    assert check_template(DEFAULT_PROMPT) == DEFAULT_PROMPT


def test_local_generator(tiny_model: str) -> None:
    generator = LocalGenerator(tiny_model, max_new_tokens=8)
    assert isinstance(generator, Generator)
    first = generator.generate("Question: what is lift?\nAnswer:")
    assert isinstance(first.text, str) and first.cost is None
    assert first.tokens_in is not None and first.tokens_in > 0
    assert first.tokens_out is not None and 1 <= first.tokens_out <= 8
    assert generator.generate("Question: what is lift?\nAnswer:") == first  # greedy


def test_local_generator_uses_a_chat_template(tiny_model: str, tmp_path: Path) -> None:
    import shutil

    from transformers import AutoTokenizer

    folder = tmp_path / "chat"
    shutil.copytree(tiny_model, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    tokenizer.chat_template = ("{% for m in messages %}user says: {{ m['content'] }}\n"
                               "{% endfor %}assistant says:")
    tokenizer.save_pretrained(folder)
    prompt = "what is lift?"
    chat = LocalGenerator(str(folder), max_new_tokens=4)
    assert chat.chat_template is True
    expected: Any = tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                                  add_generation_prompt=True, return_dict=True)
    assert chat.generate(prompt).tokens_in == len(expected["input_ids"])
    plain = LocalGenerator(str(folder), max_new_tokens=4, chat_template=False)
    assert plain.generate(prompt).tokens_in == len(tokenizer(prompt)["input_ids"])


def test_local_generator_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"generator: no model folder at .*gone"):
        LocalGenerator(str(tmp_path / "gone"))
    with pytest.raises(ValueError, match="max_new_tokens must be an integer >= 1"):
        LocalGenerator(str(tmp_path), max_new_tokens=0)
