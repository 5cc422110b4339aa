"""Shipper: ack only after the store acknowledged, bounded backoff, reasons counted."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from citydc.seclog.event import make_event
from citydc.seclog.metrics import SeclogMetrics, write_textfile
from citydc.seclog.shipper import Shipper
from citydc.seclog.spool import Spool
from citydc.seclog.store import DeliveryError

# A new spool's chain starts with its own spool-created event, shipped like any other. Where batch
# boundaries matter, a test spools one event fewer so the batches stay as they were.
OPENING = 1


def ev(i: int) -> dict:
    return make_event(action="sso-login", dataset="citydc.sso_audit", kind="event", category=["authentication"],
                      type=["start"], outcome="success", message=f"login {i}", site="fengshan", id_key=str(i),
                      timestamp=datetime(2026, 3, 1, tzinfo=UTC))


class FlakyStore:
    """A store that refuses the first ``failures`` puts, then keeps everything by id."""

    def __init__(self, failures: int = 0):
        self.failures = failures
        self.docs: dict[str, dict] = {}
        self.puts = 0

    def put(self, events):
        self.puts += 1
        if self.failures > 0:
            self.failures -= 1
            raise DeliveryError("store down", "unavailable")
        new = [e for e in events if e["event"]["id"] not in self.docs]
        self.docs.update((e["event"]["id"], e) for e in new)
        return len(new)


def test_ships_in_batches_and_acknowledges(tmp_path):
    spool = Spool(tmp_path, writer="w:spool")
    spool.append([ev(i) for i in range(25 - OPENING)])
    registry = CollectorRegistry()
    metrics = SeclogMetrics(registry, site="siwei")
    store = FlakyStore()
    result = Shipper(spool, store, batch_size=10, metrics=metrics, clock=lambda: 1234.5).ship()
    assert (result.delivered, result.stored, result.batches, result.ok) == (25, 25, 3, True)
    assert len(store.docs) == 25
    assert spool.delivered_heads()["w:spool"].seq == 25
    assert registry.get_sample_value("citydc_seclog_events_delivered_total", {"site": "fengshan"}) == 25
    assert registry.get_sample_value("citydc_seclog_last_delivery_timestamp_seconds", {"site": "siwei"}) == 1234.5
    assert registry.get_sample_value("citydc_seclog_spool_backlog_events", {"site": "siwei"}) == 0
    # Nothing new: a second run delivers nothing.
    assert Shipper(spool, store).ship().delivered == 0


def test_retries_with_bounded_exponential_backoff_then_succeeds(tmp_path):
    spool = Spool(tmp_path, writer="w:spool")
    spool.append([ev(i) for i in range(5)])
    sleeps: list[float] = []
    registry = CollectorRegistry()
    shipper = Shipper(spool, FlakyStore(failures=4), metrics=SeclogMetrics(registry, "siwei"), sleep=sleeps.append,
                      backoff_base=0.5, backoff_max=2.0)
    result = shipper.ship()
    assert result.ok and result.delivered == 5 + OPENING
    assert sleeps == [0.5, 1.0, 2.0, 2.0]
    assert registry.get_sample_value("citydc_seclog_delivery_errors_total",
                                     {"site": "siwei", "reason": "unavailable"}) == 4
    assert shipper.last_error is not None and shipper.last_error.reason == "unavailable"


def test_gives_up_without_acknowledging(tmp_path):
    spool = Spool(tmp_path, writer="w:spool")
    spool.append([ev(i) for i in range(5)])
    store = FlakyStore(failures=100)
    result = Shipper(spool, store, max_attempts=3, sleep=lambda s: None).ship()
    assert not result.ok and result.error.reason == "unavailable"
    assert store.puts == 3
    assert spool.ack_position() is None and spool.backlog()[0] == 5 + OPENING
    store.failures = 0
    assert Shipper(spool, store).ship().delivered == 5 + OPENING  # the events waited in the spool


def test_a_store_this_user_cannot_write_is_reported_at_once(tmp_path):
    from citydc.seclog.store_sqlite import StoreUnusable

    class ReadOnlyStore(FlakyStore):
        def put(self, events):
            self.puts += 1
            raise StoreUnusable("cannot open /var/lib/citydc/seclog.db for writing: Permission denied "
                                "(security_log.sink.path)", "security_log.sink.path")

    spool = Spool(tmp_path, writer="w:spool")
    spool.append([ev(i) for i in range(3)])
    store, sleeps = ReadOnlyStore(), []
    result = Shipper(spool, store, max_attempts=6, sleep=sleeps.append).ship()
    assert not result.ok and "Permission denied" in str(result.error)
    assert store.puts == 1 and sleeps == []  # waiting does not fix permissions
    assert spool.ack_position() is None


def test_corrupt_lines_are_counted_and_passed(tmp_path):
    spool = Spool(tmp_path, writer="w:spool")
    spool.append([ev(i) for i in range(3)])
    seg = tmp_path / spool.segments()[0]
    lines = seg.read_bytes().splitlines(keepends=True)
    assert len(lines) == 3 + OPENING
    seg.write_bytes(lines[0] + b"garbage\n" + b"".join(lines[1:]))
    registry = CollectorRegistry()
    store = FlakyStore()
    result = Shipper(spool, store, metrics=SeclogMetrics(registry, "siwei")).ship()
    assert result.delivered == 3 + OPENING and [c.line for c in result.corrupt] == [2]
    assert registry.get_sample_value("citydc_seclog_spool_corrupt_lines_total", {"site": "siwei"}) == 1


def test_textfile_is_written(tmp_path):
    registry = CollectorRegistry()
    metrics = SeclogMetrics(registry, "siwei")
    metrics.count_emitted([ev(1)], [ev(1), ev(1)])
    path = tmp_path / "seclog.prom"
    write_textfile(registry, path)
    text = path.read_text()
    assert 'citydc_seclog_events_emitted_total{dataset="citydc.sso_audit",site="fengshan"} 1.0' in text
    assert 'citydc_seclog_events_duplicate_total{dataset="citydc.sso_audit",site="fengshan"} 1.0' in text
    assert list(tmp_path.iterdir()) == [path]


def test_background_shipper_delivers_while_a_command_works(tmp_path):
    from citydc.seclog.shipper import BackgroundShipper

    spool = Spool(tmp_path, writer="w:spool")
    store = FlakyStore()
    with BackgroundShipper(Shipper(spool, store), poll=0.05) as background:
        spool.append([ev(i) for i in range(10)])
        for _ in range(200):  # bounded wait: 10 s at most
            if len(store.docs) == 10 + OPENING:
                break
            background.stop.wait(0.05)
        spool.append([ev(i) for i in range(10, 15)])  # emitted just before the command ends
    assert not background.thread.is_alive()
    own = sorted(i for i, doc in store.docs.items() if doc["event"]["action"] != "spool-created")
    assert own == sorted(ev(i)["event"]["id"] for i in range(15)) and len(store.docs) == 15 + OPENING
    assert spool.backlog() == (0, 0)


def test_one_round_delivers_what_was_spooled_when_it_began(tmp_path):
    spool = Spool(tmp_path, writer="w:spool")
    spool.append([ev(i) for i in range(6 - OPENING)])

    class EmittingStore(FlakyStore):
        """Each put makes an emitter add two more events: a round must still end."""

        def put(self, events):
            spool.append([ev(1000 + self.puts * 2), ev(1001 + self.puts * 2)])
            return super().put(events)

    store = EmittingStore()
    result = Shipper(spool, store, batch_size=2).ship()
    assert result.delivered == 6 and store.puts == 3
    assert Shipper(spool, store, batch_size=100).ship().delivered == 6  # the next round takes the newcomers


class RecordingSpool(Spool):
    """A spool that records reads and acknowledgements in one timeline with the store's puts."""

    def __init__(self, *args, timeline: list, **kwargs):
        super().__init__(*args, **kwargs)
        self.timeline = timeline

    def read(self, start, max_events, **options):
        batch = super().read(start, max_events, **options)
        self.timeline.append(("read", batch.end))
        return batch

    def acknowledge(self, pos, delivered):
        self.timeline.append(("ack", pos))
        super().acknowledge(pos, delivered)


def test_next_batch_is_read_while_the_store_holds_the_current_one(tmp_path):
    import threading

    timeline: list = []
    spool = RecordingSpool(tmp_path, writer="w:spool", timeline=timeline)
    spool.append([ev(i) for i in range(30 - OPENING)])
    next_read = threading.Event()

    class SlowStore(FlakyStore):
        """put() returns only once the shipper has read the following batch (or after 10 s)."""

        def reads(self) -> int:
            return sum(1 for kind, _ in timeline if kind == "read")

        def put(self, events):
            timeline.append(("put", len(events)))
            for _ in range(1000):  # bounded: 10 s
                if self.reads() > self.puts + 1 or self.puts == 2:
                    break
                next_read.wait(0.01)
            timeline.append(("done", self.reads()))
            return super().put(events)

    result = Shipper(spool, SlowStore(), batch_size=10).ship()
    assert (result.delivered, result.batches) == (30, 3)
    # Batch k+1 was read before put k returned; each ack follows its own put, strictly in order.
    assert [reads for kind, reads in timeline if kind == "done"] == [2, 3, 3]
    done_at = [i for i, (kind, _) in enumerate(timeline) if kind == "done"]
    ack_at = [i for i, (kind, _) in enumerate(timeline) if kind == "ack"]
    assert len(ack_at) == 3 and all(done < ack for done, ack in zip(done_at, ack_at, strict=True))
    acks = [timeline[i][1] for i in ack_at]
    assert [p.line for p in acks] == [10, 20, 30]
    assert acks == [pos for kind, pos in timeline if kind == "read"]


def test_a_batch_read_ahead_of_a_failed_one_is_not_acknowledged(tmp_path):
    spool = Spool(tmp_path, writer="w:spool")
    spool.append([ev(i) for i in range(30 - OPENING)])

    class FailsSecond(FlakyStore):
        def put(self, events):
            if self.puts == 1:
                self.puts += 1
                raise DeliveryError("store down", "unavailable")
            return super().put(events)

    store = FailsSecond()
    result = Shipper(spool, store, batch_size=10, max_attempts=1).ship()
    assert not result.ok and result.delivered == 10
    assert spool.ack_position().line == 10  # not past the failed batch, nor the one read after it
    assert spool.delivered_heads()["w:spool"].seq == 10
    again = Shipper(spool, store, batch_size=10).ship()
    assert again.ok and again.delivered == 20 and len(store.docs) == 30


def test_big_integers_and_floats_survive_spool_and_store_and_verify(tmp_path):
    from citydc.seclog.chain import verify
    from citydc.seclog.store import Query
    from citydc.seclog.store_sqlite import SqliteStore

    details = {"big": 2**70, "ratio": 0.00001, "huge": 1e300}
    doc = make_event(action="backup-run", dataset="citydc.backup", kind="event", category=["process"],
                     type=["end"], outcome="success", message="numbers", site="siwei", id_key="n",
                     details=details, timestamp=datetime(2026, 3, 1, tzinfo=UTC))
    spool = Spool(tmp_path / "spool", writer="w:spool")
    spool.append([doc, ev(1)])
    store = SqliteStore(tmp_path / "log.db")
    try:
        assert Shipper(spool, store).ship().stored == 2 + OPENING
        assert verify(store.chain(), delivered=spool.delivered_heads(), emitted=spool.emitted_heads) == []
        found = [e for e in store.search(Query()) if e["message"] == "numbers"]
        assert found[0]["citydc"]["backup"] == details  # exactly: the spool line is stored as written
    finally:
        store.close()


def test_the_stores_prepare_runs_ahead_and_its_refusal_is_handled_by_put(tmp_path):
    spool = Spool(tmp_path, writer="w:spool")
    spool.append([ev(i) for i in range(30 - OPENING)])

    class PreparingStore(FlakyStore):
        prepared: list[int] = []  # noqa: RUF012 - per test

        def prepare(self, events):
            if any(e["message"] == "login 25" for e in events):
                raise DeliveryError("event 25 is bad", "invalid_event")
            self.prepared.append(len(events))
            return [*events]

        def put(self, events):
            if any(e["message"] == "login 25" for e in events):
                raise DeliveryError("event 25 is bad", "invalid_event")
            return super().put(events)

    store = PreparingStore()
    result = Shipper(spool, store, batch_size=10, max_attempts=2, sleep=lambda s: None).ship()
    assert store.prepared == [10]  # batch 2 was prepared ahead; batch 1 was read first, batch 3 refused
    assert not result.ok and result.error.reason == "invalid_event" and result.delivered == 20
    assert spool.ack_position().line == 20


def test_a_prepared_batch_without_event_dicts_is_acknowledged_and_counted_as_its_events(tmp_path):
    # Writers and sites interleave, so the heads and counts of each batch come from different events.
    first, second = Spool(tmp_path, writer="w:one"), Spool(tmp_path, writer="w:two")
    for i in range(0, 40, 4):
        first.append([ev(i), ev(i + 1)])
        second.append([{**ev(i + 2), "labels": {"site": "siwei"}}, ev(i + 3)])

    class TokenStore(FlakyStore):
        """prepare() returns opaque tokens, as the Elasticsearch store returns request lines."""

        def prepare(self, events):
            return [("token", e["event"]["id"]) for e in events]

        tokens = 0

        def put(self, events):
            ids = [e[1] if isinstance(e, tuple) else e["event"]["id"] for e in events]
            self.tokens += sum(isinstance(e, tuple) for e in events)
            new = [i for i in ids if i not in self.docs]
            self.docs.update((i, {}) for i in new)
            return len(new)

    registry = CollectorRegistry()
    store = TokenStore()
    result = Shipper(first, store, batch_size=7, metrics=SeclogMetrics(registry, "siwei")).ship()
    # Each writer's chain starts with its spool-created event (site of its first event): 42 in all.
    assert (result.delivered, result.stored, result.ok) == (42, 42, True) and result.batches == 6
    assert store.tokens == 35  # every batch but the first (read before the helper runs) went prepared
    assert {w: (h.seq, h.hash) for w, h in first.delivered_heads().items()} == \
        {w: (h.seq, h.hash) for w, h in first.emitted_heads().items()} and first.delivered_heads()["w:two"].seq == 21
    assert registry.get_sample_value("citydc_seclog_events_delivered_total", {"site": "siwei"}) == 11
    assert registry.get_sample_value("citydc_seclog_events_delivered_total", {"site": "fengshan"}) == 31
