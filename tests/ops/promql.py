"""Just enough PromQL reading to list the metrics and labels an expression refers to.

Not a parser: a tokenizer plus the few rules that tell a metric name from a function, a keyword
or a label. Syntax errors are left to Prometheus itself (the dashboard test sends every
expression to a real server); this module answers "which names does it use?".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Identifiers that are never metric names when not followed by `(`.
KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
# Functions whose string arguments name labels: they would escape this reader.
UNSUPPORTED = {"label_replace", "label_join", "count_values"}

TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<number>(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)(?:[smhdwy]|ms)*)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=@,(){}\[\]])
    """,
    re.VERBOSE,
)


@dataclass
class Names:
    # metric name -> label names used in its matchers
    selectors: dict[str, set[str]] = field(default_factory=dict)
    # label names in by/without/on/ignoring/group_left/group_right clauses
    grouping: set[str] = field(default_factory=set)


def tokens(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(expr):
        match = TOKEN.match(expr, pos)
        if match is None:
            raise ValueError(f"cannot read {expr[pos:]!r} in {expr!r}")
        pos = match.end()
        if match.lastgroup != "space":
            out.append((match.lastgroup or "", match.group()))
    return out


def names(expr: str) -> Names:
    """The metric names an expression selects, with their matcher labels, and the labels it
    groups or matches on."""
    found = Names()
    toks = tokens(expr)
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        following = toks[i + 1][1] if i + 1 < len(toks) else ""
        if kind == "ident" and text in UNSUPPORTED:
            raise ValueError(f"{text} is not supported by this reader: {expr!r}")
        if kind == "ident" and text in GROUPING and following == "(":
            i += 2
            while toks[i][1] != ")":
                if toks[i][0] == "ident":
                    found.grouping.add(toks[i][1])
                i += 1
        elif kind == "ident" and (following == "(" or following in ("by", "without")):
            pass  # a function, or an aggregation (`sum by (x) (...)` too)
        elif kind == "ident" and text not in KEYWORDS:
            labels = found.selectors.setdefault(text, set())
            if following == "{":
                i += 2
                while toks[i][1] != "}":
                    if toks[i][0] == "ident":
                        labels.add(toks[i][1])
                    i += 1
        elif text == "{":  # a selector without a metric name
            raise ValueError(f"selectors must name their metric: {expr!r}")
        i += 1
    return found


# Prometheus attaches these to every series it scrapes; the daemon does not export them.
SCRAPE_LABELS = {"job", "instance"}
# Series Prometheus writes itself for every scrape target: `up` is 1 when the scrape worked.
SCRAPE_SERIES = {"up"}


def exported(exposition: str) -> dict[str, set[str]]:
    """Sample name -> label names, from a Prometheus text exposition (e.g. a live /metrics)."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            found.setdefault(sample.name, set()).update(sample.labels)
    return found


def problems(expr: str, exports: dict[str, set[str]]) -> list[str]:
    """Every metric or label in `expr` that `exports` does not have; empty when all is known."""
    used = names(expr)
    found, labels_in_play = [], set(SCRAPE_LABELS)
    for metric, labels in sorted(used.selectors.items()):
        if metric in SCRAPE_SERIES:
            for label in sorted(labels - SCRAPE_LABELS):
                found.append(f"{metric} has no label {label}")
            continue
        if metric not in exports:
            found.append(f"metric {metric} is not exported")
            continue
        labels_in_play |= exports[metric]
        for label in sorted(labels - exports[metric] - SCRAPE_LABELS):
            found.append(f"{metric} has no label {label}")
    for label in sorted(used.grouping - labels_in_play):
        found.append(f"no metric in the expression has label {label}")
    return found


def with_pending(exports: dict[str, set[str]], pending: tuple[str, ...]) -> dict[str, set[str]]:
    """`exports` plus `pending` metric names (with only the scrape labels), for names the
    contract defines that the daemon under test does not export yet."""
    merged = {name: set(labels) for name, labels in exports.items()}
    for name in pending:
        merged.setdefault(name, set())
    return merged
