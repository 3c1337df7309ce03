"""Registered domains of many hosts at once, as tldextract finds them one host at a time.

datatrove's URL filter asks tldextract for a URL's registered domain ("bbc.co.uk" for "forums.bbc.co.uk"): the
host's labels are walked from the right through a trie of the public suffix list's rules (ICANN section only, as
tldextract does by default), with its wildcard ("*.ck") and exception ("!www.ck") rules. Here the same walk runs
over a batch: level k of every host is its last k labels, hashed (pipeline.url_lists.hash_strings), and each step
of the walk is a vectorised lookup in sorted hash arrays of the rules' paths, rules, wildcards and exceptions.
The rules are tldextract's bundled snapshot, so the answer is the same on every machine and nothing is fetched;
each internationalised rule is kept in Unicode and in punycode, as tldextract decodes "xn--" labels before it looks.
"""

from __future__ import annotations

import functools

import idna
import numpy as np
import polars as pl

from pipeline.url_lists import HashedList, hash_strings


def _forms(rule: str) -> set[str]:
    """The rule as written and with every label in punycode (hosts in a crawl come either way)."""
    forms = {rule}
    try:
        forms.add(".".join(label if label.isascii() else idna.encode(label).decode() for label in rule.split(".")))
    except idna.IDNAError:
        pass
    return forms


class PublicSuffixes:
    """The public suffix list as hashed sets, walked for many hosts at once by `registered_domains`."""

    def __init__(self, rules: list[str]):
        nodes, ends, wildcards, exceptions = set(), set(), set(), set()
        for rule in rules:
            for form in _forms(rule.lower()):
                labels = form.split(".")
                nodes.update(".".join(labels[i:]) for i in range(len(labels)))  # every trie node on the rule's path
                if form.startswith("*."):
                    wildcards.add(form[2:])
                elif form.startswith("!"):
                    exceptions.add(form[1:])
                else:
                    ends.add(form)
        self.depth = max(len(r.split(".")) for r in rules)
        self._sets = [
            HashedList.build(pl.Series(sorted(s), dtype=pl.String), "psl") for s in (nodes, ends, wildcards, exceptions)
        ]

    def registered_domains(self, hosts: pl.Series) -> tuple[np.ndarray, np.ndarray]:
        """(hash of each host's registered domain, its label count) for lowercased hosts, without trailing dot; the
        count is 0 where there is none (no known suffix, or nothing left of it: "co.uk", "localhost", an IP)."""
        nodes, ends, wildcards, exceptions = self._sets
        split = hosts.str.split(".")
        n_labels = split.list.len().to_numpy()

        def level(rows: np.ndarray, k: int) -> np.ndarray:  # hash of the last k labels
            return hash_strings(split.gather(rows).list.slice(-k, k).list.join("."))

        suffix = np.zeros(len(hosts), dtype=np.int64)
        parent = np.zeros(len(hosts), dtype=np.uint64)  # hash of the level walked last
        walking = np.arange(len(hosts))  # hosts whose labels so far are a path of the rules' trie
        for k in range(1, self.depth + 1):
            rows = walking[n_labels[walking] >= k]
            if not len(rows):
                break
            here = level(rows, k)
            child = nodes.contains(here)
            suffix[rows[child & ends.contains(here)]] = k
            if k >= 2:  # no matching child: a wildcard at the parent takes this label too, unless it is an exception
                wild = ~child & wildcards.contains(parent[rows])
                suffix[rows[wild]] = np.where(exceptions.contains(here[wild]), k - 1, k)
            parent[rows] = here
            walking = rows[child]
        count = np.where((suffix > 0) & (n_labels > suffix), suffix + 1, 0)
        if (hosts.str.contains("..", literal=True) | hosts.str.starts_with(".")).any():  # tldextract: no empty label
            label = split.list.get(pl.Series(n_labels - count, dtype=pl.Int64), null_on_oob=True)
            count[((label == "") & pl.Series(count > 0)).to_numpy()] = 0
        registered = np.zeros(len(hosts), dtype=np.uint64)
        for k in np.unique(count[count > 0]):
            rows = np.flatnonzero(count == k)
            registered[rows] = level(rows, int(k))
        return registered, count


@functools.cache
def public_suffixes() -> PublicSuffixes:
    """The rules of tldextract's bundled snapshot (no fetch, no cache folder)."""
    from tldextract import TLDExtract

    return PublicSuffixes(list(TLDExtract(suffix_list_urls=(), cache_dir=None).tlds))
