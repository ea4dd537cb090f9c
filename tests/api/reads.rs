//! Reading a request is bounded: a client that stalls inside its head is disconnected, one
//! that stalls inside its body gets `408`, and malformed framing is `400`, not `413`.

use std::time::Duration;

use axum::body::Body;
use chamada::entry::local::serve_on;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

/// The router of a default app on a real socket, with this bound on request heads.
async fn serve(head_timeout: Duration) -> (String, tokio::sync::oneshot::Sender<()>) {
    let t = TestApp::new(&[]).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_on(listener, t.router, head_timeout, async {
        let _ = stopped.await;
    }));
    (address, stop)
}

/// Everything the server sends until it closes, or `None` if it is still open after `within`.
async fn read_until_closed(socket: &mut TcpStream, within: Duration) -> Option<String> {
    let mut out = Vec::new();
    tokio::time::timeout(within, socket.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn a_client_stalling_inside_its_headers_is_disconnected() {
    let (address, _stop) = serve(Duration::from_millis(300)).await;
    let mut socket = TcpStream::connect(&address).await.unwrap();
    socket
        .write_all(b"POST /api/start_call HTTP/1.1\r\nHost: localhost\r\nContent-Type: appl")
        .await
        .unwrap();
    let answer = read_until_closed(&mut socket, Duration::from_secs(5)).await;
    assert!(
        answer.is_some(),
        "the connection was still open 5 s after a 300 ms head timeout"
    );
}

#[tokio::test]
async fn malformed_chunked_framing_is_a_400_not_a_413() {
    let (address, _stop) = serve(Duration::from_secs(10)).await;
    let mut socket = TcpStream::connect(&address).await.unwrap();
    socket
        .write_all(
            b"POST /api/start_call HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
              Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        )
        .await
        .unwrap();
    let answer = read_until_closed(&mut socket, Duration::from_secs(5))
        .await
        .expect("the server answers and closes");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("\"invalid_request\""), "{answer}");
}

#[tokio::test(start_paused = true)]
async fn a_body_that_stalls_is_a_408_after_the_read_bound() {
    let t = TestApp::new(&[]).await;
    let first = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(
        b"{\"phone_number\":",
    ))]);
    let stalled = futures_util::StreamExt::chain(first, futures_util::stream::pending());
    let request = http::Request::post("/api/start_call")
        .header("content-type", "application/json")
        .body(Body::from_stream(stalled))
        .unwrap();
    // Time is paused: the runtime moves it on when nothing else can run, so the 30 s bound
    // passes without waiting.
    let started = tokio::time::Instant::now();
    let r = t.send(request).await;
    r.assert_error(408, "request_timeout");
    assert!(started.elapsed() >= chamada::http::BODY_READ_TIMEOUT);
    assert_eq!(t.calls(), 0);
}
