"""A customer's partition is the one Kafka's default partitioner gives their id."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from streams.topics import partition_of


@given(st.text(min_size=1, max_size=64), st.integers(1, 64))
def test_the_partition_is_the_producers_choice_for_the_customer_id_as_key(customer_id, n):
    partitions = list(range(n))
    expected = DefaultPartitioner()(customer_id.encode(), partitions, partitions)
    assert partition_of(customer_id, n) == expected
