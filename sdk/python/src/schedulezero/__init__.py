"""ScheduleZero handlers in Python: decorate functions, serve them to a ScheduleZero server.

    from schedulezero import CallContext, Handler

    h = Handler("reports", capacity=4)

    @h.method
    def build(day: str, ctx: CallContext) -> dict:
        return {"day": day, "run_id": ctx.run_id}

    if __name__ == "__main__":
        h.run()   # $SCHEDULEZERO_SERVER_ENDPOINT or tcp://127.0.0.1:4242; SIGTERM drains

See sdk/python/README.md and docs/HANDLERS.md; the wire protocol is docs/PROTOCOL.md.
"""

__version__ = "0.1.0"

from ._context import CallCancelled, CallContext, MethodError, context  # noqa: E402
from ._handler import Handler, default_endpoint, default_instance_id  # noqa: E402
from ._link import LinkState  # noqa: E402
from ._session import CANCEL_GRACE  # noqa: E402

__all__ = [
    "CANCEL_GRACE",
    "CallCancelled",
    "CallContext",
    "Handler",
    "LinkState",
    "MethodError",
    "context",
    "default_endpoint",
    "default_instance_id",
    "__version__",
]
