"""`charrnn serve`: the OpenAI-compatible completions API over HTTP, so that the clients
applications already use work unchanged. Requests are checked field by field (a bad one gets
400 and the API's error object naming the field); generation is one Batcher for all clients."""

from __future__ import annotations

import contextlib
import hmac
import html
import json
import secrets
import socket
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from charrnn import html as pages
from charrnn.batcher import Batcher, Job
from charrnn.checkpoint import Run
from charrnn.errors import ConfigError, VocabError
from charrnn.sample import Sampler
from charrnn.stops import unescape

MAX_BODY = 1 << 20  # bytes: a request body beyond this is refused
DRAIN_BYTES = 16 << 20  # a refused body up to this size is read first, so the reply arrives
MAX_STOPS = 4  # stop strings a request may give, as the API allows
READ_TIMEOUT = 30  # seconds a client may take to send its request
FLUSH_SECONDS = 0.02  # a stream sends what was made at most this often: fewer wake-ups
RETRY_AFTER = 1  # seconds, in a 503's Retry-After
# What charrnn cannot honour: allowed only at the API's default (None: absent or null).
UNSUPPORTED = {
    "echo": (False,),
    "logprobs": (None,),
    "logit_bias": (None, {}),
    "frequency_penalty": (0, 0.0),
    "presence_penalty": (0, 0.0),
    "best_of": (1,),
    "suffix": (None, ""),
}
KNOWN = {
    *UNSUPPORTED,
    *("model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "n", "stop", "seed"),
    *("stream", "stream_options", "user"),
}


class ApiError(Exception):
    """A request the API refuses: its HTTP status, message, the field at fault and a code."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, code=None):
        super().__init__(message)
        self.param, self.status, self.code = param, status, code

    def body(self) -> dict:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {
            "error": {"message": str(self), "type": kind, "param": self.param, "code": self.code}
        }


@dataclass
class Completion:
    """A checked request: prompts, how many choices each, the sampling settings and limits."""

    prompts: list[str]
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float | None = None
    top_k: int | None = None
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int | None = None
    stream: bool = False
    include_usage: bool = False


def _number(body: dict, name: str, low: float, high: float, integer: bool = False):
    """body[name] (None when absent or null) checked as an int or a number in [low, high]."""
    value = body.get(name)
    if value is None:
        return None
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ApiError(f"{name} must be {'an integer' if integer else 'a number'}", name)
    if not low <= value <= high:
        raise ApiError(f"{name} must be in [{low}, {high}], got {value}", name)
    return value


def _strings(body: dict, name: str, most: int) -> list[str] | None:
    """body[name] as a list of strings: one string, or a list of 1 to `most` strings."""
    value = body.get(name)
    if value is None:
        return None
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ApiError(f"{name} must be a string or a list of strings", name)
    if not 1 <= len(values) <= most:
        raise ApiError(f"{name} must hold 1 to {most} strings, got {len(values)}", name)
    return values


def parse_completion(body: object, max_length: int, capacity: int, model: str) -> Completion:
    """A POST /v1/completions body checked against the API and this server's limits."""
    if not isinstance(body, dict):
        raise ApiError("the request body must be a JSON object")
    for name in body:
        if name not in KNOWN:
            raise ApiError(f"unknown field {name!r}", name)
    for name, defaults in UNSUPPORTED.items():
        value = body.get(name)
        if not any(value == d and type(value) is type(d) for d in defaults) and value is not None:
            raise ApiError(f"{name} is not supported by charrnn (only its default)", name)
    if body.get("model") is not None and body["model"] != model:
        message = f"no model {body['model']!r}; this server has {model!r}"
        raise ApiError(message, "model", 404, "model_not_found")
    if body.get("user") is not None and not isinstance(body["user"], str):
        raise ApiError("user must be a string", "user")
    prompts = _strings(body, "prompt", capacity) or [""]
    c = Completion(prompts)
    c.max_tokens = _number(body, "max_tokens", 1, max_length, integer=True) or c.max_tokens
    temperature = _number(body, "temperature", 0, 100)
    c.temperature = c.temperature if temperature is None else float(temperature)
    top_p = _number(body, "top_p", 0, 1)
    if top_p == 0:
        raise ApiError("top_p must be above 0", "top_p")
    c.top_p = None if top_p is None else float(top_p)
    c.top_k = _number(body, "top_k", 1, 2**31, integer=True)
    c.n = _number(body, "n", 1, capacity, integer=True) or 1
    if c.n * len(prompts) > capacity:
        raise ApiError(f"n times the prompts must be at most {capacity}", "n")
    stops = _strings(body, "stop", MAX_STOPS) or []
    if "" in stops:
        raise ApiError("a stop string cannot be empty", "stop")
    c.stop = tuple(stops)
    c.seed = _number(body, "seed", 0, 2**63 - 1, integer=True)
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise ApiError("stream must be true or false", "stream")
    c.stream = bool(body.get("stream"))
    options = body.get("stream_options")
    if options is not None:
        usage = options.get("include_usage") if isinstance(options, dict) else None
        if (
            not isinstance(options, dict)
            or set(options) - {"include_usage"}
            or not isinstance(usage, (bool, type(None)))
        ):
            message = "stream_options may hold only include_usage, true or false"
            raise ApiError(message, "stream_options")
        c.include_usage = bool(usage)
    return c


class Server(ThreadingHTTPServer):
    """The HTTP server: one thread per connection (at most `max_connections`), all of them
    handing generation to one Batcher."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # connections waiting to be accepted (socketserver's 5 resets bursts)

    def __init__(
        self,
        address,
        run: Run,
        model: str,
        max_length: int,
        capacity: int,
        api_key: str | None = None,
    ) -> None:
        self.run, self.model, self.max_length, self.api_key = run, model, max_length, api_key
        self.batcher = Batcher(run, capacity)
        self.created = int(time.time())
        self.max_connections = 4 * capacity + 16
        self.connections = threading.BoundedSemaphore(self.max_connections)
        self.generating = 0  # requests whose generation is under way or being sent
        self.generating_lock = threading.Lock()
        super().__init__(address, Handler)

    def stop(self, grace: float, cut_now: threading.Event) -> tuple[int, int]:
        """Stop accepting, let open generations finish for up to `grace` seconds (or until
        `cut_now` is set), then cut the rest; (streams finished, streams cut)."""
        batcher = self.batcher
        open_at_stop = batcher.busy
        batcher.refuse_new()
        self.shutdown()
        deadline = time.monotonic() + grace
        while batcher.busy and time.monotonic() < deadline and not cut_now.wait(0.05):
            pass
        cut = batcher.busy
        batcher.close()
        deadline = time.monotonic() + 2  # for the cut replies' last bytes
        while self.generating and time.monotonic() < deadline:
            time.sleep(0.02)
        self.server_close()
        return open_at_stop - cut, cut

    def process_request(self, request, client_address) -> None:
        """Serve the connection in a thread, or answer 503 at once when too many are open."""
        if not self.connections.acquire(blocking=False):
            error = ApiError("too many connections; retry shortly", status=503)
            body = json.dumps(error.body()).encode()
            head = (
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                f"Retry-After: {RETRY_AFTER}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            with contextlib.suppress(OSError):
                request.sendall(head.encode() + body)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def handle_error(self, request, client_address) -> None:
        """A connection that fails (the client left, a read timed out) ends quietly; anything
        else is one line on stderr, and the server goes on."""
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            print(f"charrnn serve: error serving {client_address[0]}: {error!r}", file=sys.stderr)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connections.release()


class Handler(BaseHTTPRequestHandler):
    """One connection's requests: the routes, the checks, and replies whole or as events."""

    protocol_version = "HTTP/1.1"
    server_version = "charrnn"
    timeout = READ_TIMEOUT
    server: Server

    def setup(self) -> None:
        """Send each event at once: Nagle's algorithm would hold one back for the client's
        delayed ACK (40 ms) on a kept-alive connection."""
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args) -> None:
        """Quiet: a server for applications logs nothing per request."""

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path == "/health":
            batcher = self.server.batcher
            self.reply(200, {"status": "ok", "streams": batcher.busy, "capacity": batcher.capacity})
        elif path == "/":
            self.reply_page(200, try_page(self.server, {}, None))
        elif path in ("/v1/models", f"/v1/models/{self.server.model}"):
            if self.authorised():
                model = {
                    "id": self.server.model,
                    "object": "model",
                    "created": self.server.created,
                    "owned_by": "charrnn",
                }
                listing = {"object": "list", "data": [model]}
                self.reply(200, listing if path == "/v1/models" else model)
        else:
            self.fail(ApiError(f"no route GET {path}", status=404))

    def do_POST(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        try:
            raw = self.read_body()
            if path not in ("/v1/completions", "/"):
                raise ApiError(f"no route POST {path}", status=404)
            if path == "/":
                with self.generation():
                    self.try_it(raw)
                return
            if not self.authorised():
                return
            try:
                body = json.loads(raw)
            except (ValueError, RecursionError) as exc:
                raise ApiError(f"the body is not valid JSON ({exc})") from None
            s = self.server
            request = parse_completion(body, s.max_length, s.batcher.capacity, s.model)
            with self.generation():
                jobs = self.start(request)
                if request.stream:
                    self.stream(request, jobs)
                else:
                    self.reply(200, self.complete(request, jobs))
        except ApiError as exc:
            self.fail(exc)

    @contextlib.contextmanager
    def generation(self):
        """Count this reply among those a stop waits for."""
        s = self.server
        with s.generating_lock:
            s.generating += 1
        try:
            yield
        finally:
            with s.generating_lock:
                s.generating -= 1

    def authorised(self) -> bool:
        """Whether the request carries the server's API key (answering 401 when not)."""
        key = self.server.api_key
        given = self.headers.get("Authorization", "")
        if key is None or hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
            return True
        self.fail(
            ApiError(
                "missing or wrong API key (Authorization: Bearer KEY)",
                status=401,
                code="invalid_api_key",
            )
        )
        return False

    def read_body(self) -> bytes:
        """The request's body; a body above MAX_BODY is read and dropped (up to DRAIN_BYTES,
        beyond which the connection closes unread) and refused."""
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or length is None or not length.isdigit():
            self.close_connection = True
            raise ApiError("the body needs a Content-Length")
        size = int(length)
        if size > MAX_BODY:
            if size > DRAIN_BYTES:
                self.close_connection = True
            else:
                while size > 0 and (piece := self.rfile.read(min(size, 1 << 16))):
                    size -= len(piece)
            raise ApiError(f"the body is {int(length):,} bytes; at most {MAX_BODY:,} are read")
        return self.rfile.read(size)

    def start(self, request: Completion) -> list[Job]:
        """A job per prompt, admitted to the batcher; 503 when they do not all fit."""
        vocab, jobs = self.server.run.vocab, []
        for prompt in request.prompts:
            try:
                ids = vocab.encode(prompt) if prompt else np.array([start_id(vocab)])
            except VocabError as exc:
                raise ApiError(f"prompt {exc}", "prompt") from None
            sampler = Sampler(request.temperature, request.top_k, request.top_p, request.seed)
            seeded = request.seed is not None
            jobs.append(Job(ids, request.n, request.max_tokens, sampler, request.stop, seeded))
            if not prompt:
                jobs[-1].prompt_symbols = 0
        for i, job in enumerate(jobs):
            if not self.server.batcher.submit(job):
                for started in jobs[:i]:
                    started.cancel()
                raise ApiError("every sampler is busy; retry shortly", status=503)
        return jobs

    def complete(self, request: Completion, jobs: list[Job]) -> dict:
        """Wait for the jobs to end; the completion object the API answers with."""
        for job in jobs:
            job.ended.wait()
            if job.cut_off:
                raise ApiError("the server stopped before the completion ended", status=503)
        choices = [
            {
                "text": "".join(c.text),
                "index": i,
                "logprobs": None,
                "finish_reason": c.finish_reason,
            }
            for i, c in enumerate(c for job in jobs for c in job.choices)
        ]
        return {**self.head(), "choices": choices, "usage": usage(jobs)}

    def head(self) -> dict:
        if not hasattr(self, "completion_id"):
            self.completion_id = f"cmpl-{secrets.token_hex(12)}"
        return {
            "id": self.completion_id,
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.server.model,
        }

    def stream(self, request: Completion, jobs: list[Job]) -> None:
        """Server-sent events: each choice's new text as it is made (at most every
        FLUSH_SECONDS), its finish_reason in its last event, then `data: [DONE]`."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        head = self.head()
        taken = [[0] * len(job.choices) for job in jobs]
        seen = [0] * len(jobs)
        reported = [[False] * len(job.choices) for job in jobs]
        try:
            while not all(all(r) for r in reported):
                for j, job in enumerate(jobs):
                    job.wait(seen[j], FLUSH_SECONDS)
                    seen[j] = job.made
                    reasons = [c.finish_reason for c in job.choices]  # before the text: its end
                    pieces, cut_off = job.take(taken[j]), job.cut_off
                    if cut_off:
                        error = ApiError(
                            "the server stopped before the completion ended", status=503
                        )
                        self.write_event(error.body())
                        self.write_chunk(b"")
                        return
                    for i, (piece, reason) in enumerate(zip(pieces, reasons, strict=True)):
                        if (piece or reason) and not reported[j][i]:
                            index = j * request.n + i
                            choice = {
                                "text": piece,
                                "index": index,
                                "logprobs": None,
                                "finish_reason": reason,
                            }
                            self.write_event({**head, "choices": [choice]})
                            reported[j][i] = reason is not None
                going = [job for job in jobs if not job.done]
                if going:  # pace the events, but send the last one as soon as it is made
                    going[0].ended.wait(FLUSH_SECONDS)
            if request.include_usage:
                self.write_event({**head, "choices": [], "usage": usage(jobs)})
            self.write_chunk(b"data: [DONE]\n\n")
            self.write_chunk(b"")
        except OSError:  # the client went away: its streams stop at the next step
            for job in jobs:
                job.cancel()
            self.close_connection = True

    def write_event(self, data: dict) -> None:
        self.write_chunk(f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode())

    def write_chunk(self, data: bytes) -> None:
        """One piece of a chunked reply (an empty one ends it)."""
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def try_it(self, raw: bytes) -> None:
        """POST / from the try-it page's form: one completion, shown in the page."""
        form = {k: v[-1] for k, v in urllib.parse.parse_qs(raw.decode("utf-8", "replace")).items()}
        s, status = self.server, 200
        try:
            if s.api_key is not None and not hmac.compare_digest(
                form.get("api_key", "").encode(), s.api_key.encode()
            ):
                raise ApiError("missing or wrong API key", "api_key", 401)
            request = parse_completion(form_body(form), s.max_length, s.batcher.capacity, s.model)
            result = "".join(
                c["text"] for c in self.complete(request, self.start(request))["choices"]
            )
        except ApiError as exc:
            status, result = exc.status, None
            form["error"] = str(exc)
        self.reply_page(status, try_page(s, form, result))

    def reply(self, status: int, data: dict, headers: dict | None = None) -> None:
        self.send_body(
            status, json.dumps(data, ensure_ascii=False).encode(), "application/json", headers
        )

    def reply_page(self, status: int, page: str) -> None:
        headers = {"Content-Security-Policy": pages.CSP}
        self.send_body(status, page.encode(), "text/html; charset=utf-8", headers)

    def send_body(self, status: int, body: bytes, kind: str, headers: dict | None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            self.close_connection = True

    def fail(self, error: ApiError) -> None:
        retry = {"Retry-After": str(RETRY_AFTER)} if error.status == 503 else None
        self.reply(error.status, error.body(), retry)


FORM_NUMBERS = {"max_tokens": int, "seed": int, "top_k": int, "temperature": float, "top_p": float}


def form_body(form: dict[str, str]) -> dict:
    """The try-it form as a completions body: numbers parsed, empty fields left out, the stop
    string's escapes (\\n) turned into characters."""
    body: dict = {"prompt": form.get("prompt", "")}
    for name, kind in FORM_NUMBERS.items():
        value = form.get(name, "").strip()
        if value:
            try:
                body[name] = kind(value)
            except ValueError:
                raise ApiError(f"{name} must be a number, got {value!r}", name) from None
    if form.get("stop"):
        try:
            body["stop"] = unescape(form["stop"])
        except ConfigError as exc:
            raise ApiError(str(exc), "stop") from None
    return body


def try_page(server: Server, form: dict[str, str], result: str | None) -> str:
    """GET /: a form to try the model (it posts back to /, so the page runs no script)."""
    e = html.escape
    value = {name: e(form.get(name, "")) for name in ("prompt", "stop", *FORM_NUMBERS)}
    value["max_tokens"] = value["max_tokens"] or "200"
    value["temperature"] = value["temperature"] or "0.8"
    fields = "".join(
        f'<label>{name} <input name="{name}" value="{value[name]}" size="8"></label> '
        for name in ("max_tokens", "temperature", "top_k", "top_p", "seed", "stop")
    )
    key = ' <label>API key <input name="api_key" type="password"></label>' if server.api_key else ""
    out = ""
    if "error" in form:
        out = f'<p class="error">error: {e(form["error"])}</p>'
    elif result is not None:
        shown = f"{e(form.get('prompt', ''))}<b>{e(result)}</b>"
        out = f'<h2>Completion</h2><pre class="sample">{shown}</pre>'
    vocab = server.run.vocab
    body = (
        f"<h1>charrnn serve: {e(server.model)}</h1>"
        f"<p>{len(vocab)} symbols, {server.run.model.layers}-layer {server.run.model.cell} "
        f"H {server.run.model.hidden_size}. The API: <code>POST /v1/completions</code> "
        "(OpenAI-compatible), <code>GET /v1/models</code>, <code>GET /health</code>. "
        "In stop, \\n is a newline.</p>"
        f'<form method="post" action="/"><p><textarea name="prompt" rows="4" cols="80">'
        f"{value['prompt']}</textarea></p><p>{fields}{key}</p>"
        '<p><button type="submit">Complete</button></p></form>'
        f"{out}"
    )
    return pages.page(f"charrnn serve {server.model}", body)


def start_id(vocab) -> int:
    """What an empty prompt starts from: a newline when the vocabulary has one, as `sample`."""
    return vocab.index.get("\n", 0)


def usage(jobs: list[Job]) -> dict:
    """Prompt and completion sizes in symbols (each prompt counted once, whatever n)."""
    prompt = sum(job.prompt_symbols for job in jobs)
    made = sum(c.symbols for job in jobs for c in job.choices)
    return {"prompt_tokens": prompt, "completion_tokens": made, "total_tokens": prompt + made}
