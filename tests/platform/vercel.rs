//! The Vercel entry point (`api/start_call.rs` on `vercel_runtime`), run as Vercel runs it: a
//! process serving its bridge's HTTP requests on `VERCEL_DEV_PORT`, with `VERCEL=1` so the
//! client address is Vercel's `x-real-ip`.

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::support::receiver::GatedReceiver;

async fn start_vercel_function() -> (tokio::process::Child, String) {
    let (child, base, _lines) = start_vercel_function_with(&[]).await;
    (child, base)
}

/// The function with extra variables; its stdout lines after start-up come through the channel.
async fn start_vercel_function_with(
    extra: &[(&str, &str)],
) -> (
    tokio::process::Child,
    String,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    // A free port for the bridge (vercel_runtime cannot report a port 0 back).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("chamada-vercel-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_start_call"))
        .env_clear()
        .env("VERCEL", "1")
        .env("VERCEL_DEV_PORT", port.to_string())
        .env("ALLOWED_ORIGINS", "https://chamada.example")
        .envs(extra.iter().copied())
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the Vercel function binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("Dev server listening") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(ready, "the function never said it was listening");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(line);
        }
    });
    (child, format!("http://127.0.0.1:{port}"), rx)
}

#[tokio::test]
async fn on_vercel_the_client_is_x_real_ip_and_forwarded_for_is_ignored() {
    let (_child, base) = start_vercel_function().await;
    let http = chamada::outbound::http_client().unwrap();
    let url = format!("{base}/api/start_call");
    for i in 0..5 {
        let r = http
            .post(&url)
            .header("x-real-ip", "198.51.100.40")
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .json(&json!({ "phone_number": format!("+3519123450{i:02}") }))
            .send()
            .await
            .unwrap();
        let expected = if i < 3 { 200 } else { 429 };
        assert_eq!(r.status(), expected, "request {i}");
        assert!(r.headers().contains_key("x-request-id"));
    }
    // Another visitor (Vercel sets a different x-real-ip) has their own calls.
    let r = http
        .post(&url)
        .header("x-real-ip", "198.51.100.41")
        .json(&json!({ "phone_number": "+351912345010" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Without x-real-ip there is no client address: refused, never unlimited.
    let r = http
        .post(&url)
        .json(&json!({ "phone_number": "+351912345011" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn on_vercel_health_and_cors_behave_as_everywhere() {
    let (_child, base) = start_vercel_function().await;
    let http = chamada::outbound::http_client().unwrap();
    let r = http.get(format!("{base}/api/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .request(reqwest::Method::OPTIONS, format!("{base}/api/start_call"))
        .header("origin", "https://chamada.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://chamada.example"
    );
    let r = http
        .post(format!("{base}/api/start_call"))
        .header("origin", "https://evil.test")
        .header("x-real-ip", "198.51.100.42")
        .json(&json!({ "phone_number": "+351912345678" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

/// Vercel's `waitUntil`: the answer leaves while the receiver still holds the event, and the
/// invocation's background work then runs the delivery to its end.
#[tokio::test]
async fn on_vercel_the_answer_comes_first_and_wait_until_delivers_after_it() {
    let hook = GatedReceiver::start().await;
    let (_child, base, mut lines) = start_vercel_function_with(&[
        ("MAKE_WEBHOOK_URL", hook.url.as_str()),
        ("WEBHOOK_RETRIES", "0"),
    ])
    .await;
    let r = chamada::outbound::http_client()
        .unwrap()
        .post(format!("{base}/api/start_call"))
        .header("x-real-ip", "198.51.100.43")
        .json(&json!({ "phone_number": "+351912345012" }))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("the answer does not wait for the receiver");
    // The receiver cannot have answered: its gate is closed.
    assert_eq!(r.status(), 200);
    assert_eq!(hook.gate.available_permits(), 0);

    let delivered = tokio::time::timeout(Duration::from_secs(20), async {
        while hook.ids().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        hook.gate.add_permits(1);
        while let Some(line) = lines.recv().await {
            if line.contains("Webhook delivered") {
                return line;
            }
        }
        String::new()
    })
    .await
    .expect("the delivery ran after the answer");
    let id = hook.ids()[0].clone();
    assert!(id.starts_with("msg_"), "{id}");
    assert!(delivered.contains(&id), "{delivered}");
}
