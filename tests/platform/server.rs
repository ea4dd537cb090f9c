//! The real local server binary over real HTTP: it starts, answers, limits, and logs JSON lines
//! with the operators' words and without secrets or full numbers.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::server::{assert_logs_are_clean, Server};
use crate::support::KEY;

#[tokio::test]
async fn the_local_server_serves_calls_refusals_and_limits_over_http() {
    let server = Server::start(&[("PRODUCTION_API_KEY", KEY)]).await;
    let http = chamada::outbound::http_client().unwrap();
    let url = format!("{}/api/start_call", server.base);

    let health: Value = http
        .get(format!("{}/api/health", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["provider"], "dry-run");

    let numbers = ["+351912345678", "+351912345001", "+351912345002"];
    for number in numbers {
        let r = http
            .post(&url)
            .json(&json!({ "phone_number": number, "name": "Maria" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["status"], "initiated");
        assert_eq!(body["dry_run"], true);
    }
    let r = http
        .post(&url)
        .json(&json!({ "phone_number": "+351912345003" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "86400");

    let r = http
        .post(&url)
        .json(&json!({ "phone_number": "+351760123456" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = http
        .post(&url)
        .bearer_auth("test-key-wrong-wrong-wrong-wrong-wrong-wrong")
        .json(&json!({ "phone_number": "+351912345678" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(&url)
        .header("origin", "https://evil.test")
        .json(&json!({ "phone_number": "+351912345678" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The server's own origin (the page it serves) is allowed.
    let own = server.base.clone();
    let r = http
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", &own)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-origin"], own.as_str());

    let logs = server.stop().await;
    assert_logs_are_clean(
        &logs,
        &[
            "912345678",
            "912345001",
            "912345002",
            "912345003",
            "760123456",
        ],
    );
    let joined = logs.join("\n");
    for words in [
        "Call initiated",
        "Rate limit exceeded",
        "Invalid API key",
        "CORS violation",
    ] {
        assert!(joined.contains(words), "no `{words}` line in:\n{joined}");
    }
    assert!(joined.contains("+351******678"), "masked number missing");
}

#[tokio::test]
async fn a_production_server_with_a_broken_configuration_starts_and_says_why() {
    let server = Server::start(&[("APP_ENV", "production"), ("PRODUCTION_API_KEY", "short")]).await;
    let http = chamada::outbound::http_client().unwrap();
    let r = http
        .get(format!("{}/api/health", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    let r = http
        .post(format!("{}/api/start_call", server.base))
        .bearer_auth("short")
        .json(&json!({ "phone_number": "+351912345678" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let logs = server.stop().await;
    let missing: Vec<&String> = logs
        .iter()
        .filter(|l| l.contains("Environment variable missing"))
        .collect();
    assert!(
        missing.iter().any(|l| l.contains("PRODUCTION_API_KEY")),
        "{logs:?}"
    );
    assert!(
        !logs.iter().any(|l| l.contains("\"short\"")),
        "a refused value was logged"
    );
}

/// A client that goes away while the provider is still dialling must not lose the call: the
/// call path runs to completion, logs `Call initiated`, keeps the answer for its
/// `Idempotency-Key`, and the retry replays it instead of ringing the person again.
#[tokio::test]
async fn a_client_that_disconnects_during_dispatch_loses_nothing_and_rings_once() {
    use tokio::io::AsyncWriteExt;
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"success": true, "conversation_id": "conv_slow"}))
                .set_delay(Duration::from_millis(1500)),
        )
        .expect(1)
        .mount(&provider)
        .await;
    let uri = provider.uri();
    let mut server = Server::start(&[
        ("ELEVENLABS_API_KEY", "test-elevenlabs-key-0123456789"),
        ("ELEVEN_AGENT_ID", "agent_test"),
        ("ELEVEN_AGENT_PHONE_NUMBER_ID", "phnum_test"),
        ("ELEVENLABS_API_BASE", &uri),
    ])
    .await;
    let address = server.base.trim_start_matches("http://localhost:");
    let body = json!({"phone_number": "+351912345678"}).to_string();

    // Send the request, wait until the provider has it, then hang up.
    let mut socket = tokio::net::TcpStream::connect(format!("127.0.0.1:{address}"))
        .await
        .unwrap();
    let request = format!(
        "POST /api/start_call HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Idempotency-Key: disconnect-test-1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while provider
        .received_requests()
        .await
        .unwrap_or_default()
        .is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the provider was never called"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(socket);

    let initiated = server
        .wait_for("Call initiated", Duration::from_secs(10))
        .await;
    assert!(
        initiated.is_some(),
        "the call placed for a gone client was not logged"
    );

    // `Call initiated` is logged before the answer is kept: a retry in between is
    // `409 request_in_progress` by contract (docs/API.md §8), and a client asks again, as here.
    let client = chamada::outbound::http_client().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let retry = loop {
        let retry = client
            .post(format!("{}/api/start_call", server.base))
            .header("idempotency-key", "disconnect-test-1")
            .json(&json!({"phone_number": "+351912345678"}))
            .send()
            .await
            .unwrap();
        if retry.status() != 409 || tokio::time::Instant::now() > deadline {
            break retry;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(retry.status(), 200);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let answer: Value = retry.json().await.unwrap();
    assert_eq!(answer["provider_call_id"], "conv_slow");
    server.stop().await;
    // `expect(1)` on the provider: exactly one call, checked when the fake is dropped.
}

/// `vercel env pull` writes `VERCEL="1"` into `.env.local`: the local server must still count
/// the socket's address, not a `X-Real-IP` any client can send, and say which source it uses.
#[tokio::test]
async fn the_local_server_counts_the_socket_address_even_with_vercel_in_env_local() {
    let server = Server::start_with_env_file(&[], Some("VERCEL=\"1\"\n")).await;
    assert!(
        server.first.contains("client_ip=socket"),
        "start-up line: {}",
        server.first
    );
    let http = chamada::outbound::http_client().unwrap();
    let mut statuses = Vec::new();
    for n in 0..4 {
        let r = http
            .post(format!("{}/api/start_call", server.base))
            .header("x-real-ip", format!("198.51.100.{n}"))
            .json(&json!({"phone_number": format!("+35191234500{n}")}))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 429],
        "a spoofed X-Real-IP bought calls"
    );
    server.stop().await;
}
