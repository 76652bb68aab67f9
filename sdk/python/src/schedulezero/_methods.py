"""Methods as the SDK calls them: how a decorated function receives the call's params (keyword
arguments, or the whole dict) and its context, and how its outcome becomes a ``result`` frame."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import traceback
from typing import Any, Callable, Dict, Optional, Tuple

from ._context import CallCancelled, CallContext, MethodError

#: Parameter names that receive the call's context when no parameter is annotated CallContext.
CONTEXT_NAMES = ("ctx", "context")
#: How much of a traceback goes into a failed attempt's detail.
MAX_TRACEBACK_CHARS = 8000


class ParamsError(Exception):
    """The call's params do not fit the method's signature."""


def _is_async(func: Callable[..., Any]) -> bool:
    while isinstance(func, functools.partial):
        func = func.func
    if inspect.iscoroutinefunction(func):
        return True
    # An object whose class defines `async def __call__`.
    return not inspect.isroutine(func) and inspect.iscoroutinefunction(getattr(type(func), "__call__", None))  # noqa: B004


def _is_context_annotation(annotation: Any) -> bool:
    if annotation is CallContext:
        return True
    # `from __future__ import annotations` leaves strings.
    return isinstance(annotation, str) and annotation.split(".")[-1].strip("'\"") == "CallContext"


class MethodSpec:
    """One served method: its function and how to call it."""

    def __init__(self, name: str, func: Callable[..., Any], raw_params: bool) -> None:
        self.name = name
        self.func = func
        self.is_async = _is_async(func)
        self.raw_params = raw_params
        try:
            self.signature: Optional[inspect.Signature] = inspect.signature(func)
        except (TypeError, ValueError):  # some builtins have none: pass everything as keywords
            self.signature = None
        self.context_param: Optional[str] = None
        self.params_param: Optional[str] = None
        if self.signature is None:
            if raw_params:
                raise TypeError(f"method {name!r}: raw_params needs a function with an inspectable signature")
            return
        parameters = list(self.signature.parameters.values())
        named = [p for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        by_annotation = [p for p in named if _is_context_annotation(p.annotation)]
        by_name = [p for p in named if p.name in CONTEXT_NAMES]
        chosen = by_annotation[:1] or by_name[:1]
        if chosen:
            if chosen[0].kind is chosen[0].POSITIONAL_ONLY:
                raise TypeError(
                    f"method {name!r}: the context parameter {chosen[0].name!r} must not be positional-only"
                )
            self.context_param = chosen[0].name
        if raw_params:
            rest = [p for p in named if p.name != self.context_param]
            if not rest:
                raise TypeError(f"method {name!r} is declared raw_params=True but has no parameter for the params dict")
            self.params_param = rest[0].name

    def describe(self) -> str:
        return f"{self.name}{self.signature}" if self.signature else self.name

    def bind(self, params: Dict[str, Any], ctx: CallContext) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
        """The arguments to call the function with, or ParamsError saying what does not fit."""
        if self.raw_params:
            assert self.params_param is not None
            kwargs: Dict[str, Any] = {self.params_param: params}
        else:
            if self.context_param is not None and self.context_param in params:
                raise ParamsError(
                    f"params of method {self.name!r} must not contain {self.context_param!r}: "
                    "that parameter receives the call context"
                )
            kwargs = dict(params)
        if self.context_param is not None:
            kwargs[self.context_param] = ctx
        if self.signature is None:
            return (), kwargs
        try:
            bound = self.signature.bind(**kwargs)
        except TypeError as e:
            raise ParamsError(f"params {_keys(params)} do not fit {self.describe()}: {e}") from None
        return bound.args, bound.kwargs


def _keys(params: Dict[str, Any]) -> str:
    return "{" + ", ".join(repr(k) for k in params) + "}"


def encode(msg: Dict[str, Any]) -> bytes:
    """One JSON frame, compact, strict (no NaN: the server's JSON parser refuses it)."""
    return json.dumps(msg, allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def result_frame(run_id: str, attempt: int, value: Any) -> bytes:
    """A success frame; a value JSON cannot hold becomes a failure saying so."""
    try:
        return encode({"type": "result", "run_id": run_id, "attempt": attempt, "success": True, "result": value})
    except (TypeError, ValueError, RecursionError) as e:
        return failure_frame(
            run_id,
            attempt,
            f"the method's result is not JSON-serialisable ({e}); return dicts, lists, str, numbers, bool or None",
        )


def failure_frame(run_id: str, attempt: int, error: str, detail: Any = None, refused: bool = False) -> bytes:
    msg: Dict[str, Any] = {"type": "result", "run_id": run_id, "attempt": attempt, "success": False, "error": error}
    if refused:
        msg["refused"] = True
    if detail is not None:
        msg["result"] = detail
    try:
        return encode(msg)
    except (TypeError, ValueError, RecursionError) as e:
        msg["result"] = None
        msg["error"] = f"{error} (its detail is not JSON-serialisable: {e})"
        return encode(msg)


def exception_frame(run_id: str, attempt: int, exc: BaseException, cancel_reason: Optional[str]) -> bytes:
    """The failure frame for a method that raised ``exc``."""
    if isinstance(exc, MethodError):
        return failure_frame(run_id, attempt, exc.message, exc.detail)
    if isinstance(exc, CallCancelled) or (cancel_reason is not None and _is_cancellation(exc)):
        return failure_frame(run_id, attempt, cancel_reason or str(exc) or "cancelled")
    text = str(exc)
    error = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    detail = {"exception": type(exc).__name__, "traceback": trace[-MAX_TRACEBACK_CHARS:]}
    return failure_frame(run_id, attempt, error, detail)


def _is_cancellation(exc: BaseException) -> bool:
    return isinstance(exc, asyncio.CancelledError)
