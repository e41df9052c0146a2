//! hyper answers a request it cannot parse (bad syntax: 400, a target too long: 414, headers too large or
//! too many: 431) by itself, before any handler runs, with a bare status line. [`DressBareAnswers`] wraps a
//! connection's stream and writes the contract's answer in its place: the error envelope, the security
//! headers and a request id. Such an answer is told apart as the only response that leaves without an
//! `x-request-id` header (every answer of the app carries one); it is always the connection's last.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use poem::http::{header, HeaderValue, StatusCode};
use portal_core::{Error, ErrorCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::middleware::{add_security_headers, REQUEST_ID};

pub struct DressBareAnswers<S> {
    inner: S,
    tls: bool,
    /// Our answer in place of hyper's, and how much of it is written.
    pending: Option<(Vec<u8>, usize)>,
}

impl<S> DressBareAnswers<S> {
    pub fn new(inner: S, tls: bool) -> Self {
        Self { inner, tls, pending: None }
    }
}

impl<S: AsyncWrite + Unpin> DressBareAnswers<S> {
    /// Writes what is left of our answer.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            if *written == bytes.len() {
                self.pending = None;
                break;
            }
            let rest = bytes.get(*written..).unwrap_or_default();
            match ready!(Pin::new(&mut self.inner).poll_write(cx, rest))? {
                0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                n => *written += n,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Takes hyper's bare answer in `head` and queues ours; false for any other write.
    fn replaced(&mut self, head: &[u8]) -> bool {
        match bare_status(head) {
            Some(status) => {
                self.pending = Some((dressed(status, self.tls), 0));
                true
            }
            None => false,
        }
    }
}

/// The status of a response hyper made up itself: a 400, 414 or 431 head without a request id.
fn bare_status(head: &[u8]) -> Option<StatusCode> {
    let rest = head.strip_prefix(b"HTTP/1.1 ").or_else(|| head.strip_prefix(b"HTTP/1.0 "))?;
    let status = StatusCode::from_bytes(rest.get(..3)?).ok()?;
    // Every other answer (all but a few) is told apart by its status alone, before its head is read.
    if !matches!(status.as_u16(), 400 | 414 | 431) {
        return None;
    }
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
    let has_request_id = head
        .get(..end)
        .unwrap_or(head)
        .split(|&b| b == b'\n')
        .any(|line| line.to_ascii_lowercase().starts_with(b"x-request-id:"));
    (!has_request_id).then_some(status)
}

/// The contract's answer for `status`: the envelope, the security headers, a new request id, and the
/// connection closed after it.
fn dressed(status: StatusCode, tls: bool) -> Vec<u8> {
    let error = match status {
        StatusCode::URI_TOO_LONG => Error::new(ErrorCode::UriTooLong, "the request target is too long"),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            Error::new(ErrorCode::HeadersTooLarge, "the request headers are too large or too many")
        }
        _ => Error::bad_request("the request is not well-formed HTTP"),
    };
    let mut resp = poem::error::ResponseError::as_response(&error);
    add_security_headers(&mut resp, tls);
    let id = uuid::Uuid::now_v7().to_string();
    tracing::info!(target: "portal::access", status = status.as_u16(), request_id = id, "request refused before parsing");
    let headers = resp.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(REQUEST_ID, value);
    }
    let body = error.body();
    let mut out = format!("HTTP/1.1 {} {}\r\n", status.as_u16(), status.canonical_reason().unwrap_or("")).into_bytes();
    for (name, value) in resp.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(&body);
    out
}

impl<S: AsyncRead + Unpin> AsyncRead for DressBareAnswers<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for DressBareAnswers<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        if self.replaced(buf) {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        // A response's head comes first, in a slice of its own.
        if bufs.iter().find(|b| !b.is_empty()).is_some_and(|head| self.replaced(head)) {
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hyper_s_own_refusals_are_replaced() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(bare_status(bare), Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nx-request-id: 1\r\n\r\n{}";
        assert_eq!(bare_status(ours), None);
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(bare_status(ok), None);
        // A body chunk that happens to start like a head is no head without its blank line.
        assert_eq!(bare_status(b"HTTP/1.1 400 and more"), None);
    }

    #[test]
    fn the_dressed_answer_is_the_envelope_with_the_contract_s_headers() {
        let answer = String::from_utf8(dressed(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, false)).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{head}");
        for line in ["x-content-type-options: nosniff", "x-frame-options: DENY", "connection: close", "x-request-id: "]
        {
            assert!(head.contains(line), "{line} missing: {head}");
        }
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        let envelope: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(envelope["error"]["code"], "headers_too_large");
    }
}
