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
    """The public suffix list as hashed sets; `registered_level` finds the registered domain's label count."""

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
        """(hash of each host's registered domain, its label count) for lowercased hosts; count 0 where it has none."""
        split = hosts.str.split(".")
        n_labels = split.list.len().to_numpy()
        levels = np.zeros((len(hosts), self.depth + 1), dtype=np.uint64)  # levels[i, k-1]: hash of the last k labels
        for k in range(1, self.depth + 2):
            rows = np.flatnonzero(n_labels >= k)
            if not len(rows):
                break
            levels[rows, k - 1] = hash_strings(split.gather(rows).list.slice(-k, k).list.join("."))
        level = self.registered_level(levels, n_labels)
        if (hosts.str.contains("..", literal=True) | hosts.str.starts_with(".")).any():  # tldextract: no empty label
            label = split.list.get(pl.Series(n_labels - level, dtype=pl.Int64), null_on_oob=True)
            level[((label == "") & pl.Series(level > 0)).to_numpy()] = 0
        return levels[np.arange(len(hosts)), np.maximum(level - 1, 0)], level

    def registered_level(self, levels: np.ndarray, n_labels: np.ndarray) -> np.ndarray:
        """For each host, the number of labels of its registered domain (public suffix + 1), or 0 where it has none
        (no known suffix, or nothing left of it: "co.uk", "localhost", an IP address).

        levels[i, k - 1] is the hash of host i's last k labels, for k = 1..depth + 1 (any value where k > n_labels).
        """
        nodes, ends, wildcards, exceptions = self._sets
        suffix = np.zeros(len(n_labels), dtype=np.int64)
        alive = np.ones(len(n_labels), dtype=bool)
        for k in range(1, min(self.depth, levels.shape[1]) + 1):
            active = alive & (n_labels >= k)
            if not active.any():
                break
            level = levels[:, k - 1]
            child = active & nodes.contains(level)
            suffix[child & ends.contains(level)] = k
            if k >= 2:  # no matching child: a wildcard at the parent takes this label too, unless it is an exception
                wild = active & ~child & wildcards.contains(levels[:, k - 2])
                suffix[wild] = np.where(exceptions.contains(level[wild]), k - 1, k)
            alive = child
        return np.where((suffix > 0) & (n_labels > suffix), suffix + 1, 0)


@functools.cache
def public_suffixes() -> PublicSuffixes:
    """The rules of tldextract's bundled snapshot (no fetch, no cache folder)."""
    from tldextract import TLDExtract

    return PublicSuffixes(list(TLDExtract(suffix_list_urls=(), cache_dir=None).tlds))
