"""Model calls through litellm: one client per command run, with a prompt-hash cache in DuckDB,
accounting in `llm_calls`, a cost ceiling, a per-minute rate limit, retries with backoff on
transient errors, and JSON replies validated against pydantic schemas (re-asked with the error).

litellm is imported here, on first use, never at `memkit --help` or on the heuristic path.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from pydantic import BaseModel, ValidationError

from memkit.canonical import content_hash
from memkit.config import Config, LLMConfig
from memkit.errors import MemkitError
from memkit.tokens import count_tokens

HEURISTIC = {"heuristic", "none", ""}


class LLMUnavailable(MemkitError):
    "The model cannot be used at all (unknown model, no API key, refused request)."


class LLMCallFailed(MemkitError):
    "A model call still failed after its retries (timeouts, rate limits, server errors)."


class InvalidReply(MemkitError):
    "The model's reply is not valid JSON for the schema, even after re-asking."


class PromptError(MemkitError):
    "A prompt template is missing, broken, or did something the sandbox forbids."


class BudgetExceeded(MemkitError):
    "The next call could take the spend past --max-cost."


class LLMSettings(LLMConfig):
    """memkit.yaml's `llm:` section, the model it calls, and any command-line overrides."""

    model: str

    @classmethod
    def from_config(cls, cfg: Config, model: str, **overrides) -> "LLMSettings":
        values = {**cfg.llm.model_dump(), "model": model}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def resolve_model(cfg: Config, flag: Optional[str] = None) -> Optional[str]:
    """The model to distill with: --model, else MEMKIT_MODEL, else `model:` in memkit.yaml; None = heuristic."""
    value = next((v for v in (flag, os.environ.get("MEMKIT_MODEL"), cfg.model) if v is not None), None)
    if value is None or value.strip().lower() in HEURISTIC:
        return None
    return value.strip()


@dataclass
class ModelRun:
    """Everything the LLM path of one distill needs besides the bank's connection."""

    settings: LLMSettings
    lance_dir: Path
    templates_dir: Optional[Path] = None
    judge: Optional[LLMSettings] = None
    command: str = "distill"


@dataclass
class Reply:
    value: Any  # the validated pydantic object
    text: str
    cached: bool
    key: str


# ---------------------------------------------------------------- parsing


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)


def parse_json(text: str) -> Any:
    """The JSON object in a reply: bare, in a ```json fence, or the outermost {...} in prose."""
    s = (text or "").strip()
    m = _FENCE.match(s)
    if m:
        s = m.group(1)
    try:
        return json.loads(s)
    except json.JSONDecodeError as first:
        start, end = s.find("{"), s.rfind("}")
        if 0 <= start < end:
            try:
                return json.loads(s[start:end + 1])
            except json.JSONDecodeError:
                pass
        raise InvalidReply(f"not valid JSON ({first.msg} at line {first.lineno} column {first.colno})") from None


def validate(text: str, schema: type[BaseModel], check: Optional[Callable[[Any], None]] = None) -> Any:
    data = parse_json(text)
    if not isinstance(data, dict):
        raise InvalidReply(f"expected a JSON object, got {type(data).__name__}")
    try:
        value = schema.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or '(root)'}: {err['msg']}" for err in e.errors()[:6])
        raise InvalidReply(f"does not match the {schema.__name__} schema: {problems}") from None
    if check is not None:
        try:
            check(value)
        except ValueError as e:
            raise InvalidReply(str(e)) from None
    return value


# ---------------------------------------------------------------- litellm


_litellm = None
_setup_lock = threading.Lock()


def litellm_module():
    """Import litellm once, quietly, with the scripted offline model registered as a provider."""
    global _litellm
    with _setup_lock:
        if _litellm is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            import logging

            import litellm

            litellm.suppress_debug_info = True
            litellm.drop_params = True  # a provider without response_format etc. gets the call without it
            logging.getLogger("LiteLLM").setLevel(logging.ERROR)
            from memkit.distill import scripted

            scripted.register(litellm)
            _litellm = litellm
    return _litellm


def _transient(litellm) -> tuple:
    names = ("RateLimitError", "Timeout", "APIConnectionError", "ServiceUnavailableError", "InternalServerError",
             "BadGatewayError", "APIError")
    return tuple(getattr(litellm, n) for n in names if hasattr(litellm, n))


def _fatal(litellm) -> tuple:
    names = ("AuthenticationError", "PermissionDeniedError", "NotFoundError", "BadRequestError",
             "ContextWindowExceededError", "ContentPolicyViolationError", "UnsupportedParamsError")
    return tuple(getattr(litellm, n) for n in names if hasattr(litellm, n))


def _one_line(e: BaseException, limit: int = 300) -> str:
    text = " ".join(str(e).split()) or e.__class__.__name__
    return text[:limit]


def price_per_token(model: str) -> Optional[tuple[float, float]]:
    """(input, output) USD per token from litellm's cost tables; None when the model has no price."""
    litellm = litellm_module()
    try:
        i, o = litellm.cost_per_token(model=model, prompt_tokens=1_000_000, completion_tokens=1_000_000)
    except Exception:
        return None
    return i / 1e6, o / 1e6


def request_key(model: str, messages: list[dict], params: dict, schema: str) -> str:
    return content_hash({"model": model, "messages": messages, "params": params, "schema": schema})


# ---------------------------------------------------------------- the client


class LLMClient:
    """Thread-safe: reflections run `concurrency` at a time; every DuckDB access holds one lock."""

    def __init__(self, con, settings: LLMSettings, command: str, *, command_id: Optional[str] = None,
                 shared: Optional["LLMClient"] = None):
        self.con, self.s, self.command = con, settings, command
        self.command_id = command_id or (shared.command_id if shared else uuid.uuid4().hex[:12])
        # A judge client shares the command's accounting, lock and budget with the reflector's.
        self._ledger = shared._ledger if shared else _Ledger(settings.max_cost)
        self.litellm = litellm_module()
        if settings.model.startswith("scripted/"):
            from memkit.distill import scripted

            scripted.ensure_priced(self.litellm, settings.model)
        self.price = price_per_token(settings.model)
        self._transient, self._fatal = _transient(self.litellm), _fatal(self.litellm)

    # ---- accounting

    @property
    def stats(self) -> dict:
        return self._ledger.stats()

    @property
    def stopped(self) -> bool:
        return self._ledger.stopped

    def _record(self, purpose: str, key: str, *, cache_hit: bool, status: str, error: Optional[str] = None,
                tokens_in: int = 0, tokens_out: int = 0, cost: Optional[float] = None, latency_ms: int = 0,
                model: Optional[str] = None) -> None:
        with self._ledger.lock:
            seq = self._ledger.bump(cache_hit=cache_hit, status=status, tokens_in=tokens_in, tokens_out=tokens_out,
                                    cost=cost or 0.0)
            self.con.execute(
                "INSERT INTO llm_calls VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
                [self.command_id, seq, self.command, model or self.s.model, purpose, key, cache_hit, status, error,
                 tokens_in, tokens_out, cost, latency_ms])

    def account(self, purpose: str, model: str, tokens_in: int, cost: Optional[float]) -> None:
        """Record a call made outside complete_json (an embedding request) against this command run."""
        self._ledger.settle(cost or 0.0)
        self._record(purpose, "-", cache_hit=False, status="ok", tokens_in=tokens_in, cost=cost, model=model)

    def _cache_get(self, key: str) -> Optional[str]:
        with self._ledger.lock:
            rows = self.con.execute("SELECT response FROM llm_cache WHERE key = ?", [key]).fetchall()
        return rows[0][0] if rows else None

    def _cache_put(self, key: str, purpose: str, text: str, tokens_in: int, tokens_out: int, cost: Optional[float]) -> None:
        with self._ledger.lock:
            self.con.execute("INSERT INTO llm_cache VALUES (?, ?, ?, ?, ?, ?, ?, now()) ON CONFLICT DO NOTHING",
                             [key, self.s.model, purpose, text, tokens_in, tokens_out, cost])

    # ---- the public call

    def complete_json(self, messages: list[dict], schema: type[BaseModel], *, purpose: str,
                      check: Optional[Callable[[Any], None]] = None) -> Reply:
        """Ask for one JSON object matching `schema`; re-ask with the validation error up to
        `invalid_retries` times. A cached answer to the same request costs nothing."""
        params = {"temperature": self.s.temperature, "max_tokens": self.s.max_tokens, "json": self.s.json_mode,
                  **self.s.extra}
        key = request_key(self.s.model, messages, params, schema.__name__)
        cached = self._cache_get(key)
        if cached is not None:
            try:
                value = validate(cached, schema, check)
            except InvalidReply:
                pass  # cached under an older schema or check: ask again
            else:
                self._record(purpose, key, cache_hit=True, status="ok")
                return Reply(value, cached, True, key)
        convo = list(messages)
        error = "no reply"
        for _ in range(self.s.invalid_retries + 1):
            raw = self._call(convo, purpose, key)
            text, t_in, t_out, cost = raw.text, raw.tokens_in, raw.tokens_out, raw.cost
            try:
                value = validate(text, schema, check)
            except InvalidReply as e:
                error = str(e)
                self._record(purpose, key, cache_hit=False, status="invalid", error=error, tokens_in=t_in,
                             tokens_out=t_out, cost=cost, latency_ms=raw.latency_ms)
                convo = convo + [{"role": "assistant", "content": text},
                                 {"role": "user", "content": f"Your reply was not valid: {error}. Reply again with"
                                                             " only the corrected JSON object."}]
                continue
            self._record(purpose, key, cache_hit=False, status="ok", tokens_in=t_in, tokens_out=t_out, cost=cost,
                         latency_ms=raw.latency_ms)
            self._cache_put(key, purpose, text, t_in, t_out, cost)
            return Reply(value, text, False, key)
        raise InvalidReply(error)

    # ---- one model call, with budget, rate limit and retries

    def estimate(self, messages: list[dict]) -> float:
        if self.price is None:
            return 0.0
        prompt = sum(count_tokens(m.get("content") or "") + 4 for m in messages)
        return prompt * self.price[0] + self.s.max_tokens * self.price[1]

    def _call(self, messages: list[dict], purpose: str, key: str) -> "_Raw":
        estimate = self.estimate(messages)
        self._ledger.reserve(estimate)
        try:
            attempt = 0
            while True:
                self._ledger.wait_for_slot(self.s.requests_per_minute)
                started = time.monotonic()
                try:
                    response = self._completion(messages)
                except self._fatal as e:
                    self._record(purpose, key, cache_hit=False, status="error", error=_one_line(e))
                    raise LLMUnavailable(f"{self.s.model}: {e.__class__.__name__}: {_one_line(e, 200)}") from None
                except self._transient as e:
                    self._record(purpose, key, cache_hit=False, status="error", error=f"{e.__class__.__name__}: {_one_line(e)}",
                                 latency_ms=int(1000 * (time.monotonic() - started)))
                    if attempt >= self.s.retries:
                        raise LLMCallFailed(f"{self.s.model}: {e.__class__.__name__} after {attempt + 1} attempts:"
                                            f" {_one_line(e, 160)}") from None
                    wait = min(self.s.max_backoff, self.s.backoff * 2 ** attempt)
                    time.sleep(wait * (0.5 + random.random() / 2))
                    attempt += 1
                    continue
                latency = int(1000 * (time.monotonic() - started))
                break
            text = response.choices[0].message.content or ""
            usage = getattr(response, "usage", None)
            t_in = int(getattr(usage, "prompt_tokens", 0) or 0)
            t_out = int(getattr(usage, "completion_tokens", 0) or 0)
            cost = self._cost(response, t_in, t_out)
            self._ledger.settle(cost or 0.0)
            return _Raw(text, t_in, t_out, cost, latency)
        finally:
            self._ledger.release(estimate)

    def _completion(self, messages: list[dict]):
        kwargs: dict[str, Any] = dict(model=self.s.model, messages=messages, temperature=self.s.temperature,
                                      max_tokens=self.s.max_tokens, timeout=self.s.timeout, num_retries=0)
        if self.s.api_base:
            kwargs["api_base"] = self.s.api_base
        if self.s.json_mode:
            kwargs["response_format"] = {"type": "json_object"}
        kwargs.update(self.s.extra)
        return self.litellm.completion(**kwargs)

    def _cost(self, response, t_in: int, t_out: int) -> Optional[float]:
        hidden = getattr(response, "_hidden_params", None) or {}
        cost = hidden.get("response_cost")
        if cost is None and self.price is not None:
            cost = t_in * self.price[0] + t_out * self.price[1]
        return float(cost) if cost is not None else None


@dataclass
class _Raw:
    text: str
    tokens_in: int
    tokens_out: int
    cost: Optional[float]
    latency_ms: int


class _Ledger:
    """What one command run has spent and reserved, and the rate limiter's clock."""

    def __init__(self, max_cost: Optional[float]):
        self.lock = threading.RLock()
        self._money = threading.Lock()
        self.max_cost = max_cost
        self.spent = 0.0
        self.reserved = 0.0
        self.stopped = False
        self._seq = 0
        self._next_slot = 0.0
        self._stats = {"calls": 0, "cache_hits": 0, "tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0,
                       "invalid_replies": 0, "errors": 0}

    def bump(self, *, cache_hit: bool, status: str, tokens_in: int, tokens_out: int, cost: float) -> int:
        self._seq += 1
        s = self._stats
        if cache_hit:
            s["cache_hits"] += 1
        elif status in ("ok", "invalid"):
            s["calls"] += 1
        s["invalid_replies"] += status == "invalid"
        s["errors"] += status == "error"
        s["tokens_in"] += tokens_in
        s["tokens_out"] += tokens_out
        s["cost_usd"] += cost
        return self._seq

    def stats(self) -> dict:
        with self.lock:
            out = dict(self._stats)
        out["cost_usd"] = round(out["cost_usd"], 6)
        return out

    def reserve(self, estimate: float) -> None:
        with self._money:
            if self.max_cost is not None and self.spent + self.reserved + estimate > self.max_cost:
                self.stopped = True
                raise BudgetExceeded(f"the next call (up to ${estimate:.4f}) would take the spend past"
                                     f" ${self.max_cost:g} (spent ${self.spent:.4f})")
            self.reserved += estimate

    def release(self, estimate: float) -> None:
        with self._money:
            self.reserved = max(0.0, self.reserved - estimate)

    def settle(self, cost: float) -> None:
        with self._money:
            self.spent += cost

    def wait_for_slot(self, per_minute: Optional[int]) -> None:
        if not per_minute:
            return
        with self._money:
            now = time.monotonic()
            slot = max(now, self._next_slot)
            self._next_slot = slot + 60.0 / per_minute
        if slot > now:
            time.sleep(slot - now)


def render_messages(env, template: str, **values) -> list[dict]:
    """A prompt template as chat messages: its `system` block, then the rest as the user message."""
    from jinja2 import TemplateError

    try:
        module = env.get_template(template).make_module(values)
        system = str(getattr(module, "system", "") or "").strip()
        user = str(module).strip()
    except TemplateError as e:
        raise PromptError(f"prompt template {template}: {e}") from None
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
