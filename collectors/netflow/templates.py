"""The template cache: compiled templates per (site, exporter, version, source id / observation
domain, template id), with expiry, withdrawal and a hard bound on their number.

Over UDP a template is only valid while the exporter keeps refreshing it (RFC 7011 §8.4), and a
stream of ever-new template ids must not grow memory: the least recently used template is
evicted once ``max_templates`` are known, and the eviction is counted.
"""

from __future__ import annotations

from collections import Counter, OrderedDict

from citydc.collectors.netflow.decode import Template

__all__ = ["TemplateCache", "TemplateKey"]

# (site, exporter address, version, source id / observation domain, template id)
TemplateKey = tuple[str, str, int, int, int]


class TemplateCache:
    """Given bounds, keep compiled templates; see the module docstring."""

    def __init__(self, max_templates: int = 4096, timeout_seconds: float = 1800.0) -> None:
        self.max_templates = max_templates
        self.timeout_seconds = timeout_seconds
        self._items: OrderedDict[TemplateKey, tuple[Template, float]] = OrderedDict()
        # The keys of each (site, exporter, version, domain): a withdraw-all touches only its own domain's
        # templates (a set of 4-byte withdraw-all records, each scanning the whole cache, cost a core per
        # few hundred datagrams). Every removal from _items goes through _forget, which keeps this in step.
        self._by_domain: dict[tuple[str, str, int, int], set[TemplateKey]] = {}
        # Why templates left the cache: evicted (bound), expired (not refreshed), withdrawn.
        self.removed: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> list[TemplateKey]:
        return list(self._items)

    def get(self, key: TemplateKey, now: float) -> Template | None:
        """Given a key and the current time, return its template, or None if unknown or expired."""
        item = self._items.get(key)
        if item is None:
            return None
        template, seen = item
        if now - seen > self.timeout_seconds:
            self._forget(key)
            self.removed["expired"] += 1
            return None
        return template

    def peek(self, key: TemplateKey) -> Template | None:
        """Given a key, return its template whatever its age (no expiry, no side effect)."""
        item = self._items.get(key)
        return None if item is None else item[0]

    def put(self, key: TemplateKey, template: Template, now: float) -> None:
        """Given a key, a compiled template and the time, store (or refresh) it, evicting the
        least recently refreshed template if the cache is full."""
        old = self._items.get(key)
        if old is not None and old[0].fields == template.fields and old[0].scope_count == template.scope_count:
            template = old[0]  # a refresh keeps the compiled object, so buffered records stay grouped
        self._items[key] = (template, now)
        self._items.move_to_end(key)
        self._by_domain.setdefault(key[:4], set()).add(key)
        while len(self._items) > self.max_templates:
            self._forget(next(iter(self._items)))  # the least recently refreshed (an OrderedDict: O(1))
            self.removed["evicted"] += 1

    def withdraw(self, key: TemplateKey) -> None:
        """Given a key, forget its template (IPFIX template withdrawal)."""
        if key in self._items:
            self._forget(key)
            self.removed["withdrawn"] += 1

    def withdraw_all(self, site: str, exporter: str, version: int, domain: int, options: bool) -> None:
        """Forget every (options) template of one exporter's observation domain (RFC 7011 §8.1)."""
        keys = self._by_domain.get((site, exporter, version, domain))
        for key in [k for k in keys or () if self._items[k][0].is_options == options]:
            self._forget(key)
            self.removed["withdrawn"] += 1

    def _forget(self, key: TemplateKey) -> None:
        del self._items[key]
        keys = self._by_domain[key[:4]]
        keys.discard(key)
        if not keys:
            del self._by_domain[key[:4]]

    def counts(self) -> Counter[tuple[str, int]]:
        """Return the number of known templates by (site, version)."""
        return Counter((k[0], k[2]) for k in self._items)
