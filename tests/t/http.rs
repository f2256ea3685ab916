//! Building requests the way Test::Nginx does, sending them over TCP and parsing responses.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Builds the bytes of a request from a `--- request` value and `--- more_headers` text.
///
/// Like Test::Nginx: leading whitespace and `#` comment lines are dropped; the first line is
/// `METHOD [URI [VERSION]]` (URI defaults to `/`, version to `HTTP/1.1`); the rest is the body.
/// `Host: localhost` and `Connection: close` are added unless `more_headers` has them; a
/// non-empty body is trimmed and gets a `Content-Length` unless `more_headers` sets one or
/// uses `Transfer-Encoding: chunked`.
pub fn build_request(request: &[u8], more_headers: &[u8]) -> Result<Vec<u8>, String> {
    let mut req = request;
    // while ($request =~ s/^\s*\#[^\n]+\s+|^\s+//gs) {}
    loop {
        let start = req
            .iter()
            .position(|c| !c.is_ascii_whitespace())
            .unwrap_or(req.len());
        req = &req[start..];
        if req.first() == Some(&b'#') {
            match req.iter().position(|&c| c == b'\n') {
                Some(nl) => req = &req[nl + 1..],
                None => req = &[],
            }
            continue;
        }
        break;
    }
    let (first, body) = match req.iter().position(|&c| c == b'\n') {
        Some(nl) => (&req[..nl], &req[nl + 1..]),
        None => (req, &b""[..]),
    };
    // Bytes all the way: a request line or header may carry invalid UTF-8 on purpose.
    let mut parts = first
        .split(|c| c.is_ascii_whitespace())
        .filter(|p| !p.is_empty());
    let method = parts
        .next()
        .ok_or("the --- request section is empty; it needs at least 'METHOD /uri'")?;
    let uri = parts.next().unwrap_or(b"/");
    let version = parts.next().unwrap_or(b"HTTP/1.1");
    if parts.next().is_some() {
        return Err(format!(
            "request line is not valid: should be 'meth [url [version]]' but got {:?}",
            String::from_utf8_lossy(first)
        ));
    }

    let (headers, chunked) = parse_more_headers(more_headers);
    let has = |name: &str| {
        headers
            .split(|&c| c == b'\n')
            .any(|l| l.len() > name.len() && l[..name.len()].eq_ignore_ascii_case(name.as_bytes()))
    };
    let mut out = Vec::new();
    for (i, p) in [method, uri, version].iter().enumerate() {
        out.extend_from_slice(p);
        out.extend_from_slice(if i < 2 { b" " } else { b"\r\n" });
    }
    if !has("Host:") {
        out.extend_from_slice(b"Host: localhost\r\n");
    }
    if !has("Connection") {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(&headers);
    let mut body = body.to_vec();
    // As Test::Nginx: `Content-Length:` is looked for case-sensitively, Host and Connection not.
    let has_length = headers
        .split(|&c| c == b'\n')
        .any(|l| l.starts_with(b"Content-Length:"));
    if !chunked && !body.is_empty() && !has_length {
        let start = body
            .iter()
            .position(|c| !c.is_ascii_whitespace())
            .unwrap_or(body.len());
        let end = body
            .iter()
            .rposition(|c| !c.is_ascii_whitespace())
            .map_or(start, |e| e + 1);
        body = body[start..end.max(start)].to_vec();
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    Ok(out)
}

/// `--- more_headers`: one `Name: value` per line, `#` lines skipped; returns CRLF-terminated
/// header lines and whether `Transfer-Encoding: chunked` is among them.
fn parse_more_headers(text: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut chunked = false;
    for line in text.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
        if line.trim_ascii_start().starts_with(b"#") {
            continue;
        }
        let (key, val) = match line.iter().position(|&c| c == b':') {
            Some(i) => (&line[..i], line[i + 1..].trim_ascii_start()),
            None => (line, &b""[..]),
        };
        if key.eq_ignore_ascii_case(b"transfer-encoding") && val == b"chunked" {
            chunked = true;
        }
        out.extend_from_slice(key);
        out.extend_from_slice(b": ");
        out.extend_from_slice(val);
        out.extend_from_slice(b"\r\n");
    }
    (out, chunked)
}

/// A parsed HTTP response.
#[derive(Debug, Default)]
pub struct Response {
    /// The status code, or None when no valid status line arrived.
    pub status: Option<u16>,
    /// Header lines in order (names as sent).
    pub headers: Vec<(String, String)>,
    /// The raw header block: the status line and header lines, each ending with CRLF.
    pub raw_headers: String,
    /// The body, chunked encoding removed.
    pub body: Vec<u8>,
    /// Everything that was received.
    pub raw: Vec<u8>,
    /// Problems such as a timeout or a truncated body.
    pub problems: Vec<String>,
}

impl Response {
    /// All values of a header joined with ", " (like HTTP::Headers), None when absent.
    pub fn header(&self, name: &str) -> Option<String> {
        let vals: Vec<&str> = self
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        (!vals.is_empty()).then(|| vals.join(", "))
    }
}

/// Sends `request` to `addr` and reads the response until the server closes the connection,
/// as Test::Nginx does: a response that is complete but on a connection the server keeps open
/// (a `raw_request` without `Connection: close`) ends in a timeout, which is a failure.
/// `timeout` applies to the connect and to each wait for more data (Test::Nginx's `select`
/// timeout), not to the whole exchange.
pub fn send(
    addr: SocketAddr,
    request: &[u8],
    timeout: Duration,
    head: bool,
) -> Result<Response, String> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream.set_write_timeout(Some(timeout)).ok();
    stream.set_read_timeout(Some(timeout)).ok();
    let _ = stream.set_nodelay(true);
    // A write error (the server closed early, e.g. after a 400) is not fatal: read what came.
    let write_error = stream.write_all(request).err();
    let mut raw = Vec::new();
    let mut problems = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                problems.push(format!(
                    "timed out after {:.1}s waiting for the server to send more or close the \
                     connection{}",
                    timeout.as_secs_f64(),
                    if raw.is_empty() {
                        ""
                    } else {
                        " (Test::Nginx reads until the connection closes: a request needs \
                         Connection: close)"
                    }
                ));
                break;
            }
            Err(e) => {
                if raw.is_empty() {
                    problems.push(format!("error reading the response: {e}"));
                }
                break;
            }
        }
    }
    if raw.is_empty() {
        if let Some(e) = write_error {
            problems.push(format!("error sending the request: {e}"));
        }
    }
    let mut resp = parse_response(&raw, head);
    resp.problems.splice(0..0, problems);
    Ok(resp)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses the status line and headers (without the blank line).
fn parse_head(head: &[u8]) -> Response {
    let text = String::from_utf8_lossy(head).into_owned();
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let status = match (parts.next(), parts.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => code.parse().ok(),
        _ => None,
    };
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Response {
        status,
        headers,
        raw_headers: text,
        ..Response::default()
    }
}

/// Decodes a chunked body: returns the data and whether the last chunk was seen.
fn dechunk(mut body: &[u8]) -> Result<(Vec<u8>, bool), String> {
    let mut out = Vec::new();
    loop {
        let Some(nl) = find(body, b"\r\n") else {
            return Ok((out, false));
        };
        let size_text = String::from_utf8_lossy(&body[..nl]);
        let size_hex = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("bad chunk size line {size_text:?}"))?;
        body = &body[nl + 2..];
        if size == 0 {
            // trailers until an empty line
            return Ok((out, find(body, b"\r\n").is_some()));
        }
        if body.len() < size + 2 {
            out.extend_from_slice(&body[..size.min(body.len())]);
            return Ok((out, false));
        }
        out.extend_from_slice(&body[..size]);
        if &body[size..size + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".to_string());
        }
        body = &body[size + 2..];
    }
}

/// Parses a complete (or truncated) raw response.
pub fn parse_response(raw: &[u8], head: bool) -> Response {
    let (head_end, body_start) = match find(raw, b"\r\n\r\n") {
        Some(e) => (e, e + 4),
        None => (raw.len(), raw.len()),
    };
    let mut resp = parse_head(&raw[..head_end]);
    // As Test::Nginx's raw headers: the status line and the header lines, each with its CRLF
    // (empty when the blank line that ends them never came).
    resp.raw_headers = if head_end < raw.len() {
        String::from_utf8_lossy(&raw[..head_end + 2]).into_owned()
    } else {
        String::new()
    };
    resp.raw = raw.to_vec();
    if raw.is_empty() {
        resp.problems.push("no response received".to_string());
        return resp;
    }
    if resp.status.is_none() {
        resp.problems
            .push("no valid HTTP status line in the response".to_string());
    }
    let body = &raw[body_start..];
    let status = resp.status.unwrap_or(0);
    if head || status == 204 || status == 304 {
        return resp;
    }
    if resp
        .header("Transfer-Encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
    {
        match dechunk(body) {
            Ok((data, done)) => {
                if !done {
                    resp.problems
                        .push("chunked body is truncated (no last chunk)".to_string());
                }
                resp.body = data;
            }
            Err(e) => {
                resp.problems.push(format!("invalid chunked body: {e}"));
                resp.body = body.to_vec();
            }
        }
    } else if let Some(len) = resp
        .header("Content-Length")
        .and_then(|l| l.trim().parse::<usize>().ok())
    {
        if body.len() < len {
            resp.problems.push(format!(
                "body is truncated: Content-Length {len}, got {} bytes",
                body.len()
            ));
        }
        resp.body = body[..len.min(body.len())].to_vec();
    } else {
        resp.body = body.to_vec();
    }
    resp
}

pub fn unit_tests() -> Vec<(&'static str, fn())> {
    vec![
        ("http build request", test_build),
        ("http parse response", test_parse),
    ]
}

fn test_build() {
    let r = build_request(b"  GET /t\n", b"").unwrap();
    assert_eq!(
        r,
        b"GET /t HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    );
    let r = build_request(b"POST /t\nhello world\n", b"X-A: 1\nHost: foo\n# c\n").unwrap();
    assert_eq!(
        String::from_utf8(r).unwrap(),
        "POST /t HTTP/1.1\r\nConnection: close\r\nX-A: 1\r\nHost: foo\r\nContent-Length: 11\r\n\r\nhello world"
    );
    let r = build_request(b"GET /\xff\xfe", b"X-A: \xef\xbf\xbd\xff\n").unwrap();
    assert_eq!(
        r,
        b"GET /\xff\xfe HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-A: \xef\xbf\xbd\xff\r\n\r\n"
    );
    let r = build_request(b"GET", b"").unwrap();
    assert!(r.starts_with(b"GET / HTTP/1.1\r\n"));
    let r = build_request(b"GET / HTTP/1.0", b"").unwrap();
    assert!(r.starts_with(b"GET / HTTP/1.0\r\n"));
}

fn test_parse() {
    let raw = b"HTTP/1.1 200 OK\r\nA: 1\r\nTransfer-Encoding: chunked\r\nA: 2\r\n\r\n5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n";
    let r = parse_response(raw, false);
    assert_eq!(r.status, Some(200));
    assert_eq!(r.body, b"hello!");
    assert_eq!(r.header("a").as_deref(), Some("1, 2"));
    assert!(r.problems.is_empty());
    let raw = b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nab";
    let r = parse_response(raw, false);
    assert_eq!(r.status, Some(404));
    assert_eq!(r.problems.len(), 1);
}
