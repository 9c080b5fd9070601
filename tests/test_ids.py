"""Task ids are ULIDs (python-ulid parses them back), unique and monotonic."""

from __future__ import annotations

import threading

from ulid import ULID

from worker.core.ids import _encode, is_ulid, new_id, new_ids


def test_ids_are_ulids_of_now() -> None:
    import time

    before = time.time()
    ids = new_ids(2000)
    after = time.time()
    for value in ids:
        assert is_ulid(value)
        parsed = ULID.from_str(value)
        assert str(parsed) == value
        assert before - 0.002 <= parsed.timestamp <= after + 0.002


def test_monotonic_within_and_across_calls() -> None:
    ids = [new_id() for _ in range(500)] + new_ids(5000) + [new_id() for _ in range(500)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_monotonic_across_threads() -> None:
    batches: list[list[str]] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(50):
            got = new_ids(20)
            with lock:
                batches.append(got)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [value for batch in batches for value in batch]
    assert len(set(every)) == len(every) == 4000
    assert all(batch == sorted(batch) for batch in batches)


def test_consecutive_ids_encode_like_python_ulid_across_the_cached_prefix() -> None:
    # The encoder reuses the leading characters for 2**20 values: cross that boundary.
    first = (0x0123456789AB << 80) | ((1 << 20) - 3)
    ids = _encode(first, 6)
    assert ids == [str(ULID.from_int(first + offset)) for offset in range(6)]
    assert ids == sorted(ids)
    assert [str(ULID.from_int(v)) for v in (0, (1 << 128) - 1)] == [
        _encode(0, 1)[0],
        _encode((1 << 128) - 1, 1)[0],
    ]


def test_runs_of_ids_encode_like_python_ulid_across_every_boundary() -> None:
    # The last two characters come from slices of 1,024 pairs: start inside one, cross
    # several and the 2**20 prefix boundary, and end inside another.
    first = (0x0123456789AB << 80) | ((1 << 20) - 2500)
    ids = _encode(first, 5000)
    assert ids == [str(ULID.from_int(first + offset)) for offset in range(5000)]
