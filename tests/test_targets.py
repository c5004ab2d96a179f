"""The targets CSV: every rule of SPEC.md, with bad inputs kept as files beside their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.model import Target
from daemon.redact import redact_text, redact_url
from daemon.sources.parse import (
    TargetsError,
    check_url,
    parse_expected_status,
    parse_targets,
)

DATA = Path(__file__).parent / "data"


def test_bad_rows_are_skipped_with_their_line_numbers_and_the_rest_is_used():
    parsed = parse_targets((DATA / "bad_rows.csv").read_bytes())
    expected = (DATA / "bad_rows.errors").read_text().splitlines()
    assert list(parsed.errors) == expected
    assert [t.name for t in parsed.targets] == ["shop", "private", "cdn", "at in path"]
    shop, private, cdn, at_in_path = parsed.targets
    assert shop == Target(
        url="https://shop.example/",
        name="shop",
        interval=30.0,
        timeout=5.0,
        method="GET",
        expected_status=((200, 200),),
        body_contains="Welcome",
    )
    assert private.method == "HEAD" and private.expected_status == ((200, 299),)
    assert cdn.expected_status == ((200, 200), (301, 301), (302, 302))
    assert at_in_path.url == "https://api.example:8443/users/a@b.example"
    joined = "\n".join(parsed.errors)
    for secret in ("alice", "hunter", "2secret", "bob", "pa/ss", "ss@example", "pw@", "=abc"):
        assert secret not in joined


@pytest.mark.parametrize(
    "path", sorted(DATA.glob("invalid-*.csv")), ids=lambda p: p.stem.removeprefix("invalid-")
)
def test_an_unusable_file_is_rejected_whole_with_its_exact_error(path: Path):
    expected = path.with_suffix(".error").read_text().strip()
    with pytest.raises(TargetsError) as caught:
        parse_targets(path.read_bytes())
    assert str(caught.value) == expected


def test_without_a_header_column_one_is_the_url_and_column_two_the_name():
    parsed = parse_targets(b"https://a.example/,Alpha\nhttps://b.example/path/\n")
    assert [(t.url, t.name) for t in parsed.targets] == [
        ("https://a.example/", "Alpha"),
        ("https://b.example/path/", "b.example/path"),
    ]
    assert parsed.errors == ()


def test_without_a_header_extra_columns_are_reported_and_the_row_is_kept():
    parsed = parse_targets(b"https://a.example/,Alpha,30\n")
    assert [(t.url, t.name, t.interval) for t in parsed.targets] == [
        ("https://a.example/", "Alpha", None)
    ]
    assert parsed.errors == (
        "line 1: 3 columns without a header row: only url and name are read;"
        " add a header row to use the others",
    )


def test_a_bom_comments_and_blank_lines_are_tolerated():
    data = "\ufeff# team list\n\n   \nurl\n# off for now: https://x.example/\nhttps://a.example/\n"
    parsed = parse_targets(data.encode())
    assert [t.url for t in parsed.targets] == ["https://a.example/"]
    assert parsed.errors == ()


def test_the_header_is_found_in_any_case_and_unknown_columns_are_reported():
    parsed = parse_targets(b"Name,URL,Owner\nshop,https://shop.example/,ops\n")
    assert parsed.targets[0].name == "shop"
    assert parsed.errors == ("line 1: unknown column 'owner' ignored",)


def test_duplicates_keep_the_first_row():
    parsed = parse_targets(b"url,name\nhttps://a.example/,first\nhttps://a.example/,second\n")
    assert [t.name for t in parsed.targets] == ["first"]
    assert parsed.errors == (
        "line 3: duplicate url 'https://a.example/' (first on line 2), skipped",
    )


def test_rows_that_differ_only_in_a_hidden_credential_need_different_names():
    data = (
        b"url,name\n"
        b"https://ci:one@a.example/?token=t1,\n"
        b"https://ci:two@a.example/?token=t2,\n"
        b"https://ci:three@a.example/?token=t3,third\n"
    )
    parsed = parse_targets(data)
    assert [t.name for t in parsed.targets] == ["a.example", "third"]
    (error,) = parsed.errors
    assert error.startswith("line 3: same name 'a.example' and shown url ")
    assert "as line 2" in error and "give one a different name" in error
    assert "two" not in error and "t2" not in error


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "the file is empty"),
        (b"\xef\xbb\xbf\n  \n", "the file is empty"),
        (b"# list being rewritten\n\n", "the file holds only comments and blank lines"),
        (b"url,name\n", "the file has a header row and nothing under it"),
    ],
)
def test_a_file_without_a_single_row_is_rejected_whole(data, reason):
    """An emptied or half-written file (`cat > urls.csv` leaves 0 bytes for a moment) must
    not replace the list in force by nothing, which removes every target with its history."""
    with pytest.raises(TargetsError) as caught:
        parse_targets(data)
    assert str(caught.value) == f"no targets: {reason}"


def test_intervals_and_timeouts_outside_their_bounds_are_refused_with_their_lines():
    parsed = parse_targets((DATA / "bad_timing.csv").read_bytes())
    assert list(parsed.errors) == (DATA / "bad_timing.errors").read_text().splitlines()
    assert [(t.name, t.interval, t.timeout) for t in parsed.targets] == [
        ("ok", 1.0, 0.1),
        ("a day", 86400.0, 300.0),
        ("equal", 5.0, 5.0),
    ]


@pytest.mark.parametrize(
    "separator", ["\x85", "\u2028", "\u2029", "\f", "\v", "\x1c", "\x1d", "\x1e"]
)
def test_only_cr_and_lf_end_a_row(separator):
    """str.splitlines() also splits at NEL, U+2028, a form feed and more: a cell holding one
    was cut in two, and every later line number was off."""
    data = (
        f"url,name\r\nhttps://a.example/,foo{separator}bar\nhttps://b.example/,b\r"
        "not a url,junk\nhttps://c.example/,c\n"
    ).encode()
    parsed = parse_targets(data)
    assert [(t.url, t.name) for t in parsed.targets] == [
        ("https://a.example/", f"foo{separator}bar"),
        ("https://b.example/", "b"),
        ("https://c.example/", "c"),
    ]
    assert parsed.errors == ("line 4: bad url 'not a url': only http and https are supported",)


def test_a_last_row_without_a_line_end_is_refused_as_maybe_cut_short():
    """A file caught while being written usually ends inside a row: "https://shop.exa" would
    be probed as another host. A last row with no line end is refused; a comment is fine."""
    parsed = parse_targets(b"url\nhttps://a.example/\nhttps://shop.exa")
    assert [t.url for t in parsed.targets] == ["https://a.example/"]
    assert parsed.errors == (
        "line 3: the last row has no line end, so it may be cut short (a file caught while"
        " being written); end the file with a line break",
    )
    parsed = parse_targets(b"url\r\nhttps://a.example/\r\n# the end")
    assert [t.url for t in parsed.targets] == ["https://a.example/"] and parsed.errors == ()


def test_errors_never_show_credentials():
    data = b"url\nhttps://alice:pa55word@[bad/?api_key=k3y\nhttps://ok.example/\n"
    parsed = parse_targets(data)
    joined = " ".join(parsed.errors)
    assert "pa55word" not in joined and "k3y" not in joined
    assert "xxxxx" in joined


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("200", ((200, 200),)),
        ("200-299", ((200, 299),)),
        ("200,301,302", ((200, 200), (301, 301), (302, 302))),
        ("200-204, 404", ((200, 204), (404, 404))),
    ],
)
def test_expected_status_forms(raw, expected):
    assert parse_expected_status(raw) == expected


@pytest.mark.parametrize("raw", ["abc", "299-200", "99", "600", ",", "2xx"])
def test_expected_status_rejects_nonsense(raw):
    with pytest.raises(ValueError, match="bad expected_status"):
        parse_expected_status(raw)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://example.com/a?b=1", "https://example.com/a?b=1"),
        ("https://bob:hunter2@example.com/", "https://xxxxx@example.com/"),
        ("https://bob@example.com/", "https://xxxxx@example.com/"),
        (
            "https://example.com/?token=t0k&page=2&api_key=k&X-Amz-Signature=s1g&sig=9",
            "https://example.com/?token=xxxxx&page=2&api_key=xxxxx&X-Amz-Signature=xxxxx&sig=xxxxx",
        ),
        ("https://example.com/?password=&q=x", "https://example.com/?password=&q=x"),
        ("https://example.com/?Secret=a#frag", "https://example.com/?Secret=xxxxx#frag"),
        ("https://example.com/?pass=a&bypass=b", "https://example.com/?pass=xxxxx&bypass=xxxxx"),
        # Unencoded / ? # in a password end the authority early; mask through the last "@".
        ("https://bob:pa/ss@example.com/x", "https://xxxxx@example.com/x"),
        ("https://bob:pa?ss@example.com/", "https://xxxxx@example.com/"),
        ("https://bob:pa#ss@example.com/", "https://xxxxx@example.com/"),
        ("https://bob:p@ss@example.com/", "https://xxxxx@example.com/"),
        # An "@" after the authority is not credentials.
        ("https://medium.com/@someone", "https://medium.com/@someone"),
    ],
)
def test_redaction_masks_userinfo_and_secret_query_values_only(url, shown):
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://app.example/cb#access_token=S3CR3T&state=1",
            "https://app.example/cb#access_token=xxxxx&state=1",
        ),
        ("https://app.example/#/cb?id_token=S3CR3T", "https://app.example/#/cb?id_token=xxxxx"),
        ("https://x.example/?page=1;token=S3CR3T", "https://x.example/?page=1;token=xxxxx"),
        ("https://x.example/?%74oken=S3CR3T&q=1", "https://x.example/?%74oken=xxxxx&q=1"),
        ("https://x.example/?API%5FKEY=S3CR3T", "https://x.example/?API%5FKEY=xxxxx"),
        ("https://x.example/app;jsessionid=S3CR3T/a", "https://x.example/app;jsessionid=xxxxx/a"),
    ],
)
def test_redaction_masks_secrets_in_fragments_semicolon_pairs_and_encoded_keys(url, shown):
    assert redact_url(url) == shown


def test_a_default_name_shows_no_secret_from_the_path():
    parsed = parse_targets(b"url\nhttps://x.example/app;jsessionid=S3CR3T/home?token=t\n")
    assert parsed.targets[0].name == "x.example/app;jsessionid=xxxxx/home"


def test_a_targets_repr_shows_no_credentials():
    target = Target(url="https://alice:hunter2@shop.example/?token=t0k", name="shop")
    shown = repr(target)
    assert "hunter2" not in shown and "alice" not in shown and "t0k" not in shown
    assert shown.startswith("Target(url='https://xxxxx@shop.example/?token=xxxxx', name='shop'")


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example:8443/users/a@b.example",
        "https://api.example/?email=ops@corp.example",
        "https://api.example:8443/?email=ops@corp.example#top",
        "http://localhost:8080/@me",
    ],
)
def test_an_at_sign_after_the_host_is_not_credentials(url):
    parsed = parse_targets(f"url\n{url}\n".encode())
    assert parsed.errors == ()
    (target,) = parsed.targets
    assert target.url == url and target.display_url == url
    assert redact_url(url) == url


@pytest.mark.parametrize(
    "url", ["https://bob:pa/ss@example.com/", "https://bob:pa#ss@example.com/"]
)
def test_unencoded_credentials_are_rejected_without_showing_them(url):
    with pytest.raises(ValueError, match="percent-encode") as caught:
        check_url(url)
    for part in ("bob", "pa/ss", "pa#ss", "ss@"):
        assert part not in str(caught.value)


# One row per way an unquoted "," can cut "user:password@host" into cells. With a header the
# cells land in other columns; without one the tail becomes the name; a password of digits
# leaves a URL that parses ("https://alice:1234" is host alice, port 1234).
CUT = (
    "line 2: an unquoted ',' looks like it cuts the url's credentials: quote the url cell, or"
    " write ',' as %2C (the row is not shown)"
)


@pytest.mark.parametrize(
    "data",
    [
        b"url,name\nhttps://alice:hunter,2secret@shop.example/,shop\n",
        b"url,name,interval,timeout,method,expected_status,body_contains\n"
        b"https://alice:hunter,2secret@shop.example/,shop,30\n",
        b"# list\nhttps://alice:hunter,2secret@shop.example/\n",
        b"# list\nhttps://alice:1234,5678@shop.example/\n",
        b"name,url\nshop,https://alice:hunter,2,secret@shop.example/\n",
        b"url\nhttps://al,ice:hunter2secret@shop.example/\n",
    ],
)
def test_a_comma_inside_credentials_refuses_the_row_without_showing_any_part(data):
    with pytest.raises(TargetsError) as caught:
        parse_targets(data)
    message = str(caught.value)
    assert message == f"no valid target in 1 row(s); first problem: {CUT}"
    for part in ("alice", "al,ice", "hunter", "secret", "1234", "5678"):
        assert part not in message


def test_a_quoted_url_may_hold_a_comma_in_its_password():
    parsed = parse_targets(b'url,name\n"https://alice:hunter,2secret@shop.example/",shop\n')
    assert parsed.errors == ()
    assert parsed.targets[0].url == "https://alice:hunter,2secret@shop.example/"
    assert parsed.targets[0].display_url == "https://xxxxx@shop.example/"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (
            "http://\u2603.example/",
            "the host is not a valid international name"
            " (Codepoint U+2603 at position 1 of '\u2603' not allowed)",
        ),
        ("http://*.example/", "the host starts with '*' or '.'"),
        ("http://.example/", "the host starts with '*' or '.'"),
        ("http://a..b/", "the host has an empty label"),
        ("http://" + "a" * 64 + ".example/", "the host has a label longer than 63 characters"),
        ("http://127.0.0.1:0/", "port 0"),
        ("https://shop.example\\@evil.example/", "a '\\' before the path"),
    ],
)
def test_a_url_that_can_never_be_sent_is_refused_at_load(url, reason):
    parsed = parse_targets(f"url\n{url}\nhttps://ok.example/\n".encode())
    assert [t.url for t in parsed.targets] == ["https://ok.example/"]
    (error,) = parsed.errors
    assert error.startswith("line 2: bad url ") and error.endswith(reason), error


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://a%2e%2eb.example/", "the host has an empty label"),
        ("http://shop.%2E.example/", "the host has an empty label"),
        ("http://%2eshop.example/", "the host starts with '*' or '.'"),
        ("http://" + "%61" * 64 + ".example/", "the host has a label longer than 63 characters"),
    ],
)
def test_a_host_is_judged_as_sent_with_its_unreserved_escapes_decoded(url, reason):
    """The sender decodes %2e to "." in a host: "a%2e%2eb" is looked up as "a..b", which the
    resolver refuses with a traceback (from gevent's thread pool) at every probe."""
    parsed = parse_targets(f"url\n{url}\nhttps://ok.example/\n".encode())
    (error,) = parsed.errors
    assert error.startswith("line 2: bad url ") and error.endswith(reason), error


def test_a_long_escaped_label_that_decodes_short_enough_loads():
    url = "http://" + "%61" * 22 + ".example/"
    parsed = parse_targets(f"url\n{url}\n".encode())
    assert parsed.errors == () and [t.url for t in parsed.targets] == [url]


# Host names at DNS's limit: 253 characters, the trailing dot of a fully qualified name not
# counted; labels of 63 characters, the longest allowed.
_NAME_253 = ".".join(["a" * 63] * 3 + ["b" * 61])
_NAME_254 = ".".join(["a" * 63] * 3 + ["b" * 62])


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (f"http://{_NAME_254}/", "the host is longer than 253 characters"),
        (f"http://{_NAME_254}./", "the host is longer than 253 characters"),
        # Escapes are decoded before the name is sent: 254 characters once decoded.
        (f"http://%61{_NAME_254[1:]}/", "the host is longer than 253 characters"),
        # 247 characters as written, 287 once IDNA-encoded (what is sent).
        (
            "https://" + ".".join(["\u00fc" * 30] * 8) + "/",
            "the host is longer than 253 characters once IDNA-encoded",
        ),
    ],
)
def test_a_host_longer_than_dns_allows_is_refused_at_load(url, reason):
    """Such a name loaded, then failed at every probe, as a DNS error."""
    parsed = parse_targets(f"url\nhttps://ok.example/\n{url}\n".encode())
    assert [t.url for t in parsed.targets] == ["https://ok.example/"]
    (error,) = parsed.errors
    assert error.startswith("line 3: bad url ") and error.endswith(reason), error


@pytest.mark.parametrize(
    "url",
    [f"http://{_NAME_253}/", f"http://{_NAME_253}./", f"http://{_NAME_253}:8080/"],
)
def test_a_host_of_253_characters_loads(url):
    parsed = parse_targets(f"url\n{url}\n".encode())
    assert parsed.errors == () and [t.url for t in parsed.targets] == [url]


@pytest.mark.parametrize(
    "url",
    [
        "https://b\u00fccher.example/",
        "https://shop.test./",
        "http://[::1]:8080/",
        "http://10.0.0.1/",
    ],
)
def test_international_names_fully_qualified_names_and_ip_literals_load(url):
    parsed = parse_targets(f"url\n{url}\n".encode())
    assert parsed.errors == () and [t.url for t in parsed.targets] == [url]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "Max retries exceeded with url: /feed?token=t0k&page=2 (Caused by ...)",
            "Max retries exceeded with url: /feed?token=xxxxx&page=2 (Caused by ...)",
        ),
        (
            "redirect to a non-HTTP location 'ftp://bob:hunter2@example.com/?sig=1'",
            "redirect to a non-HTTP location 'ftp://xxxxx@example.com/?sig=xxxxx'",
        ),
        ("connection reset by peer", "connection reset by peer"),
        ("expected key=value, got api_key=abc", "expected key=xxxxx, got api_key=xxxxx"),
        ("token=S3CR3T was refused", "token=xxxxx was refused"),
        ("bad pair (%74oken=S3CR3T)", "bad pair (%74oken=xxxxx)"),
        ("a=1;session=S3CR3T", "a=1;session=xxxxx"),
    ],
)
def test_free_text_keeps_no_credentials(text, shown):
    assert redact_text(text) == shown


def test_the_bundled_lists_load_without_a_skipped_row():
    """`make run` and the README's first command read these: a row skipped there is a broken
    front door."""
    examples = Path(__file__).resolve().parent.parent / "examples"
    for name in ("demo.csv", "urls.csv"):
        parsed = parse_targets((examples / name).read_bytes())
        assert parsed.errors == (), name
        assert parsed.targets, name
