"""The targets CSV's API columns and ``${NAME}``: every bad value a bad row with its exact
reason, and no expanded value or secret header value in any message or shown URL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from daemon.model import Target
from daemon.sources.parse import parse_targets

DATA = Path(__file__).parent / "data"
ENV = {
    "UPCHECK_TEST_KEY": "k-secret-1",
    "UPCHECK_TEST_BAD_HOST": "sec ret.example",
    "UPCHECK_TEST_NEWLINE": "a\r\nX-Evil: 1",
}


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("UPCHECK_TEST_UNSET", raising=False)
    return ENV


def test_each_bad_api_value_is_a_bad_row_with_its_exact_reason(environment):
    parsed = parse_targets((DATA / "bad_api_rows.csv").read_bytes())
    assert list(parsed.errors) == (DATA / "bad_api_rows.errors").read_text().splitlines()
    (good,) = parsed.targets
    assert good.name == "good" and good.method == "POST"
    assert good.headers == (
        ("Content-Type", "application/json"),
        ("Authorization", "Bearer k-secret-1"),
    )
    assert good.body == b'{"key": "k-secret-1"}'
    assert good.body_not_contains == "maintenance"
    assert good.body_regex is not None and good.body_regex.pattern == "^ok"
    assert good.json_query is not None and good.json_query.text == "status == 'ok'"
    assert good.json_query.compiled.search({"status": "ok"}) is True
    assert (good.max_response_ms, good.retries, good.tls_verify, good.ip) == (250.0, 2, False, 6)


def test_no_message_shows_an_expanded_value_or_a_header_value(environment):
    parsed = parse_targets((DATA / "bad_api_rows.csv").read_bytes())
    joined = "\n".join(parsed.errors)
    assert "line 5: bad headers" in joined and "line 22: bad url" in joined
    for hidden in ("k-secret-1", "sec ret", "X-Evil", "abc123"):
        assert hidden not in joined


def test_expansion_happens_in_url_headers_and_body_and_the_url_is_shown_as_written(
    monkeypatch,
):
    monkeypatch.setenv("UPCHECK_TEST_KEY", "k-777")
    parsed = parse_targets(
        b"url,headers,body,method\n"
        b"https://api.example/v1?api_key=${UPCHECK_TEST_KEY}&team=${UPCHECK_TEST_KEY}x,"
        b"X-Api-Key: ${UPCHECK_TEST_KEY},key=${UPCHECK_TEST_KEY},POST\n"
    )
    (target,) = parsed.targets
    assert target.url == "https://api.example/v1?api_key=k-777&team=k-777x"
    assert target.headers == (("X-Api-Key", "k-777"),)
    assert target.body == b"key=k-777"
    # Shown as written (then redacted): no expanded value, in the URL or the default name.
    assert target.display_url == ("https://api.example/v1?api_key=xxxxx&team=${UPCHECK_TEST_KEY}x")
    assert target.name == "api.example/v1"
    assert "k-777" in target.secrets


def test_a_row_that_names_an_unset_variable_is_bad_and_the_rest_are_used(monkeypatch):
    monkeypatch.delenv("UPCHECK_TEST_UNSET", raising=False)
    parsed = parse_targets(
        b"url,name\nhttps://a.example/${UPCHECK_TEST_UNSET},a\nhttps://b.example/,b\n"
    )
    assert [t.name for t in parsed.targets] == ["b"]
    assert parsed.errors == ("line 2: ${UPCHECK_TEST_UNSET} is not set",)


def test_a_host_from_a_variable_is_never_quoted_in_the_reason(monkeypatch):
    monkeypatch.setenv("UPCHECK_TEST_HOST", "snow\u2603internal-db.example")
    parsed = parse_targets(b"url\nhttps://${UPCHECK_TEST_HOST}/\nhttps://ok.example/\n")
    assert parsed.errors == (
        "line 2: bad url 'https://${UPCHECK_TEST_HOST}/': the host is not a valid "
        "international name",
    )


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        (".".join(["a" * 63] * 3 + ["b" * 62]), "the host is longer than 253 characters"),
        (
            ".".join(["\u00fc" * 30] * 8),
            "the host is longer than 253 characters once IDNA-encoded",
        ),
    ],
)
def test_a_host_from_a_variable_too_long_for_dns_is_refused_and_not_shown(
    monkeypatch, host, reason
):
    monkeypatch.setenv("UPCHECK_TEST_HOST", host)
    parsed = parse_targets(b"url\nhttps://${UPCHECK_TEST_HOST}/\nhttps://ok.example/\n")
    assert parsed.errors == (f"line 2: bad url 'https://${{UPCHECK_TEST_HOST}}/': {reason}",)


def test_a_row_without_the_new_columns_is_the_target_it_always_was():
    (target,) = parse_targets(b"url,name\nhttps://shop.example/,shop\n").targets
    assert target == Target(url="https://shop.example/", name="shop")
    assert (target.headers, target.body, target.retries, target.tls_verify, target.ip) == (
        (),
        None,
        0,
        True,
        None,
    )
    assert target.written_url is None and target.secrets == () and not target.reads_body


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("A: 1 | B: 2", (("A", "1"), ("B", "2"))),
        ("A: 1|B: 2", (("A", "1"), ("B", "2"))),
        ("X-Filter: a|b | Accept: */*", (("X-Filter", "a|b"), ("Accept", "*/*"))),
        ("Cookie: a=1; b=2", (("Cookie", "a=1; b=2"),)),
        ("X-Empty:", (("X-Empty", ""),)),
    ],
)
def test_the_headers_cell_splits_where_a_name_follows_the_bar(cell, expected):
    data = f'url,headers\nhttps://a.example/,"{cell}"\n'.encode()
    (target,) = parse_targets(data).targets
    assert target.headers == expected


@pytest.mark.parametrize("method", ["get", "Post", "PUT", "patch", "DELETE", "options", "HEAD"])
def test_every_method_the_spec_names_is_accepted_in_any_case(method):
    (target,) = parse_targets(f"url,method\nhttps://a.example/,{method}\n".encode()).targets
    assert target.method == method.upper()


def test_secret_looking_header_values_are_listed_as_secrets_and_others_are_not():
    data = (
        b"url,headers\nhttps://a.example/,"
        b'"Authorization: Basic YWJj | Cookie: sid=1 | X-Api-Key: k | X-Session-Token: t'
        b' | Proxy-Authorization: p | X-Pass: pw | Accept: text/plain | X-Team: blue"\n'
    )
    (target,) = parse_targets(data).targets
    assert set(target.secrets) == {"Basic YWJj", "sid=1", "k", "t", "p", "pw"}


def test_every_csv_example_in_the_readme_loads_without_a_bad_row(monkeypatch):
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    blocks = re.findall(r"```csv\n(.*?)```", readme, re.S)
    assert len(blocks) >= 3
    for name in ("ORDERS_TOKEN", "SHOP_API_KEY", "TENANT_ID", "BILLING_TOKEN"):
        monkeypatch.setenv(name, f"value-of-{name}")
    for block in blocks:
        parsed = parse_targets(block.encode())
        assert parsed.errors == (), parsed.errors
        assert parsed.targets
