"""What a delivery looks like to readers: its state, attempts and last error."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class DeliveryState(StrEnum):
    PENDING = "pending"  # waiting for its next attempt (or being posted right now)
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # attempts used up, refused for good (a private address), or superseded


class WebhookDelivery(BaseModel):
    """The delivery of one task item's outcome, at one ending of the task, to its
    ``response_url``."""

    model_config = ConfigDict(frozen=True)

    task_id: str
    item_index: int
    url: str
    state: DeliveryState
    attempts: int
    #: When the next attempt may start (pending deliveries only).
    next_attempt_at: float | None
    last_error: str | None
    last_status: int | None
    delivered_at: float | None
    #: The task's ``finished_at`` at the ending this delivery reports, and which ending that
    #: is: 1, then 2 if the task was resumed and ended again, and so on.
    finished_at: float
    ending: int
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class Finished:
    """A task that ended, as the scan sees it: its items' response URLs by index."""

    task_id: str
    finished_at: float
    urls: dict[int, str]


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery claimed for one attempt (``attempts`` counts this one) of the ending of its
    task at ``finished_at``."""

    id: int
    task_id: str
    item_index: int
    url: str
    attempts: int
    lease_id: str
    finished_at: float
    ending: int
