"""The auditor's exploratory test of the security log (SQLite store), 2026-12-07: verify --since that misses
deletions (1, 2), a stored document whose bytes differ from what was hashed (3), questions that create or alter
a store (5, 6), stats over lists, booleans and objects (7), empty filter values (8), ship to a store it cannot
write (9), free text with ``_`` (10), IPv4-mapped addresses (11), zone-less times (12), what a --since walk
covered (13), verify --json on a damaged spool file (14), narrowing a saved question (16), a known field absent
from the range (17) and an --until inside a millisecond (18)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citydc.cli import timefmt
from citydc.cli.main import cli
from citydc.seclog import emit, make_event
from citydc.seclog.chain import GENESIS, ChainHead, link, verify_report
from citydc.seclog.query import QueryError, build_query
from citydc.seclog.store import Query
from citydc.seclog.store_es import ElasticsearchStore
from citydc.seclog.store_es_query import bool_query
from citydc.seclog.store_sqlite import SqliteStore, StoreUnusable, fts_query

W = "host:spool"
INC = "20261201T000000Z-0a1b2c3d"
T0 = datetime(2026, 12, 1, tzinfo=UTC)
DATA = Path(__file__).parent / "data" / "spool-v1-before-incarnations"


def event(i: int, *, when: datetime | None = None, **kw) -> dict:
    fields = {"action": "sso-login", "dataset": "citydc.sso_audit", "kind": "event", "category": ["authentication"],
              "type": ["start"], "outcome": "success", "message": f"login {i}", "site": "siwei", "id_key": f"k{i}",
              "user": "alice", "timestamp": when or T0 + timedelta(hours=i)}
    fields.update(kw)
    return make_event(**fields)


def chained(docs: list[dict], incarnation: str | None = INC) -> list[dict]:
    out, prev = [], GENESIS
    for seq, doc in enumerate(docs, 1):
        doc = link(doc, W, seq, prev, incarnation)
        prev = doc["event"]["hash"]
        out.append(doc)
    return out


def head(doc: dict) -> ChainHead:
    chain = doc["citydc"]["chain"]
    return ChainHead(chain["writer"], chain["seq"], doc["event"]["hash"], chain.get("incarnation"))


@pytest.fixture
def ten(tmp_path) -> tuple[SqliteStore, list[dict]]:
    docs = chained([event(i) for i in range(1, 11)])  # seq i at T0 + i hours
    store = SqliteStore(tmp_path / "seclog.db")
    store.put(docs)
    yield store, docs
    store.close()


def delete(store: SqliteStore, *seqs: int) -> None:
    conn = sqlite3.connect(store.path)
    conn.executemany("DELETE FROM events WHERE seq = ?", [(s,) for s in seqs])
    conn.commit()
    conn.close()


def walk(store: SqliteStore, since: datetime, delivered: dict | None = None):
    return verify_report(store.chain(since), partial=True, delivered=delivered or {}, lookup=store.chain_at)


def problems(report) -> list[tuple[str, int | None]]:
    return [(f.problem, f.seq) for f in report.findings]


# -- findings 1 and 2: a --since walk sees deletions at the start of its window and of the delivered head ---------


def test_a_window_whose_events_were_all_deleted_is_removed_at_the_delivered_head(ten):
    store, docs = ten
    delivered = {W: head(docs[-1])}
    since = T0 + timedelta(hours=8)  # seq 8..10
    assert walk(store, since, delivered).findings == []
    delete(store, 8, 9, 10)
    report = walk(store, since, delivered)
    assert problems(report) == [("removed", 10)] and "ack.json" in report.findings[0].reason
    assert verify_report(store.chain(since), partial=True, delivered=delivered).findings == []  # no lookup: blind


def test_deleting_the_first_events_of_the_window_is_removed(ten):
    store, docs = ten
    since = T0 + timedelta(hours=5)
    delete(store, 5, 6)  # the walk now starts at seq 7: its anchor, seq 6, is missing
    assert problems(walk(store, since, {W: head(docs[-1])})) == [("removed", 6)]


def test_the_anchor_must_be_the_event_the_first_one_points_at(ten, tmp_path):
    store, docs = ten
    since = T0 + timedelta(hours=5)
    forged = chained([event(i) for i in range(1, 5)] + [event(99)])[4]  # seq 5 of another chain, valid on its own
    conn = sqlite3.connect(store.path)
    text = json.dumps(forged, ensure_ascii=False, separators=(",", ":"))
    conn.execute("UPDATE events SET doc = ?, message = ?, id = ? WHERE seq = 4",
                 (text, forged["message"], forged["event"]["id"]))
    conn.commit()
    conn.close()
    assert problems(walk(store, since, {W: head(docs[-1])}))[0][0] == "changed"


def test_a_full_walk_and_seq_1_need_no_anchor(ten):
    store, docs = ten
    assert walk(store, T0, {W: head(docs[-1])}).findings == []  # the window starts at seq 1
    assert verify_report(store.chain(), delivered={W: head(docs[-1])}).findings == []


def test_a_delivered_head_rewritten_before_the_window_is_changed(ten):
    store, _ = ten
    delivered = {W: ChainHead(W, 4, "e" * 64, INC)}  # the shipper recorded another hash at seq 4
    assert problems(walk(store, T0 + timedelta(hours=6), delivered)) == [("changed", 4)]


def test_verify_since_through_the_cli_reports_the_wiped_window(tmp_path):
    cfg = tmp_path / "citydc.yaml"
    cfg.write_text("sites: [{id: siwei, name: Siwei}]\n"
                   "security_log: {spool_dir: spool, sink: {kind: sqlite, path: seclog.db}}\n")
    now = datetime.now(UTC)
    emit([event(i, when=now - timedelta(minutes=10 - i)) for i in range(5)], spool_dir=tmp_path / "spool")
    assert CliRunner().invoke(cli, ["-c", str(cfg), "log", "ship"]).exit_code == 0
    ok = CliRunner().invoke(cli, ["-c", str(cfg), "log", "verify", "--since", "1h"], env={"COLUMNS": "300"})
    assert ok.exit_code == 0, ok.output
    assert "each chain walked from its first event at or after" in ok.output and "(seq 1 on)" in ok.output  # 13
    conn = sqlite3.connect(tmp_path / "seclog.db")
    conn.execute("DELETE FROM events")
    conn.commit()
    conn.close()
    result = CliRunner().invoke(cli, ["-c", str(cfg), "log", "verify", "--since", "1h", "--json"])
    answer = json.loads(result.output)
    assert result.exit_code == 1 and not answer["ok"]
    assert [f["problem"] for f in answer["findings"]] == ["removed"]


# -- finding 3: any byte-level difference between the stored document and the hashed line is changed ----------


def _set_doc(store: SqliteStore, seq: int, doc_text: str) -> None:
    conn = sqlite3.connect(store.path)
    conn.execute("UPDATE events SET doc = ? WHERE seq = ?", (doc_text, seq))
    conn.commit()
    conn.close()


def _doc(store: SqliteStore, seq: int) -> str:
    conn = sqlite3.connect(store.path)
    try:
        return conn.execute("SELECT doc FROM events WHERE seq = ?", (seq,)).fetchone()[0]
    finally:
        conn.close()


def test_a_stored_document_is_its_spool_line_byte_for_byte(ten):
    store, _ = ten
    assert verify_report(store.chain()).findings == []
    assert _doc(store, 3).startswith('{"@timestamp":') and '"citydc":{"chain":{"writer":' in _doc(store, 3)


def test_a_duplicate_key_forging_a_nested_value_is_changed(tmp_path):
    docs = chained([event(1), event(2, action="backup-run", dataset="citydc.backup", details={"job": "files-fs"})])
    store = SqliteStore(tmp_path / "seclog.db")
    store.put(docs)
    _set_doc(store, 2, '{"citydc":{"backup":{"job":"FORGED"}},' + _doc(store, 2)[1:])
    assert dict(store.stats(Query(), ["citydc.backup.job"]))[("FORGED",)] == 1  # what stats would report
    [finding] = verify_report(store.chain()).findings
    assert (finding.problem, finding.seq) == ("changed", 2) and "key twice" in finding.reason
    store.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_edit_of_the_stored_bytes_that_still_parses_is_changed(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("mut") / "seclog.db"
    docs = chained([event(1), event(2, user="é\u00e9", details={"n": 1.5, "s": "a\"b"}, action="backup-run",
                                     dataset="citydc.backup")])
    store = SqliteStore(path)
    store.put(docs)
    original = _doc(store, 2)
    kind = data.draw(st.sampled_from(["space", "escape", "dup"]))
    if kind == "space":  # whitespace after a structural character
        spots = [i for i, c in enumerate(original) if c in ",:{[" and _outside_strings(original, i)]
        at = data.draw(st.sampled_from(spots))
        mutated = original[:at + 1] + data.draw(st.sampled_from([" ", "\n", "\t"])) + original[at + 1:]
    elif kind == "escape":  # a character written as a \\u escape
        spots = [i for i, c in enumerate(original) if c.isalpha() and not _outside_strings(original, i)]
        at = data.draw(st.sampled_from(spots))
        mutated = original[:at] + f"\\u{ord(original[at]):04x}" + original[at + 1:]
    else:  # a key given twice, anywhere an object opens
        spots = [i for i, c in enumerate(original) if c == "{" and _outside_strings(original, i)]
        at = data.draw(st.sampled_from(spots))
        inner = json.loads(original)
        key = data.draw(st.sampled_from(["message", "event", "x"]))
        mutated = original[:at + 1] + f'"{key}":"X",' + '"' + key + '":"X",' + original[at + 1:] \
            if key not in inner else original[:at + 1] + f'"{key}":"X",' + original[at + 1:]
    assert json.loads(mutated) is not None
    _set_doc(store, 2, mutated)
    assert [(f.problem, f.seq) for f in verify_report(store.chain()).findings] == [("changed", 2)], mutated
    store.close()


def _outside_strings(text: str, at: int) -> bool:
    inside, escaped = False, False
    for c in text[:at]:
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == '"':
            inside = not inside
    return not inside and text[at] != '"'


# -- findings 5 and 6: reading commands never create or alter a store -----------------------------------------


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_reader_of_a_missing_store_creates_nothing(tmp_path):
    with pytest.raises(StoreUnusable, match=r"^no security-log store at .*seclog\.db .*\(security_log\.sink\.path\)$"):
        SqliteStore(tmp_path / "var" / "seclog.db", create=False)
    assert list(tmp_path.iterdir()) == []


def test_a_foreign_database_is_refused_and_left_as_it_was(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE important (x)")
    conn.commit()
    conn.close()
    before = _digest(path)
    for create in (False, True):  # not even log ship adds our tables to somebody else's database
        with pytest.raises(StoreUnusable, match=r"not a citydc security-log store: .*other\.db"):
            SqliteStore(path, create=create)
    assert _digest(path) == before


def test_a_store_from_before_the_reemitted_table_is_read_without_changing_it(tmp_path):
    path = tmp_path / "seclog.db"
    path.write_bytes((DATA / "seclog.db").read_bytes())
    before = _digest(path)
    store = SqliteStore(path, create=False)
    assert not store.writable and store.count() == 2 and len(list(store.chain())) == 2
    assert store.chain_at("nothing", None, 1) is None
    store.close()
    assert _digest(path) == before
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert "reemitted" not in tables


def _config(tmp_path: Path, sink: str = "var/seclog.db") -> Path:
    cfg = tmp_path / "citydc.yaml"
    cfg.write_text(f"sites: [{{id: siwei, name: Siwei}}]\nsecurity_log: {{spool_dir: var/spool, "
                   f"sink: {{kind: sqlite, path: {sink}}}}}\n")
    return cfg


@pytest.mark.parametrize("args", [("search", "--json"), ("stats", "--by", "user.name"), ("verify",),
                                  ("verify", "--json"), ("saved", "failed-logins")])
def test_every_question_about_a_missing_store_is_a_setup_error(tmp_path, args):
    cfg = _config(tmp_path)
    result = CliRunner().invoke(cli, ["-c", str(cfg), "log", *args])
    assert result.exit_code == 2, result.output
    assert "no security-log store at" in result.output and "security_log.sink.path" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "var" / "seclog.db").exists()


def test_log_ship_still_creates_the_store(tmp_path):
    cfg = _config(tmp_path)
    emit([event(1)], spool_dir=tmp_path / "var" / "spool")
    assert CliRunner().invoke(cli, ["-c", str(cfg), "log", "ship"]).exit_code == 0
    assert CliRunner().invoke(cli, ["-c", str(cfg), "log", "search", "--json"]).exit_code == 0


# -- finding 7: stats over lists, booleans and objects, as Elasticsearch's terms aggregation --------------------


@pytest.fixture
def varied(tmp_path) -> SqliteStore:
    docs = chained([
        event(1, category=["authentication", "iam"], type=["start", "end"]),
        event(2),
        event(3, action="backup-run", dataset="citydc.backup", details={"ok": True, "tags": ["a", "b"], "n": 2}),
        event(4, action="backup-run", dataset="citydc.backup", details={"ok": False, "tags": [], "nested": {"x": 1}}),
    ])
    store = SqliteStore(tmp_path / "seclog.db")
    store.put(docs)
    yield store
    store.close()


def test_a_list_field_counts_each_element(varied):
    assert dict(varied.stats(Query(), ["event.category"])) == {("authentication",): 4, ("iam",): 1}
    assert dict(varied.stats(Query(filters={"user.name": "alice"}), ["event.category", "event.type"]))[
        ("iam", "end")] == 1
    assert dict(varied.stats(Query(filters={"event.action": "backup-run"}), ["citydc.backup.tags"])) == {
        ("a",): 1, ("b",): 1, ("",): 1}


def test_booleans_count_as_true_and_false(varied):
    assert dict(varied.stats(Query(), ["citydc.backup.ok"])) == {("",): 2, ("true",): 1, ("false",): 1}


def test_an_object_field_is_refused_naming_it(varied):
    with pytest.raises(ValueError, match=r"citydc\.backup\.nested holds an object"):
        varied.stats(Query(), ["citydc.backup.nested"])
    with pytest.raises(ValueError, match=r"citydc\.backup holds an object"):
        varied.stats(Query(), ["citydc.backup"])


def test_the_elasticsearch_store_refuses_an_object_field_too():
    class Client:
        def __init__(self):
            self.queries = []

        def search(self, **kw):
            self.queries.append(kw)
            return {"hits": {"total": {"value": 1}}}

        def options(self, **kw):
            return self

    client = Client()
    store = ElasticsearchStore(client, endpoint="https://es.example:9200", refresh_before_read=False)
    with pytest.raises(ValueError, match=r"citydc\.backup holds an object"):
        store.stats(Query(), ["citydc.backup"])
    assert client.queries[0]["query"]["bool"]["filter"][1] == {"exists": {"field": "citydc.backup.*"}}


# -- findings 8, 10, 11, 12, 18: query details -------------------------------------------------------------


@pytest.mark.parametrize("option", ["user", "action", "source_ip", "site", "outcome"])
def test_an_empty_filter_value_is_refused_naming_the_option(option):
    with pytest.raises(QueryError, match=rf"^--{option.replace('_', '-')}: empty value"):
        build_query(**{option: ""})


def test_an_empty_filter_is_exit_2_on_the_command_line(tmp_path):
    cfg = _config(tmp_path)
    result = CliRunner().invoke(cli, ["-c", str(cfg), "log", "search", "--csv", "--user", ""])
    assert result.exit_code == 2 and "--user: empty value" in result.output


def test_free_text_with_an_underscore_is_its_words_each_anywhere(tmp_path):
    assert fts_query("a_b") == '"a" "b"'
    store = SqliteStore(tmp_path / "seclog.db")
    store.put(chained([event(1, message="word b then word a")]))
    assert len(list(store.search(Query(text="a_b")))) == 1 == len(list(store.search(Query(text="a.b"))))
    store.close()


def test_an_ipv4_mapped_address_is_found_by_its_ipv4_address(tmp_path):
    mapped = event(1, source_ip="::ffff:10.10.1.6")
    assert mapped["source"]["ip"] == "::ffff:a0a:106"  # stored as Python writes the IPv6 address
    store = SqliteStore(tmp_path / "seclog.db")
    store.put(chained([mapped, event(2, source_ip="10.10.1.7")]))
    for typed in ("10.10.1.6", "::ffff:10.10.1.6", "::FFFF:a0a:106"):
        assert [d["event"]["id"] for d in store.search(build_query(source_ip=typed))] == [mapped["event"]["id"]], typed
    assert len(list(store.search(build_query(source_ip="::ffff:10.10.1.7")))) == 1  # and the other way round
    assert build_query(source_ip="2001:DB8::1").filters == {"source.ip": "2001:db8::1"}
    store.close()


@pytest.mark.parametrize("typed", ["2026-12-02T00", "2026-W49-3", "2026-12-02", "20261202", "2026-12-02 00:00"])
def test_every_zone_less_iso_form_is_read_in_the_display_zone(typed):
    timefmt.set_zone("Asia/Taipei")
    assert timefmt.local_option(typed) == "2026-12-02T00:00:00+08:00"
    assert timefmt.local_option("7d") == "7d" and timefmt.local_option("2026-12-02T00Z") == "2026-12-02T00Z"


def test_an_until_inside_a_millisecond_keeps_the_event_at_its_start(tmp_path):
    at = datetime(2026, 12, 2, tzinfo=UTC)
    store = SqliteStore(tmp_path / "seclog.db")
    store.put(chained([event(1, when=at)]))
    query = Query(since=at, until=at + timedelta(microseconds=500))
    assert len(list(store.search(query))) == 1
    assert bool_query(query)["bool"]["filter"][0]["range"]["@timestamp"]["lt"] == "2026-12-02T00:00:00.001Z"
    assert len(list(store.search(Query(since=at, until=at + timedelta(milliseconds=1))))) == 1
    assert list(store.search(Query(until=at))) == []
    store.close()


# -- findings 9, 14, 16, 17: the command line ---------------------------------------------------------------


def test_ship_to_a_store_it_cannot_write_is_a_setup_error_with_a_permission_hint(tmp_path, monkeypatch):
    cfg = _config(tmp_path)
    emit([event(1)], spool_dir=tmp_path / "var" / "spool")
    SqliteStore(tmp_path / "var" / "seclog.db").close()

    def refuse(self):
        raise StoreUnusable(f"cannot open {self.path} for writing: Operation not permitted ({self.field})", self.field)

    monkeypatch.setattr(SqliteStore, "_open_writer", refuse)
    result = CliRunner().invoke(cli, ["-c", str(cfg), "log", "ship"])
    assert result.exit_code == 2, result.output
    assert "security_log.sink.path" in result.output and "permissions" in result.output
    assert "once the store is back" not in result.output


def test_verify_json_answers_json_when_a_spool_file_is_damaged(tmp_path):
    cfg = _config(tmp_path)
    emit([event(1)], spool_dir=tmp_path / "var" / "spool")
    assert CliRunner().invoke(cli, ["-c", str(cfg), "log", "ship"]).exit_code == 0
    (tmp_path / "var" / "spool" / "ack.json").write_text('{"line": ')
    result = CliRunner().invoke(cli, ["-c", str(cfg), "log", "verify", "--json"])
    assert result.exit_code == 1
    answer = json.loads(result.stdout)
    assert answer["ok"] is False and "ack.json is damaged" in answer["error"] and answer["findings"] == []


@pytest.fixture
def shipped(tmp_path) -> Path:
    cfg = _config(tmp_path)
    now = datetime.now(UTC)
    fail = {"outcome": "failure"}
    emit([event(1, when=now - timedelta(days=3), user="old", **fail),
          event(2, when=now - timedelta(hours=1), user="new", **fail),
          event(3, when=now - timedelta(hours=1), user="other-site", site="fengshan", **fail)],
         spool_dir=tmp_path / "var" / "spool")
    assert CliRunner().invoke(cli, ["-c", str(cfg), "log", "ship"]).exit_code == 0
    return cfg


def saved_json(cfg: Path, *args: str):
    result = CliRunner().invoke(cli, ["-c", str(cfg), "log", "saved", *args, "--json"])
    return result.exit_code, (json.loads(result.output) if result.exit_code == 0 else result.output)


def test_a_saved_question_can_be_narrowed(shipped):
    assert saved_json(shipped, "failed-logins")[1] == [{"user.name": "new", "count": 1},
                                                        {"user.name": "other-site", "count": 1}]
    assert {r["user.name"] for r in saved_json(shipped, "failed-logins", "--since", "7d")[1]} == {
        "old", "new", "other-site"}
    assert saved_json(shipped, "failed-logins", "--since", "7d", "--site", "fengshan")[1] == [
        {"user.name": "other-site", "count": 1}]
    code, out = saved_json(shipped, "stale-backups", "--since", "7d")
    assert code == 2 and "takes no narrowing" in out
    code, out = saved_json(shipped, "failed-logins", "--limit", "1")
    assert code == 2 and "--limit" in out


def test_stats_by_a_known_field_absent_from_the_range_is_the_empty_group(shipped):
    result = CliRunner().invoke(cli, ["-c", str(shipped), "log", "stats", "--by", "source.ip", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [{"source.ip": "", "count": 4}]  # 3 logins and the spool-created event
    misspelt = CliRunner().invoke(cli, ["-c", str(shipped), "log", "stats", "--by", "user.nmae"])
    assert misspelt.exit_code == 2 and "check its spelling" in misspelt.output
