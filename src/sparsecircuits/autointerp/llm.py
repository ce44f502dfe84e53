"""The LLM explainer: any OpenAI-compatible chat endpoint, SAEBench / Delphi protocol.

Per unit (docs/autointerp.md), three chat calls:
1. explain: the `examples` top-activating spans of the explain split plus `random_examples`
   random ones, the tokens at or above the threshold marked <<like this>>; the reply's last
   "Explanation: ..." line is the explanation.
2. detection: held-out spans (the scorer's sample, activating and not, shuffled), unmarked;
   the model answers, per span, whether the explanation says the unit fires in it. Balanced
   accuracy against the truth is the unit's score (`scoring`).
3. fuzzing: held-out activating spans, half marked at the truly activating tokens and half at
   as many random tokens; the model answers whether each marking fits the explanation.

Faults: a timeout, a connection error, HTTP 429 or 5xx, or a reply that does not parse is
retried `retries` times with exponential backoff (`Retry-After` honoured up to `max_wait`),
then recorded as a failure of that unit; the run goes on. The API key is read from the
environment variable named by `key_env`, sent only in the Authorization header, and never
written to a file, a log line or an error message.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import numpy as np
from torch import Tensor

from sparsecircuits.autointerp import AutointerpError
from sparsecircuits.autointerp.corpus import Corpus, ExplainConfig
from sparsecircuits.autointerp.scoring import (
    HeldOut,
    Orientation,
    balanced_accuracy,
    held_out_contexts,
    span_location,
    span_max,
)
from sparsecircuits.autointerp.units import Unit

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class LLMSettings:
    """Where the chat model is and how patiently to ask it."""

    url: str
    """Base URL of the API (the client POSTs to `<url>/chat/completions`)."""
    model: str
    """Model name sent with every request."""
    key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key (unset: no Authorization header)."""
    timeout: float = 60.0
    """Seconds to wait for one reply."""
    retries: int = 4
    """Further attempts after a failed one."""
    backoff: float = 2.0
    """Seconds before the first retry, doubled for each next one."""
    max_wait: float = 60.0
    """Longest wait between attempts (also caps a server's Retry-After)."""
    examples: int = 10
    """Top-activating spans shown to the explainer."""
    random_examples: int = 5
    """Random spans shown with them."""

    def public(self) -> dict[str, Any]:
        """The settings that go into the cache (the key's variable name, never the key)."""
        return {"kind": "llm", "url": self.url, "model": self.model, "key_env": self.key_env,
                "examples": self.examples, "random_examples": self.random_examples}  # fmt: skip


class LLMFailure(Exception):
    """All attempts at one request failed; the message says why (never with the key)."""


class ChatClient:
    """A chat-completions client with retries (one per run, one connection pool)."""

    def __init__(self, settings: LLMSettings, sleep: Callable[[float], None] = time.sleep):
        if not settings.url.startswith(("http://", "https://")):
            raise AutointerpError(f"--llm-url must start with http:// or https://, got "
                                  f"{settings.url!r:.80}")  # fmt: skip
        self.settings = settings
        self.sleep = sleep
        key = os.environ.get(settings.key_env, "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(headers=headers, timeout=settings.timeout)
        self.endpoint = settings.url.rstrip("/") + "/chat/completions"

    def close(self) -> None:
        self._http.close()

    def ask(self, messages: list[dict[str, str]], parse: Callable[[str], T]) -> T:
        """The parsed reply to `messages`; LLMFailure after the last failed attempt."""
        s = self.settings
        body = {"model": s.model, "messages": messages, "temperature": 0.0}
        problem = "no attempt made"
        for attempt in range(s.retries + 1):
            wait = min(s.backoff * 2**attempt, s.max_wait)
            try:
                reply = self._http.post(self.endpoint, json=body)
            except httpx.TimeoutException:
                problem = f"timed out after {s.timeout:g}s"
            except httpx.HTTPError as exc:  # the class name only: messages may echo headers
                problem = f"connection failed ({type(exc).__name__})"
            else:
                if reply.status_code == 200:
                    try:
                        content = reply.json()["choices"][0]["message"]["content"]
                        if not isinstance(content, str):
                            raise ValueError("no text content")
                        return parse(content)
                    except (ValueError, KeyError, IndexError, TypeError) as exc:
                        problem = f"unparseable reply ({str(exc)[:80]})"
                else:
                    problem = f"HTTP {reply.status_code}"
                    retry_after = reply.headers.get("retry-after", "")
                    if retry_after.replace(".", "", 1).isdigit():
                        wait = min(float(retry_after), s.max_wait)
                    if reply.status_code not in (408, 409, 429) and reply.status_code < 500:
                        raise LLMFailure(f"{problem} from {self.endpoint} (not retried)")
            log.info("llm: attempt %d failed: %s", attempt + 1, problem)
            if attempt < s.retries:
                self.sleep(wait)
        raise LLMFailure(f"{problem} from {self.endpoint} after {s.retries + 1} attempts")


# ----------------------------------------------------------------------------- prompts


def render_span(strings: Sequence[str], ids: Sequence[int], marked: Sequence[bool]) -> str:
    """Span text with marked tokens as <<token>>; newlines shown as ⏎ (one line per span)."""
    parts = []
    for i, m in zip(ids, marked, strict=True):
        text = strings[i].replace("\n", "⏎")
        parts.append(f"<<{text}>>" if m else text)
    return "".join(parts)


EXPLAIN_SYSTEM = (
    "You are a meticulous AI researcher studying one unit of a language model trained on "
    "Python source code. You see text spans from Python files; in each, the tokens where the "
    "unit activates strongly are marked <<like this>> (some spans may have no marks). Find "
    "the pattern: what the marked tokens are and where they occur in the code. Be concise "
    "and specific (under 25 words). End your reply with one line 'Explanation: <pattern>'."
)

DETECT_SYSTEM = (
    "You are checking an explanation of one unit of a language model trained on Python "
    "source code. Given the explanation and numbered text spans, decide for each span "
    "whether the unit activates somewhere in it, according to the explanation. Reply with "
    "only a JSON list of 0s and 1s, one per span, in order."
)

FUZZ_SYSTEM = (
    "You are checking an explanation of one unit of a language model trained on Python "
    "source code. In each numbered span some tokens are marked <<like this>>. Decide for "
    "each span whether the marked tokens are exactly the kind the explanation describes. "
    "Reply with only a JSON list of 0s and 1s, one per span, in order."
)


def parse_explanation(reply: str) -> str:
    """The text after the last 'Explanation:' in the reply; ValueError if none."""
    found = re.findall(r"explanation\s*:\s*(.+)", reply, flags=re.IGNORECASE)
    if not found or not found[-1].strip():
        raise ValueError("no 'Explanation:' line")
    return found[-1].strip().strip("*").strip()[:400]


def parse_labels(n: int) -> Callable[[str], list[bool]]:
    """A parser of a JSON list of n zeros and ones (the last [...] in the reply)."""

    def parse(reply: str) -> list[bool]:
        found = re.findall(r"\[[^\[\]]*\]", reply)
        if not found:
            raise ValueError("no JSON list")
        values = json.loads(found[-1])
        if len(values) != n or any(v not in (0, 1, True, False) for v in values):
            raise ValueError(f"expected {n} zeros and ones")
        return [bool(v) for v in values]

    return parse


def _numbered(spans: Sequence[str]) -> str:
    return "\n".join(f"{k + 1}. {s}" for k, s in enumerate(spans))


class LLMExplainer:
    """Explanations and detection / fuzzing scores from a chat model."""

    kind = "llm"

    def __init__(self, settings: LLMSettings, client: ChatClient | None = None):
        self.llm = settings
        self.client = client or ChatClient(settings)

    def settings(self) -> dict[str, Any]:
        return self.llm.public()

    def close(self) -> None:
        self.client.close()

    def run(self, corpus: Corpus, units: Sequence[Unit], acts_e: Tensor, acts_h: Tensor,
            orients: Sequence[Orientation], cfg: ExplainConfig) -> Iterator[tuple[Unit, dict]]:
        rows_h, length = acts_h.shape[:2]
        explain_view = acts_e.view(len(corpus.explain.rows), length, -1)  # [n_rows, L, U]
        for u, (unit, o) in enumerate(zip(units, orients, strict=True)):
            result: dict[str, Any] = {"status": "inactive", "explanation": None,
                                      "detection": None, "fuzzing": None, "sign": o.sign,
                                      "threshold": o.threshold}  # fmt: skip
            held = held_out_contexts(acts_h[..., u], o.threshold, cfg.span, cfg.contexts,
                                     unit.name, cfg.seed)  # fmt: skip
            if o.spread <= 0 or not len(held.pos) or not len(held.neg):
                yield unit, result
                continue
            try:
                result.update(self._one(corpus, unit, explain_view[..., u], acts_h[..., u],
                                        held, o, cfg))  # fmt: skip
            except LLMFailure as exc:
                result.update(status="failed", error=str(exc))
                log.warning("llm: %s failed: %s", unit.name, exc)
            yield unit, result

    def _span(self, corpus: Corpus, rows: np.ndarray, acts: Tensor, row: int, start: int,
              cfg: ExplainConfig, marks: Sequence[bool] | None, threshold: float) -> str:  # fmt: skip
        lo = corpus.skip + start
        ids = corpus.tokens[int(rows[row]), lo : lo + cfg.span].tolist()
        if marks is None:
            marks = (acts[row, start : start + cfg.span] >= threshold).tolist()
        return render_span(corpus.strings, ids, marks)

    def _one(self, corpus: Corpus, unit: Unit, acts_e: Tensor, acts_h: Tensor, held: HeldOut,
             o: Orientation, cfg: ExplainConfig) -> dict[str, Any]:  # fmt: skip
        rng = np.random.default_rng([cfg.seed, zlib.crc32(unit.name.encode())])
        span = cfg.span
        rows_e, rows_h = corpus.explain.rows, corpus.held_out.rows
        peaks = span_max(acts_e, span).flatten()  # [n_rows * k]
        per_row = acts_e.shape[1] // span
        order = peaks.argsort(descending=True)[: self.llm.examples].tolist()
        top = [s for s in order if float(peaks[s]) >= o.threshold]
        others = rng.permutation(len(peaks))[: self.llm.random_examples].tolist()
        shown = [self._span(corpus, rows_e, acts_e, s // per_row, (s % per_row) * span, cfg,
                            None, o.threshold) for s in [*top, *others]]  # fmt: skip
        explanation = self.client.ask(
            [{"role": "system", "content": EXPLAIN_SYSTEM},
             {"role": "user", "content": "Spans:\n" + _numbered(shown)}],
            parse_explanation,
        )  # fmt: skip
        # detection: the scorer's sample, unmarked, shuffled
        chosen = [(s, True) for s in held.pos] + [(s, False) for s in held.neg]
        chosen = [chosen[i] for i in rng.permutation(len(chosen))]
        texts = [self._span(corpus, rows_h, acts_h, *span_location(held, s, span), cfg,
                            [False] * span, o.threshold) for s, _ in chosen]  # fmt: skip
        said = self.client.ask(
            [{"role": "system", "content": DETECT_SYSTEM},
             {"role": "user", "content": f"Explanation: {explanation}\n\nSpans:\n"
                                         + _numbered(texts)}],
            parse_labels(len(texts)),
        )  # fmt: skip
        said_arr, truth = np.array(said), np.array([t for _, t in chosen])
        detection = balanced_accuracy(said_arr[truth], said_arr[~truth])
        # fuzzing: activating spans, marked truly or at random tokens
        fuzz_texts, fuzz_truth = [], []
        for k, s in enumerate(held.pos):
            row, start = span_location(held, s, span)
            true_marks = (acts_h[row, start : start + span] >= o.threshold).tolist()
            if k % 2 == 0:
                marks = true_marks
            else:
                picks = set(rng.permutation(span)[: max(1, sum(true_marks))].tolist())
                marks = [j in picks for j in range(span)]
            fuzz_texts.append(self._span(corpus, rows_h, acts_h, row, start, cfg, marks,
                                         o.threshold))  # fmt: skip
            fuzz_truth.append(k % 2 == 0)
        fuzz_said = self.client.ask(
            [{"role": "system", "content": FUZZ_SYSTEM},
             {"role": "user", "content": f"Explanation: {explanation}\n\nSpans:\n"
                                         + _numbered(fuzz_texts)}],
            parse_labels(len(fuzz_texts)),
        )  # fmt: skip
        fs, ft = np.array(fuzz_said), np.array(fuzz_truth)
        fuzzing = balanced_accuracy(fs[ft], fs[~ft]) if ft.any() and (~ft).any() else None
        return {"status": "ok", "explanation": explanation, "detection": detection,
                "fuzzing": fuzzing, "contexts": [len(held.pos), len(held.neg)]}  # fmt: skip
