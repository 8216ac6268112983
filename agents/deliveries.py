"""The broker's answer to a produced record or batch (an aiokafka delivery future).

>>> import asyncio
>>> loop = asyncio.new_event_loop()
>>> sent, lost = loop.create_future(), loop.create_future()
>>> sent.set_result(None); lost.set_exception(ConnectionError("broker went away"))
>>> refused(sent), refused(lost), unanswered_or_refused(loop.create_future())
(False, True, True)
>>> loop.close()
"""

from __future__ import annotations

import asyncio


def refused(delivery: asyncio.Future) -> bool:
    """A delivery that is done and did not succeed (failed or cancelled)."""
    return delivery.cancelled() or delivery.exception() is not None


def unanswered_or_refused(delivery: asyncio.Future) -> bool:
    """Not (yet) acknowledged by the broker."""
    return not delivery.done() or refused(delivery)
