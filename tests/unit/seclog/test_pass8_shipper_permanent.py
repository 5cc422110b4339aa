"""A one-off `citydc log ship` reports at once what its store says waiting will not fix.

Against a real Elasticsearch that refused an event for good (HTTP 400), the shipper asked six times over
about 15 s ("delivery failed (attempt 1..6, rejected)"), each with the same answer, although the store had
marked the error as not retriable (ElasticsearchStoreError.retriable). A following shipper still retries.
"""

from __future__ import annotations

import pytest

from citydc.seclog.spool import Spool
from citydc.seclog.store_es import ElasticsearchStoreError
from tests.unit.seclog.test_shipper import OPENING, FlakyStore, ev


class RefusingStore(FlakyStore):
    def __init__(self, retriable: bool):
        super().__init__()
        self.retriable = retriable

    def put(self, events):
        self.puts += 1
        raise ElasticsearchStoreError("Elasticsearch at http://127.0.0.1:9200 refused event 1 (HTTP 400: x)",
                                      "rejected" if not self.retriable else "server_error", retriable=self.retriable)


def test_an_error_the_store_marks_as_not_retriable_is_reported_at_once(tmp_path):
    from citydc.seclog.shipper import Shipper

    spool = Spool(tmp_path, writer="w:spool")
    spool.append([ev(i) for i in range(3)])
    store, sleeps = RefusingStore(retriable=False), []
    result = Shipper(spool, store, max_attempts=6, sleep=sleeps.append).ship()
    assert not result.ok and result.error.reason == "rejected"
    assert store.puts == 1 and sleeps == []
    assert spool.ack_position() is None and spool.backlog()[0] == 3 + OPENING  # the events wait in the spool


def test_a_retriable_error_is_still_retried(tmp_path):
    from citydc.seclog.shipper import Shipper

    spool = Spool(tmp_path, writer="w:spool")
    spool.append([ev(i) for i in range(3)])
    store = RefusingStore(retriable=True)
    assert not Shipper(spool, store, max_attempts=3, sleep=lambda s: None).ship().ok
    assert store.puts == 3


def test_a_following_shipper_keeps_trying_after_a_refusal(tmp_path):
    from citydc.seclog.shipper import Shipper

    class Enough(Exception):
        pass

    store = RefusingStore(retriable=False)

    def sleep(seconds: float) -> None:
        if store.puts >= 3:
            raise Enough  # the third pause: it did not give up after the first refusal

    shipper = Shipper(Spool(tmp_path, writer="w:spool"), store, max_attempts=1, sleep=sleep)
    with pytest.raises(Enough):
        shipper._deliver([ev(0)], None, True)  # forever=True: how `log ship --follow` delivers
