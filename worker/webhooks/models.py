"""What a delivery looks like to readers: its state, attempts and last error."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class DeliveryState(StrEnum):
    PENDING = "pending"  # waiting for its next attempt (or being posted right now)
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # attempts used up, or refused for good (e.g. a private address)


class WebhookDelivery(BaseModel):
    """The delivery of one task item's outcome to its ``response_url``."""

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
    """A delivery claimed for one attempt (``attempts`` counts this one)."""

    id: int
    task_id: str
    item_index: int
    url: str
    attempts: int
    lease_id: str
