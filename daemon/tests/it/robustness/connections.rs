//! Slow and idle connections are cut; a flood of idle connections at the
//! open-file limit does not keep an authenticated client out.

use super::*;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn addr(d: &Server) -> String {
    d.base.trim_start_matches("http://").to_string()
}

/// Waits until the server closes `s` (EOF or reset); returns when.
async fn closed_by_server(s: &mut TcpStream, limit: Duration) -> Option<Instant> {
    let mut buf = [0u8; 1024];
    let until = Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(until.into(), s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(Instant::now()),
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn a_slow_header_is_cut_at_the_header_timeout_and_a_silent_connection_at_the_idle_timeout() {
    let dir = TempDir::new("slowloris");
    let token = create_token(dir.path(), "alice");
    let d = Server::start(
        dir.path(),
        &Opts {
            config: "[http]\nheader_timeout_secs = 1\nidle_timeout_secs = 3\n".into(),
            ..Opts::default()
        },
    );

    // Slowloris: one byte of a request head every 300 ms.
    let mut slow = TcpStream::connect(addr(&d)).await.unwrap();
    let silent_since = Instant::now();
    let mut silent = TcpStream::connect(addr(&d)).await.unwrap();
    let head = b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let started = Instant::now();
    let mut cut = None;
    for b in head.iter() {
        if slow.write_all(&[*b]).await.is_err() {
            cut = Some(Instant::now());
            break;
        }
        let mut probe = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(300), slow.read(&mut probe)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut = Some(Instant::now());
                break;
            }
            _ => {}
        }
    }
    let cut = cut.expect("the slow head was never cut");
    let took = cut - started;
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "cut after {took:?}, header timeout 1 s"
    );

    // The silent one lives to the idle timeout, not the header timeout.
    let closed = closed_by_server(&mut silent, Duration::from_secs(8))
        .await
        .expect("the idle connection was never closed");
    let idle = closed - silent_since;
    assert!(
        idle >= Duration::from_millis(2900) && idle < Duration::from_millis(5000),
        "idle connection closed after {idle:?}, idle timeout 3 s"
    );

    // A parked long-poll is a request in flight: longer than the idle
    // timeout, and answered normally.
    let mut c = Mcp::connect(&d.url(), Some(&token)).await;
    let (cid, _) = channel(&mut c, &["alice"]).await;
    let t = Instant::now();
    let v = c
        .ok(
            "sync_messages",
            json!({"channel_id": cid, "cursor": 2, "wait_ms": 4000}),
        )
        .await;
    assert!(t.elapsed() >= Duration::from_millis(3900), "{v}");
    assert_eq!(v["messages"], json!([]));

    assert!(
        d.metric("mcp_multiplayer_connections_closed_total{reason=\"header_timeout\"}")
            .await
            >= 1.0
    );
    assert!(
        d.metric("mcp_multiplayer_connections_closed_total{reason=\"idle_timeout\"}")
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_at_the_write_timeout() {
    let dir = TempDir::new("nonreader");
    let d = Server::start(
        dir.path(),
        &Opts {
            config: "[http]\nwrite_timeout_secs = 1\n".into(),
            ..Opts::default()
        },
    );
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut s = sock.connect(addr(&d).parse().unwrap()).await.unwrap();
    // Pipelined requests whose answers (tens of MB) it never reads.
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {}\r\n\r\n", addr(&d));
    let many = req.repeat(3000);
    let _ = tokio::time::timeout(Duration::from_secs(10), s.write_all(many.as_bytes())).await;
    let cut = eventually(Duration::from_secs(20), || async {
        d.metric("mcp_multiplayer_connections_closed_total{reason=\"write_timeout\"}")
            .await
            >= 1.0
    })
    .await;
    assert!(cut, "a stalled write was never cut");
    drop(s);
}

/// Opens `n` idle connections; keeps them (until dropped).
async fn idle_connections(to: &str, n: usize) -> Vec<TcpStream> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        if let Ok(s) = TcpStream::connect(to).await {
            v.push(s);
        }
    }
    v
}

#[tokio::test]
#[ignore = "opens 1,100+ sockets against a daemon held to 1,024 open files: tests/steps/70-robustness.sh"]
async fn an_authenticated_client_is_answered_within_2s_through_1100_idle_connections_at_1024_fds() {
    let dir = TempDir::new("fdflood");
    let token = create_token(dir.path(), "alice");
    let d = Server::start(
        dir.path(),
        &Opts {
            prefix: vec!["prlimit".into(), "--nofile=1024:1024".into()],
            ..Opts::default()
        },
    );
    let to = addr(&d);
    let flood = idle_connections(&to, 1100).await;
    assert!(flood.len() >= 1000, "opened only {}", flood.len());
    // Keep the pressure on while the client works: new idle connections.
    let churn_to = to.clone();
    let churn = tokio::spawn(async move {
        let mut held = Vec::new();
        for _ in 0..2000 {
            if let Ok(s) = TcpStream::connect(&churn_to).await {
                held.push(s);
            }
            tokio::task::yield_now().await;
        }
        held
    });
    let t = Instant::now();
    let mut c = Mcp::connect(&d.url(), Some(&token)).await;
    let (cid, _) = channel(&mut c, &["alice"]).await;
    c.ok(
        "post_message",
        json!({"channel_id": cid, "body": "through the flood"}),
    )
    .await;
    let took = t.elapsed();
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    let held = churn.await.unwrap();
    assert!(
        d.metric("mcp_multiplayer_connections_closed_total{reason=\"evicted\"}")
            .await
            >= 1000.0
    );
    // The daemon never ran out of descriptors: a fresh client still works.
    let mut c2 = Mcp::connect(&d.url(), Some(&token)).await;
    c2.ok("list_channels", json!({})).await;
    drop((flood, held));
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_answered_408_not_500() {
    let dir = TempDir::new("slowbody");
    let token = create_token(dir.path(), "alice");
    let d = Server::start(
        dir.path(),
        &Opts {
            config: "[http]\nbody_timeout_secs = 1\n".into(),
            ..Opts::default()
        },
    );
    for (path, auth) in [("/mcp", Some(&token)), ("/register", None)] {
        let mut s = TcpStream::connect(addr(&d)).await.unwrap();
        let auth = auth.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 200\r\n\r\n{{\"jsonrpc\":",
            addr(&d)
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let t = Instant::now();
        let mut resp = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut resp)).await;
        let text = String::from_utf8_lossy(&resp);
        assert!(text.starts_with("HTTP/1.1 408"), "{path}: {text}");
        assert!(
            t.elapsed() < Duration::from_secs(4),
            "{path}: {:?}",
            t.elapsed()
        );
    }
}
