//! Slow and greedy clients cannot take the server from the others: connections are capped per client IP
//! and in all, a request's headers and body must arrive in time, and idle keep-alive connections close.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::TestApp;

/// A connection from `source` (any 127.x address: Linux routes them all to loopback) that sends the start
/// of a request and then nothing.
async fn slow_connection(source: &str, server: SocketAddr) -> Option<TcpStream> {
    let socket = TcpSocket::new_v4().ok()?;
    socket.bind(format!("{source}:0").parse().ok()?).ok()?;
    let mut stream = socket.connect(server).await.ok()?;
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: portal\r\nX-Slow: ").await.ok()?;
    Some(stream)
}

/// Whether the server has closed `stream` (a read ends, or fails, rather than waiting).
async fn closed(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(within, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A response (408, say) before the close: keep reading.
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn health_answers_within_a_second_while_two_thousand_slow_connections_are_open() {
    let app = TestApp::spawn().await;
    let mut held = Vec::new();
    for batch in 0..20 {
        let opening = (0..100).map(|_| slow_connection("127.0.0.2", app.addr));
        held.extend(futures_util::future::join_all(opening).await.into_iter().flatten());
        // Meanwhile others are served at once.
        let started = Instant::now();
        let health = app.get("/health").await;
        assert_eq!(health.status, 200, "batch {batch}");
        assert!(started.elapsed() < Duration::from_secs(1), "batch {batch}: /health took {:?}", started.elapsed());
    }
    assert!(held.len() >= 1900, "{} of 2000 slow connections opened", held.len());
    for _ in 0..10 {
        let started = Instant::now();
        assert_eq!(app.get("/health").await.status, 200);
        assert!(started.elapsed() < Duration::from_secs(1), "/health took {:?}", started.elapsed());
    }
    // The server kept only its per-IP share of them: the rest are closed already.
    let mut open = 0;
    for stream in &mut held {
        if !closed(stream, Duration::from_millis(5)).await {
            open += 1;
        }
    }
    assert_eq!(open, 64, "slow connections the server still holds from one IP");
}

#[tokio::test]
async fn headers_and_bodies_must_arrive_in_time_and_idle_connections_close() {
    let app = TestApp::spawn_with(|c| c.core.connections.request_timeout_seconds = 1).await;
    // Headers that never finish: closed after the deadline.
    let mut slow = slow_connection("127.0.0.3", app.addr).await.unwrap();
    let started = Instant::now();
    assert!(closed(&mut slow, Duration::from_secs(5)).await, "a header-read deadline");
    assert!(started.elapsed() >= Duration::from_millis(900), "closed after {:?}", started.elapsed());

    // A body that stops halfway: 408 in the envelope.
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let head =
        "POST /auth/login HTTP/1.1\r\nHost: portal\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(b"{\"email\": ").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");

    // A keep-alive connection left idle after a request: closed too.
    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: portal\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 4096];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(closed(&mut idle, Duration::from_secs(5)).await, "an idle keep-alive connection");
}

#[tokio::test]
async fn connections_beyond_the_total_are_closed_at_once() {
    let app = TestApp::spawn_with(|c| c.core.connections.max_connections = 10).await;
    let mut held = Vec::new();
    for i in 0..10 {
        held.push(slow_connection(&format!("127.0.1.{i}"), app.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = slow_connection("127.0.2.1", app.addr).await.unwrap();
    assert!(closed(&mut extra, Duration::from_secs(2)).await, "the eleventh connection");
    // One closes, and there is room again.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(app.get("/health").await.status, 200);
}
