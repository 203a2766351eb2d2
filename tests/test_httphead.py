"""Pure request-head parsing in :mod:`scheduler_api.httphead`: each rule on bytes, no sockets."""

from __future__ import annotations

import pytest

from scheduler_api.httphead import (
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    MAX_LINE,
    Headers,
    HttpError,
    RequestLine,
    body_length,
    expects_continue,
    headers_follow,
    parse_head,
    parse_header_lines,
    parse_request_line,
)

HTTP11_GET = RequestLine("GET", "/status", "HTTP/1.1", True)


def test_request_head_parsing_rejects_folding_and_lines_without_colon():
    headers = parse_header_lines([b"Host: x\r\n", b"content-length: 0\r\n", b"X-A: 1\r\n", b"x-a: 2\r\n"])
    assert headers.get("HOST") == "x" and headers.get_all("X-A") == ["1", "2"] and headers.get("nope") is None
    for bad in ([b"Host x\r\n"], [b"Host: x\r\n", b" folded\r\n"], [b"Host : x\r\n"], [b": x\r\n"]):
        with pytest.raises(HttpError) as caught:
            parse_header_lines(bad)
        assert caught.value.status == 400


@pytest.mark.parametrize(("raw", "expected"), [
    (b"GET /status HTTP/1.1\r\n", RequestLine("GET", "/status", "HTTP/1.1", True)),
    (b"POST /trigger/seasons HTTP/1.0\r\n", RequestLine("POST", "/trigger/seasons", "HTTP/1.0", False)),
    (b"BREW /x HTTP/1.1\n", RequestLine("BREW", "/x", "HTTP/1.1", True)),  # the method is checked later
])
def test_request_line_gives_method_target_version_and_keep_alive(raw, expected):
    assert parse_request_line(raw) == expected


def test_blank_request_line_is_none():
    assert parse_request_line(b"\r\n") is None


@pytest.mark.parametrize(("raw", "status", "message"), [
    (b"GARBAGE\r\n", 400, "Bad request syntax ('GARBAGE')"),
    (b"GET /health HTTP/1.x\r\n", 400, "Bad request version ('HTTP/1.x')"),
    (b"GET /health HTTP/1.1 extra\r\n", 400, "Bad request version ('extra')"),
    (b"GET / x HTTP/1.1\r\n", 400, "Bad request syntax ('GET / x HTTP/1.1')"),
    (b"GET /health HTTP/2.0\r\n", 505, "Invalid HTTP version (2.0)"),
    (b"POST /health\r\n", 505, "HTTP/0.9 requests are not supported; send HTTP/1.1"),
    (b"GET /health\r\n", 505, "HTTP/0.9 requests are not supported; send HTTP/1.1"),
    (b"GET  /health HTTP/1.1\r\n", 400,
     "Bad request syntax ('GET  /health HTTP/1.1'): words must be separated by single spaces"),
    (b"GET /" + b"a" * MAX_LINE + b" HTTP/1.1\r\n", 414, "Request-URI Too Long"),
])
def test_bad_request_lines_are_refused_as_http_server_would(raw, status, message):
    with pytest.raises(HttpError) as caught:
        parse_request_line(raw[:MAX_LINE + 1])

    assert (caught.value.status, caught.value.message) == (status, message)


@pytest.mark.parametrize("raw", [b"GET /status?x\xc3\xa9=1 HTTP/1.1\r\n", b"GET /st\xc3\xa9tus HTTP/1.1\r\n",
                                 b"GET /status?season=\xff HTTP/1.1\r\n"])
def test_a_target_with_bytes_outside_ascii_is_400_without_echoing_them(raw):
    with pytest.raises(HttpError) as caught:
        parse_request_line(raw)

    assert (caught.value.status, caught.value.message) == (
        400, "request target has bytes outside ASCII; percent-encode them (RFC 3986)")


def test_a_percent_encoded_target_passes():
    assert parse_request_line(b"GET /status?x%C3%A9=1 HTTP/1.1\r\n").target == "/status?x%C3%A9=1"


def test_headers_follow_only_a_three_word_line_within_the_limit():
    assert headers_follow(b"GET / HTTP/1.1\r\n")
    assert not headers_follow(b"GET /\r\n")
    assert not headers_follow(b"GET /" + b"a" * MAX_LINE + b" HTTP/1.1\r\n")


@pytest.mark.parametrize(("line", "connection", "keep_alive"), [
    (HTTP11_GET, None, True),
    (HTTP11_GET, b"close", False),
    (HTTP11_GET, b"Close", False),
    (RequestLine("GET", "/status", "HTTP/1.0", False), None, False),
    (RequestLine("GET", "/status", "HTTP/1.0", False), b"keep-alive", True),
])
def test_connection_header_decides_keep_alive(line, connection, keep_alive):
    lines = [] if connection is None else [b"Connection: " + connection + b"\r\n"]

    head = parse_head(line, lines)

    assert (head.method, head.target, head.version, head.keep_alive) == (line.method, "/status", line.version,
                                                                         keep_alive)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "TRACE", "OPTIONS", "BREW", "get", "M-SEARCH", "X!#$%&'*+.^_`|~1"])
def test_any_method_token_passes_the_head_for_routing_to_decide(method):
    line = parse_request_line(method.encode() + b" /status HTTP/1.1\r\n")
    assert parse_head(line, [b"Host: x\r\n"]).method == method


@pytest.mark.parametrize("raw", [b"G(T /status HTTP/1.1\r\n", b"GE\x01T /status HTTP/1.1\r\n",
                                 b"G\xc3\x89T /status HTTP/1.1\r\n", b"GET, /status HTTP/1.1\r\n",
                                 b"\"GET\" /status HTTP/1.1\r\n", b"GE{}T /status HTTP/1.1\r\n"])
def test_method_that_is_not_a_token_is_400(raw):
    with pytest.raises(HttpError) as caught:
        parse_request_line(raw)
    assert caught.value.status == 400 and caught.value.message.startswith("method is not a valid token")


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/3.0", b"HTTP/0.9", b"HTTP/0.1", b"HTTP/10.1"])
def test_well_formed_http_version_other_than_1_is_505(version):
    with pytest.raises(HttpError) as caught:
        parse_request_line(b"GET /health " + version + b"\r\n")
    assert caught.value.status == 505


def test_head_announces_its_body_length():
    assert parse_head(HTTP11_GET, [b"Content-Length: 10\r\n"]).body_length == 10
    assert parse_head(HTTP11_GET, []).body_length == 0
    with pytest.raises(HttpError) as caught:
        parse_head(HTTP11_GET, [b"Content-Length: 65537\r\n"])
    assert caught.value.status == 413


def test_header_lines_over_64_kib_together_are_431():
    line = b"X-Pad: " + b"a" * 1000 + b"\r\n"  # 1009 bytes
    fits = [line] * (MAX_HEADER_BYTES // len(line))
    assert len(parse_head(HTTP11_GET, fits).headers.get_all("x-pad")) == 64
    with pytest.raises(HttpError) as caught:
        parse_head(HTTP11_GET, fits + [line])
    assert (caught.value.status, caught.value.message) == (431, "Request header fields too large (limit 65536 bytes)")


def test_too_many_or_too_long_header_lines_are_431():
    with pytest.raises(HttpError) as many:
        parse_head(HTTP11_GET, [b"X: 1\r\n"] * (MAX_HEADERS + 1))
    with pytest.raises(HttpError) as long:
        parse_head(HTTP11_GET, [b"Host: x\r\n", b"X: " + b"a" * MAX_LINE])
    assert (many.value.status, many.value.message) == (431, "Too many headers")
    assert (long.value.status, long.value.message) == (431, "Line too long")
    assert len(parse_head(HTTP11_GET, [b"X: 1\r\n"] * MAX_HEADERS).headers.get_all("x")) == MAX_HEADERS


def headers(*lines: bytes) -> Headers:
    return parse_header_lines([line + b"\r\n" for line in lines])


@pytest.mark.parametrize(("lines", "length"), [
    ((), 0),
    ((b"Content-Length: 0",), 0),
    ((b"Content-Length:  12 ",), 12),
    ((b"Content-Length: 65536",), MAX_BODY_BYTES),
])
def test_body_length_is_the_content_length(lines, length):
    assert body_length(headers(*lines)) == length


@pytest.mark.parametrize(("lines", "status", "message"), [
    ((b"Transfer-Encoding: chunked", b"Content-Length: x"), 411,
     "Transfer-Encoding is not supported; send Content-Length"),
    ((b"Content-Length: 0", b"content-length: 0"), 400, "Content-Length is repeated"),
    ((b"Content-Length: -1",), 400, "Content-Length is not a number"),
    ((b"Content-Length: 1e3",), 400, "Content-Length is not a number"),
    ((b"Content-Length: " + b"9" * 19,), 400, "Content-Length is not a number"),
    ((b"Content-Length: 65537",), 413, "body too large: 65537 bytes, limit 65536"),
])
def test_bad_content_length_is_refused(lines, status, message):
    with pytest.raises(HttpError) as caught:
        body_length(headers(*lines))

    assert (caught.value.status, caught.value.message) == (status, message)


def test_expects_continue_reads_the_expect_header():
    assert expects_continue(headers(b"Expect: 100-Continue"))
    assert not expects_continue(headers(b"Host: x"))


@pytest.mark.parametrize("line", [b"Bad Header: x\r\n", b"X-A: a\x00b\r\n", b"X-A: a\rb\r\n", b"X(A): 1\r\n",
                                  b"X-A: \x1b[31m\r\n"])
def test_a_header_name_that_is_not_a_token_or_a_control_character_in_a_value_is_400(line):
    with pytest.raises(HttpError) as caught:
        parse_header_lines([line])
    assert caught.value.status == 400


def test_a_tab_and_obs_text_in_a_header_value_are_kept():
    assert parse_header_lines([b"X-A: a\tb \xe9\r\n"]).get("x-a") == "a\tb \xe9"
