"""A local OpenAI-compatible server for tests and benchmarks: chat completions (incl.
response_format), embeddings and models, in the real wire format (shapes copied from recorded
OpenAI responses), with scripted answers and injectable faults."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULT_KINDS = ("429", "500", "timeout", "malformed", "truncated", "empty", "401", "400")

ERROR_429 = {
    "error": {
        "message": "Rate limit reached for gpt-4o-mini in organization org-test on requests per "
        "min (RPM): Limit 500, Used 500, Requested 1. Please try again in 120ms.",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
}
ERROR_500 = {
    "error": {
        "message": "The server had an error processing your request. Sorry about that! You can "
        "retry your request, or contact us through our help center at help.openai.com if you "
        "keep seeing this error.",
        "type": "server_error",
        "param": None,
        "code": None,
    }
}
ERROR_401 = {
    "error": {
        "message": "Incorrect API key provided: sk-test*****. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
}
ERROR_400_CONTEXT = {
    "error": {
        "message": "This model's maximum context length is 4097 tokens. However, your messages "
        "resulted in 4294 tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}


def body_hash(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _words(n: int, seed: str) -> str:
    vocab = (
        "river light garden signal memory harbor method pattern orbit lantern theory "
        "market canvas bridge season engine fabric island ledger meadow"
    ).split()
    rng = random.Random(seed)
    return " ".join(rng.choice(vocab) for _ in range(n))


def default_responder(body: dict) -> str:
    """Deterministic, plausible answers: lists for list prompts, questions for the user
    simulator, paragraphs for the assistant."""
    msgs = body.get("messages", [])
    system = next((m["content"] for m in msgs if m["role"] == "system"), "")
    last = msgs[-1]["content"] if msgs else ""
    h = body_hash({"m": msgs, "seed": body.get("seed")})[:8]
    rf = body.get("response_format") or {}
    m = re.search(r"\b(?:List|Write)\s+(\d+)", last)
    if m:
        n = int(m.group(1))
        subject = (re.findall(r'"([^"]+)"', last) or ["thing"])[0]
        items = [f"{subject} {_words(3, h + str(i))} {i}" for i in range(n)]
        if "Write" in last:
            items = [f"Why does {it} matter?" for it in items]
        if rf.get("type") in ("json_schema", "json_object"):
            return json.dumps({"items": items})
        return "Here you go:\n" + "\n".join(f"{i + 1}. {it}" for i, it in enumerate(items))
    if "role-playing" in system:
        return f"Could you explain more about {_words(4, h)}? ({h})"
    return f"Here is an answer about {last[:60]!r}: {_words(40, h)}. ({h})"


@dataclass
class Faults:
    rate: float = 0.0  # share of requests that get a fault
    kinds: tuple[str, ...] = ("429", "500", "timeout")
    retry_after_s: float = 0.1
    hang_s: float = 5.0  # how long a "timeout" fault stalls (make the client's timeout shorter)
    seed: int = 0
    always: Callable[[dict], str | None] | None = None  # body -> fault kind for every attempt


@dataclass
class Stats:
    requests: int = 0
    answered: int = 0
    by_hash: Counter = field(default_factory=Counter)  # answered requests per body hash
    faults: Counter = field(default_factory=Counter)


class FakeOpenAI:
    def __init__(
        self,
        responder: Callable[[dict], str] = default_responder,
        faults: Faults | None = None,
        latency_s: float = 0.0,
        model: str = "fake-model",
    ):
        self.responder = responder
        self.faults = faults or Faults()
        self.latency_s = latency_s
        self.model = model
        self.stats = Stats()
        self._lock = threading.Lock()
        self._rng = random.Random(self.faults.seed)
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self, port: int = 0) -> FakeOpenAI:
        fake = self

        class Handler(_Handler):
            owner = fake

        self._server = _Server(("127.0.0.1", port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def pick_fault(self, body: dict) -> str | None:
        if self.faults.always:
            kind = self.faults.always(body)
            if kind:
                return kind
        with self._lock:
            if self.faults.rate and self._rng.random() < self.faults.rate:
                return self._rng.choice(self.faults.kinds)
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default backlog of 5 refuses connections under fan-out

    def handle_error(self, request, client_address) -> None:
        pass  # clients that gave up on a stalled answer are part of the game


class _Handler(BaseHTTPRequestHandler):
    owner: FakeOpenAI
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _send_json(self, status: int, obj: dict, headers: dict | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("x-request-id", f"req_{random.getrandbits(48):012x}")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _not_found(self) -> None:
        error = {"message": f"Unknown path {self.path}", "type": "invalid_request_error",
                 "code": None}  # fmt: skip
        self._send_json(404, {"error": error})

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send_json(
                200,
                {
                    "object": "list",
                    "data": [
                        {
                            "id": self.owner.model,
                            "object": "model",
                            "created": 1700000000,
                            "owned_by": "convoforge-tests",
                        }
                    ],
                },
            )
        else:
            self._not_found()

    def do_POST(self) -> None:
        fake = self.owner
        raw = self.rfile.read(int(self.headers.get("content-length", 0)))
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            self._send_json(
                400,
                {
                    "error": {
                        "message": "We could not parse the JSON body",
                        "type": "invalid_request_error",
                        "code": None,
                    }
                },
            )
            return
        with fake._lock:
            fake.stats.requests += 1
        if fake.latency_s:
            time.sleep(fake.latency_s)
        fault = fake.pick_fault(body)
        if fault:
            with fake._lock:
                fake.stats.faults[fault] += 1
            self._fault(fault)
            return
        if self.path.endswith("/chat/completions"):
            self._chat(body)
        elif self.path.endswith("/embeddings"):
            self._embeddings(body)
        else:
            self._not_found()

    def _fault(self, kind: str) -> None:
        f = self.owner.faults
        if kind == "429":
            self._send_json(
                429,
                ERROR_429,
                {
                    "retry-after": f"{f.retry_after_s:g}",
                    "x-ratelimit-limit-requests": "500",
                    "x-ratelimit-remaining-requests": "0",
                    "x-ratelimit-reset-requests": f"{int(f.retry_after_s * 1000)}ms",
                },
            )
        elif kind == "500":
            self._send_json(500, ERROR_500)
        elif kind == "401":
            self._send_json(401, ERROR_401)
        elif kind == "400":
            self._send_json(400, ERROR_400_CONTEXT)
        elif kind == "timeout":
            time.sleep(f.hang_s)
            self._send_json(500, ERROR_500)
        elif kind in ("malformed", "truncated"):
            data = b'{"id": "chatcmpl-x", "object": "chat.completion", "choices": [{"ind'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            # "truncated" promises more bytes than it sends, then hangs up mid-body.
            extra = 500 if kind == "truncated" else 0
            self.send_header("content-length", str(len(data) + extra))
            self.end_headers()
            self.wfile.write(data)
            if extra:
                self.close_connection = True
        elif kind == "empty":
            self._chat_reply("", {"messages": []})

    def _chat(self, body: dict) -> None:
        fake = self.owner
        content = fake.responder(body)
        with fake._lock:
            fake.stats.answered += 1
            fake.stats.by_hash[body_hash(body)] += 1
        self._chat_reply(content, body)

    def _chat_reply(self, content: str, body: dict) -> None:
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        completion_tokens = len(content.split())
        self._send_json(
            200,
            {
                "id": f"chatcmpl-{random.getrandbits(64):016x}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model") or self.owner.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": content,
                            "refusal": None,
                            "annotations": [],
                        },
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
                "service_tier": "default",
                "system_fingerprint": "fp_convoforge_fake",
            },
        )

    def _embeddings(self, body: dict) -> None:
        inputs = body.get("input", [])
        inputs = [inputs] if isinstance(inputs, str) else inputs
        data = []
        for i, text in enumerate(inputs):
            rng = random.Random(hashlib.sha256(str(text).encode()).digest())
            vec = [rng.uniform(-0.1, 0.1) for _ in range(int(body.get("dimensions", 64)))]
            if body.get("encoding_format") == "base64":
                emb = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
            else:
                emb = vec
            data.append({"object": "embedding", "index": i, "embedding": emb})
        tokens = sum(len(str(t).split()) for t in inputs)
        self._send_json(
            200,
            {
                "object": "list",
                "data": data,
                "model": body.get("model"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--fault-rate", type=float, default=0.0)
    ap.add_argument("--latency", type=float, default=0.0)
    a = ap.parse_args()
    srv = FakeOpenAI(faults=Faults(rate=a.fault_rate), latency_s=a.latency).start(a.port)
    print(f"fake OpenAI server on {srv.url}", flush=True)
    threading.Event().wait()
