"""`charrnn serve` as a real process on the loopback, driven by the official `openai` client
and by raw HTTP: completions whole and streamed, n > 1, stop strings, every bad request, the
API key, many clients at once (503 beyond the bound) and a clean stop."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import assert_usage_error, cli_env, run_cli

openai = pytest.importorskip("openai")


class Served:
    """One `charrnn serve RUN --port 0` process; its port is read from its first line."""

    def __init__(self, run_dir, *extra: str, tmp_path=None) -> None:
        self.stderr_path = tmp_path / f"serve-{id(self)}.err"
        with open(self.stderr_path, "w") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "charrnn", "serve", str(run_dir), "--port", "0", *extra],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env=cli_env(),
            )
        banner = self.proc.stdout.readline()
        assert "http://" in banner, banner + self.errors()
        self.host, _, port = banner.split("http://")[1].split("/")[0].rpartition(":")
        self.port = int(port)
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def client(self, key: str = "unused") -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=key, max_retries=0, timeout=60)

    def request(self, method: str, path: str, body=None, headers=None):
        """(status, headers, parsed JSON or text) of one raw request on a new connection."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        conn.request(method, path, data, headers or {})
        response = conn.getresponse()
        raw = response.read().decode()
        conn.close()
        kind = response.getheader("Content-Type", "")
        return response.status, response, json.loads(raw) if "json" in kind else raw

    def errors(self) -> str:
        return self.stderr_path.read_text()

    def stop(self, signum=signal.SIGTERM) -> tuple[int, str]:
        self.proc.send_signal(signum)
        out, _ = self.proc.communicate(timeout=30)
        return self.proc.returncode, out


@pytest.fixture(scope="module")
def server(trained_run, tmp_path_factory):
    served = Served(
        trained_run.dir, "--max-length", "100000", tmp_path=tmp_path_factory.mktemp("s")
    )
    yield served
    code, out = served.stop()
    assert code == 0 and "stopped" in out
    assert "Traceback" not in served.errors()


def test_completions_with_the_openai_client(server, trained_run):
    client = server.client()
    assert [m.id for m in client.models.list().data] == [trained_run.dir.name]
    result = client.completions.create(
        model=trained_run.dir.name, prompt="the ", max_tokens=50, n=3, seed=5
    )
    assert [c.index for c in result.choices] == [0, 1, 2]
    assert all(len(c.text) == 50 and c.finish_reason == "length" for c in result.choices)
    assert len({c.text for c in result.choices}) > 1
    assert set("".join(c.text for c in result.choices)) <= trained_run.vocab
    usage = result.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (4, 150, 154)
    again = client.completions.create(
        model=trained_run.dir.name, prompt="the ", max_tokens=50, n=3, seed=5
    )
    assert [c.text for c in again.choices] == [c.text for c in result.choices]


def test_greedy_completion_is_what_sample_writes(server, trained_run):
    result = server.client().completions.create(
        model=trained_run.dir.name, prompt="the", max_tokens=80, temperature=0
    )
    sampled = run_cli(
        "sample", trained_run.dir, "--prime", "the", "--length", "80", "--temperature", "0"
    )
    assert sampled.stdout == "the" + result.choices[0].text + "\n"


def test_streamed_completion_arrives_in_pieces_and_ends_with_done(server, trained_run):
    chunks = list(
        server.client().completions.create(
            model=trained_run.dir.name, prompt="a", max_tokens=3000, stream=True, n=2
        )
    )
    assert len(chunks) > 2
    for index in (0, 1):
        mine = [c.choices[0] for c in chunks if c.choices[0].index == index]
        assert len("".join(c.text for c in mine)) == 3000
        assert [c.finish_reason for c in mine][-1] == "length"
        assert all(c.finish_reason is None for c in mine[:-1])
    status, _, raw = server.request(
        "POST", "/v1/completions", {"prompt": "a", "max_tokens": 5, "stream": True}
    )
    assert status == 200 and raw.endswith("data: [DONE]\n\n")


def test_events_arrive_while_generation_goes_on_and_a_leaving_client_frees_its_stream(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    body = {"prompt": "the", "max_tokens": 100000, "stream": True}
    conn.request("POST", "/v1/completions", json.dumps(body))
    response = conn.getresponse()
    assert response.status == 200
    first = response.readline()
    assert first.startswith(b"data: {")
    assert server.request("GET", "/health")[2]["streams"] == 1  # still generating
    conn.close()
    deadline = time.monotonic() + 20
    while server.request("GET", "/health")[2]["streams"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.request("GET", "/health")[2]["streams"] == 0


def test_stop_strings_end_each_choice(server, trained_run):
    client = server.client()
    result = client.completions.create(
        model=trained_run.dir.name, prompt="the", max_tokens=400, n=4, stop=["e", "xq"], seed=1
    )
    for c in result.choices:
        assert "e" not in c.text
        assert c.finish_reason == "stop" or len(c.text) == 400
    assert any(c.finish_reason == "stop" for c in result.choices)
    stopped = sum(c.finish_reason == "stop" for c in result.choices)
    assert result.usage.completion_tokens == sum(len(c.text) for c in result.choices) + stopped
    pieces = list(
        client.completions.create(
            model=trained_run.dir.name, prompt="the", max_tokens=400, stop="e", stream=True
        )
    )
    text = "".join(p.choices[0].text for p in pieces)
    assert "e" not in text and pieces[-1].choices[0].finish_reason in ("stop", "length")


BAD_REQUESTS = [
    ({"prompt": "a", "colour": "red"}, "colour"),
    ({"prompt": "a", "temperature": "hot"}, "temperature"),
    ({"prompt": "a", "max_tokens": 2.5}, "max_tokens"),
    ({"prompt": "a", "max_tokens": 100001}, "max_tokens"),
    ({"prompt": "a", "n": True}, "n"),
    ({"prompt": "a", "top_p": 0}, "top_p"),
    ({"prompt": "a", "top_k": 0}, "top_k"),
    ({"prompt": "a", "seed": -1}, "seed"),
    ({"prompt": "a", "stream": "yes"}, "stream"),
    ({"prompt": "a", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"prompt": "a", "stop": ""}, "stop"),
    ({"prompt": "Ab€"}, "prompt"),
    ({"prompt": [1, 2]}, "prompt"),
    ({"prompt": "a", "logit_bias": {"3": 1}}, "logit_bias"),
    ({"prompt": "a", "echo": True}, "echo"),
    ({"prompt": "a", "logprobs": 2}, "logprobs"),
    ({"prompt": "a", "frequency_penalty": 0.5}, "frequency_penalty"),
    ({"prompt": "a", "presence_penalty": -1}, "presence_penalty"),
    ({"prompt": "a", "best_of": 3}, "best_of"),
    ({"prompt": "a", "stream_options": {"x": 1}}, "stream_options"),
]


@pytest.mark.parametrize(("body", "field"), BAD_REQUESTS)
def test_a_bad_request_gets_400_naming_its_field(server, body, field):
    status, _, answer = server.request("POST", "/v1/completions", body)
    assert status == 400, answer
    assert answer["error"]["param"] == field and answer["error"]["type"] == "invalid_request_error"
    assert field in answer["error"]["message"] or field == "prompt"


def test_bodies_that_are_not_requests_get_400_and_the_server_goes_on(server, trained_run):
    for raw, words in [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b"x" * ((1 << 20) + 1), "at most"),
    ]:
        status, _, answer = server.request("POST", "/v1/completions", raw)
        assert status == 400 and words in answer["error"]["message"]
    status, _, answer = server.request("POST", "/v1/completions", {"model": "gpt-4"})
    assert status == 404 and answer["error"]["param"] == "model"
    assert server.request("GET", "/nowhere")[0] == 404
    with pytest.raises(openai.BadRequestError, match="logit_bias"):
        server.client().completions.create(
            model=trained_run.dir.name, prompt="a", logit_bias={"1": 5}
        )
    assert server.request("GET", "/health")[2]["status"] == "ok"


def test_the_try_it_page_completes_a_form_without_script(server):
    status, response, page = server.request("GET", "/")
    assert status == 200 and "<form" in page and "<script" not in page
    assert "default-src 'none'" in response.getheader("Content-Security-Policy")
    form = b"prompt=the+&max_tokens=30&temperature=0&stop="
    status, _, page = server.request(
        "POST", "/", form, {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert status == 200 and '<pre class="sample">the <b>' in page
    status, _, page = server.request("POST", "/", b"prompt=A%E2%82%AC")
    assert status == 400 and "never saw" in page


def test_the_api_key_is_required_when_given(trained_run, tmp_path):
    served = Served(trained_run.dir, "--api-key", "s3cret", tmp_path=tmp_path)
    try:
        body = {"prompt": "a", "max_tokens": 5}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            status, _, answer = served.request("POST", "/v1/completions", body, headers)
            assert status == 401 and answer["error"]["code"] == "invalid_api_key"
        assert served.request("GET", "/v1/models")[0] == 401
        with pytest.raises(openai.AuthenticationError):
            served.client("wrong").completions.create(model=trained_run.dir.name, prompt="a")
        good = served.client("s3cret").completions.create(
            model=trained_run.dir.name, prompt="a", max_tokens=7
        )
        assert len(good.choices[0].text) == 7
        assert served.request("GET", "/health")[0] == 200
    finally:
        assert served.stop()[0] == 0


def test_32_clients_at_once_get_completions_or_503_with_retry_after(trained_run, tmp_path):
    served = Served(trained_run.dir, "--streams", "8", tmp_path=tmp_path)
    outcomes: list[tuple[int, str | None, int]] = []
    lock = threading.Lock()
    end = time.monotonic() + 2

    def client(i: int) -> None:
        while time.monotonic() < end:
            body = {"prompt": "the", "max_tokens": 200, "stream": i % 2 == 0, "n": 1 + i % 2}
            status, response, answer = served.request("POST", "/v1/completions", body)
            if status == 200 and body["stream"]:
                events = [json.loads(line[6:]) for line in answer.split("\n\n") if line[6:7] == "{"]
                made = sum(len(e["choices"][0]["text"]) for e in events)
            elif status == 200:
                made = sum(len(c["text"]) for c in answer["choices"])
            else:
                made = -1
                time.sleep(0.05)
            with lock:
                outcomes.append((status, response.getheader("Retry-After"), made))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert {status for status, _, _ in outcomes} == {200, 503}
        assert all(retry == "1" for status, retry, _ in outcomes if status == 503)
        sizes = {made for status, _, made in outcomes if status == 200}
        assert sizes <= {200, 400}  # n = 1 or 2 choices of 200 symbols each
        assert sum(status == 200 for status, _, _ in outcomes) >= 8
    finally:
        code, _ = served.stop()
    assert code == 0 and "Traceback" not in served.errors()


def open_stream(
    port: int, max_tokens: int
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """A streamed completion under way: its first event has arrived."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = {"prompt": "the", "max_tokens": max_tokens, "stream": True}
    conn.request("POST", "/v1/completions", json.dumps(body))
    response = conn.getresponse()
    assert response.readline().startswith(b"data: {")
    return conn, response


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_finishes_open_streams_and_a_second_signal_cuts_the_rest(
    trained_run, tmp_path, signum
):
    served = Served(
        trained_run.dir, "--max-length", "100000000", "--grace", "600", tmp_path=tmp_path
    )
    (conn, endless), (conn_short, short) = (
        open_stream(served.port, 10**8),
        open_stream(served.port, 3000),
    )
    served.proc.send_signal(signum)
    assert served.proc.stdout.readline().startswith("charrnn serve: stopping")
    finished = short.read().decode()  # the short one runs to its end
    assert finished.endswith("data: [DONE]\n\n") and '"finish_reason": "length"' in finished
    assert served.proc.poll() is None  # still in its grace
    code, out = served.stop(signum)  # the second signal cuts the endless one
    rest = endless.read().decode()
    conn.close()
    conn_short.close()
    assert code == 0 and "stopped (1 open streams finished, 1 cut)" in out
    assert '"error"' in rest and "[DONE]" not in rest
    assert "Traceback" not in served.errors()


def test_listening_beyond_the_loopback_without_a_key_warns(trained_run, tmp_path):
    served = Served(trained_run.dir, "--host", "0.0.0.0", tmp_path=tmp_path)
    assert served.stop()[0] == 0
    assert "warning: listening on 0.0.0.0" in served.errors()


def test_a_port_in_use_is_a_usage_error(server, trained_run):
    proc = run_cli("serve", trained_run.dir, "--port", str(server.port))
    assert_usage_error(proc, f"cannot listen on 127.0.0.1:{server.port}")
