"""Every error Spine raises on purpose, in one hierarchy.

Each class carries the HTTP status and the stable RFC 9457 problem ``type`` it maps to,
so the API edge renders them with one handler and the domain never imports HTTP code.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar


class SpineError(Exception):
    """Base of every expected error. ``message`` is safe to show to the caller."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal error"

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: Seconds the caller should wait before trying again (the Retry-After header).
        self.retry_after = retry_after


class NotFound(SpineError):
    """Unknown id, or an id of another tenant: the two must look the same."""

    status = 404
    type = "not-found"
    title = "Not found"


class Unauthenticated(SpineError):
    status = 401
    type = "unauthenticated"
    title = "Missing or invalid credentials"


class Forbidden(SpineError):
    status = 403
    type = "forbidden"
    title = "Not allowed for this role"


class InvalidRequest(SpineError):
    status = 422
    type = "invalid-request"
    title = "Invalid request"


class Conflict(SpineError):
    """The resource is not in a state that allows the request."""

    status = 409
    type = "conflict"
    title = "Conflict"


class IdempotencyKeyInFlight(SpineError):
    status = 409
    type = "idempotency-key-in-flight"
    title = "A request with this Idempotency-Key is still in progress"


class IdempotencyKeyReused(SpineError):
    status = 422
    type = "idempotency-key-reused"
    title = "This Idempotency-Key was used for a different request"


class TooManyRequests(SpineError):
    status = 429
    type = "too-many-requests"
    title = "Too many requests"


class PayloadTooLarge(SpineError):
    status = 413
    type = "payload-too-large"
    title = "Upload exceeds the size limit"


class UnsupportedContent(SpineError):
    """The bytes are empty or of a type the pipeline cannot read."""

    status = 415
    type = "unsupported-media-type"
    title = "Unsupported or empty file"


class Unavailable(SpineError):
    """A dependency (database, blob store, model) does not answer."""

    status = 503
    type = "unavailable"
    title = "Service unavailable"


class IllegalTransition(SpineError):
    """A job state change that the state machine does not allow: a bug, never user input."""

    type = "illegal-transition"
    title = "Illegal job state transition"


class LeaseLost(SpineError):
    """The worker no longer holds the job's lease; its result must be discarded."""

    status = 409
    type = "lease-lost"
    title = "Job lease lost"


class PipelineError(SpineError):
    """Raised by a pipeline step. ``transient`` decides between retry and dead letter."""

    transient: ClassVar[bool] = False
    type = "pipeline-error"
    title = "Processing failed"


class ExtractionError(PipelineError):
    """The file's bytes could not be turned into text: retrying will not help."""

    type = "extraction-failed"
    title = "Text extraction failed"


class TransientError(PipelineError):
    """A downstream timed out or was unavailable: the job is retried with backoff."""

    transient = True
    type = "transient"
    title = "Temporary failure"


class DownstreamUnavailable(TransientError):
    """A downstream's circuit breaker is open: no call was made. ``retry_at`` is when it
    next lets a probe through; work that needs it waits until then."""

    status = 503
    type = "downstream-unavailable"
    title = "Downstream unavailable"

    def __init__(self, message: str, *, retry_at: datetime, retry_after: int | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.retry_at = retry_at
