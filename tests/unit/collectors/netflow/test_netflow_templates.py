"""The template cache against a plain model: every operation in any order, and its per-domain index in step."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from citydc.collectors.netflow.decode import compile_template
from citydc.collectors.netflow.templates import TemplateCache

FIELDS = [(0, 1, 4), (0, 2, 4)]
TEMPLATES = {(tid, scope): compile_template(tid, FIELDS, scope) for tid in (256, 257, 258, 300) for scope in (0, 1)}
domains = st.tuples(st.sampled_from(["siwei", "fengshan"]), st.sampled_from(["192.0.2.1", "192.0.2.2"]),
                    st.sampled_from([9, 10]), st.integers(0, 2))
ops = st.lists(st.one_of(
    st.tuples(st.just("put"), domains, st.sampled_from(sorted(TEMPLATES)), st.integers(0, 30)),
    st.tuples(st.just("get"), domains, st.sampled_from([256, 257, 258, 300]), st.integers(0, 100)),
    st.tuples(st.just("withdraw"), domains, st.sampled_from([256, 257, 258, 300]), st.just(0)),
    st.tuples(st.just("withdraw_all"), domains, st.booleans(), st.just(0)),
), max_size=80)


@settings(max_examples=300, deadline=None)
@given(ops=ops)
def test_the_cache_matches_a_plain_model_and_its_index_stays_in_step(ops):
    cache = TemplateCache(max_templates=6, timeout_seconds=50)
    model: dict[tuple, tuple] = {}  # key -> (template, time), oldest refresh first
    now = 0.0
    for op, domain, arg, dt in ops:
        now += dt
        if op == "put":
            tid = arg[0]
            key = (*domain, tid)
            model.pop(key, None)
            model[key] = (TEMPLATES[arg], now)
            cache.put(key, TEMPLATES[arg], now)
            while len(model) > 6:
                del model[next(iter(model))]
        elif op == "get":
            key = (*domain, arg)
            got = cache.get(key, now)
            item = model.get(key)
            if item is not None and now - item[1] > 50:
                del model[key]
                item = None
            assert (got is None) == (item is None)
        elif op == "withdraw":
            model.pop((*domain, arg), None)
            cache.withdraw((*domain, arg))
        else:
            for key in [k for k, (t, _) in model.items() if k[:4] == domain and t.is_options == arg]:
                del model[key]
            cache.withdraw_all(*domain, arg)
        assert cache.keys() == list(model)
        index = {}
        for key in model:
            index.setdefault(key[:4], set()).add(key)
        assert cache._by_domain == index
