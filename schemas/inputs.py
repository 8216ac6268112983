"""Input contracts: what producers write to the `transactions`, `interactions` and
`customer-events` topics, or one per line into a JSON Lines file.

Inputs are strict: JSON numbers must be numbers, timestamps ISO 8601 strings with
an offset (in Python, aware `datetime` objects).

>>> t = Transaction.model_validate_json('{"event_type": "transaction", "event_id": "t1",'
...     '"customer_id": "00001", "occurred_at": "1997-01-01T00:00:00+00:00",'
...     '"amount": 11.77, "currency": "USD"}')
>>> t.kind, t.amount
('purchase', 11.77)
"""

from __future__ import annotations

from typing import Annotated, Literal, Self, get_args

from pydantic import Field, TypeAdapter, ValidationInfo, field_validator, model_validator

from schemas.common import (
    Attributes,
    Contract,
    Currency,
    EventId,
    FiniteFloat,
    Identifier,
    Money,
    ShortText,
    Timestamp,
)

InteractionKind = Literal[
    "login",
    "page_view",
    "email_open",
    "email_click",
    "support_ticket",
    "complaint",
    "survey",
    "unsubscribe",
    "cart_abandon",
    "review",
]
INTERACTION_KINDS: tuple[str, ...] = get_args(InteractionKind)


class Item(Contract):
    """One line of a transaction's basket."""

    sku: ShortText
    category: ShortText
    quantity: Annotated[int, Field(ge=1, le=100_000)] = 1
    unit_price: Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)] | None = None


class Transaction(Contract):
    """A purchase or a refund; `amount` is never negative, `kind` gives the direction.

    A purchase may have amount 0 (a free order is still a purchase occasion: CDNOW
    has 80); a refund must be positive.
    """

    event_type: Literal["transaction"]
    schema_version: Literal[1] = 1
    event_id: EventId
    customer_id: Identifier
    occurred_at: Timestamp
    kind: Literal["purchase", "refund"] = "purchase"
    amount: Money
    currency: Currency
    refund_of: Identifier | None = None
    margin: FiniteFloat | None = Field(
        default=None, description="Gross margin of this transaction, same currency."
    )
    channel: ShortText | None = None
    items: Annotated[list[Item], Field(max_length=200)] = Field(default_factory=list)

    @field_validator("amount")
    @classmethod
    def _refund_is_positive(cls, amount: float, info: ValidationInfo) -> float:
        if amount == 0 and info.data.get("kind") == "refund":
            raise ValueError("a refund needs an amount greater than 0")
        return amount

    @model_validator(mode="after")
    def _margin_within_amount(self) -> Self:
        if self.margin is not None and self.margin > self.amount:
            raise ValueError("margin exceeds amount")
        return self


class Interaction(Contract):
    """A non-purchase touch point: engagement, service, survey, unsubscribe, ..."""

    event_type: Literal["interaction"]
    schema_version: Literal[1] = 1
    event_id: EventId
    customer_id: Identifier
    occurred_at: Timestamp
    kind: InteractionKind
    value: FiniteFloat | None = Field(
        default=None, description="Kind-specific value, e.g. the survey score 0-10."
    )
    channel: ShortText | None = None
    attributes: Attributes = Field(default_factory=dict)

    @model_validator(mode="after")
    def _survey_score_in_range(self) -> Self:
        if self.kind == "survey" and (self.value is None or not 0 <= self.value <= 10):
            raise ValueError("a survey needs a value between 0 and 10")
        return self


class ConsentFlags(Contract):
    """Consent as last stated by the customer; `None` leaves a flag unchanged."""

    marketing_email: bool | None = None
    marketing_sms: bool | None = None
    marketing_phone: bool | None = None
    profiling: bool | None = None


class Profile(Contract):
    """Descriptive profile fields; all optional, none of them required for scoring."""

    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] | None = None
    language: Annotated[str, Field(pattern=r"^[a-z]{2}(-[A-Z]{2})?$")] | None = None
    signup_at: Timestamp | None = None
    birth_year: Annotated[int, Field(ge=1900, le=2100)] | None = None
    attributes: Attributes = Field(default_factory=dict)


class CustomerEvent(Contract):
    """Profile update, consent change, or a request to erase the customer's data."""

    event_type: Literal["customer"]
    schema_version: Literal[1] = 1
    event_id: EventId
    customer_id: Identifier
    occurred_at: Timestamp
    kind: Literal["profile", "consent", "erasure"]
    consent: ConsentFlags | None = None
    profile: Profile | None = None

    @model_validator(mode="after")
    def _payload_matches_kind(self) -> Self:
        if self.kind == "consent" and self.consent is None:
            raise ValueError("a consent event needs a `consent` object")
        if self.kind == "profile" and self.profile is None:
            raise ValueError("a profile event needs a `profile` object")
        return self


InputEvent = Annotated[Transaction | Interaction | CustomerEvent, Field(discriminator="event_type")]
INPUT_EVENT = TypeAdapter(InputEvent)
"""Validator of any input event; `INPUT_EVENT.validate_json(line)`."""

TOPIC_OF_EVENT_TYPE = {
    "transaction": "transactions",
    "interaction": "interactions",
    "customer": "customer-events",
}
"""Input topic (without prefix) that carries each event type."""
