//! docs/API.md §5: exact rolling windows per IP and per number, a global UTC-day cap, all-or-nothing.

use axum::body::Body;
use http::Request;
use serde_json::json;

use crate::support::*;

fn call_from(peer: &str, number: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::post("/api/start_call").header("content-type", "application/json");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    from_peer(
        builder
            .body(Body::from(json!({ "phone_number": number }).to_string()))
            .unwrap(),
        peer,
    )
}

/// Three distinct valid Portuguese mobile numbers per index.
fn number(i: usize) -> String {
    format!("+3519123450{i:02}")
}

#[tokio::test]
async fn the_fourth_call_from_one_ip_is_refused_with_exact_retry_after() {
    let t = TestApp::new(&[]).await;
    for i in 0..3 {
        let r = t.send(call_from(PEER, &number(i), &[])).await;
        assert_eq!(r.status, 200, "call {i}: {:?}", r.body);
        assert_eq!(r.header("ratelimit-limit"), Some("3"));
        assert_eq!(r.header("ratelimit-remaining"), Some(&*(2 - i).to_string()));
        t.clock.advance_secs(10);
    }
    let r = t.send(call_from(PEER, &number(3), &[])).await;
    r.assert_error(429, "rate_limited");
    // The first call was 30 s ago: its slot frees in 86 400 - 30 s.
    assert_eq!(r.header("retry-after"), Some("86370"));
    assert_eq!(r.header("ratelimit-remaining"), Some("0"));
    assert_eq!(r.header("ratelimit-reset"), Some("86370"));
    assert_eq!(t.calls(), 3);
}

#[tokio::test]
async fn a_slot_frees_exactly_one_window_after_its_admission() {
    let t = TestApp::new(&[("MAX_REQUESTS_PER_IP", "1"), ("RATE_LIMIT_WINDOW", "600")]).await;
    assert_eq!(t.send(call_from(PEER, &number(0), &[])).await.status, 200);
    t.clock.advance_ms(599_001);
    let r = t.send(call_from(PEER, &number(1), &[])).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("1"));
    t.clock.advance_ms(998);
    assert_eq!(t.send(call_from(PEER, &number(1), &[])).await.status, 429);
    t.clock.advance_ms(1);
    let r = t.send(call_from(PEER, &number(1), &[])).await;
    assert_eq!(r.status, 200, "the slot did not free at exactly 600 s");
}

#[tokio::test]
async fn rotating_forwarding_headers_buys_no_extra_calls() {
    let t = TestApp::new(&[]).await;
    for i in 0..6 {
        let fake = format!("198.51.100.{i}");
        let r = t
            .send(call_from(
                PEER,
                &number(i),
                &[
                    ("x-forwarded-for", &fake),
                    ("x-real-ip", &fake),
                    ("x-end-user-ip", &fake),
                    ("forwarded", &format!("for={fake}")),
                ],
            ))
            .await;
        assert_eq!(r.status, if i < 3 { 200 } else { 429 }, "request {i}");
    }
    assert_eq!(t.calls(), 3);
}

#[tokio::test]
async fn each_number_gets_at_most_three_calls_whoever_asks() {
    let t = TestApp::new(&[]).await;
    for i in 0..3 {
        let peer = format!("192.0.2.{}:1000", i + 1);
        assert_eq!(t.send(call_from(&peer, NUMBER, &[])).await.status, 200);
    }
    let r = t.send(call_from("192.0.2.99:1000", NUMBER, &[])).await;
    r.assert_error(429, "rate_limited");
    assert_eq!(t.calls(), 3);
}

#[tokio::test]
async fn a_refusal_by_one_limit_consumes_none_of_the_others() {
    let t = TestApp::new(&[]).await;
    for i in 0..3 {
        let peer = format!("192.0.2.{}:1000", i + 1);
        assert_eq!(t.send(call_from(&peer, NUMBER, &[])).await.status, 200);
    }
    // A new visitor asking for the exhausted number is refused...
    for _ in 0..5 {
        assert_eq!(t.send(call_from(PEER, NUMBER, &[])).await.status, 429);
    }
    // ...and still has all three of their own calls.
    for i in 0..3 {
        let r = t.send(call_from(PEER, &number(i), &[])).await;
        assert_eq!(r.status, 200, "call {i} after refusals: {:?}", r.body);
    }
}

#[tokio::test]
async fn authenticated_servers_are_limited_per_end_user_ip_only_when_they_pass_one() {
    let t = TestApp::production(&[]).await;
    let auth = bearer(KEY);
    // No X-End-User-IP: no per-IP limit (per-number still applies).
    for i in 0..5 {
        let r = t
            .send(call_from(PEER, &number(i), &[("authorization", &auth)]))
            .await;
        assert_eq!(r.status, 200, "server call {i}");
    }
    for i in 5..8 {
        let r = t
            .send(call_from(
                PEER,
                &number(i),
                &[("authorization", &auth), ("x-end-user-ip", "198.51.100.7")],
            ))
            .await;
        assert_eq!(r.status, 200, "end-user call {i}");
    }
    let r = t
        .send(call_from(
            PEER,
            &number(9),
            &[("authorization", &auth), ("x-end-user-ip", "198.51.100.7")],
        ))
        .await;
    r.assert_error(429, "rate_limited");
    let r = t
        .send(call_from(
            PEER,
            &number(9),
            &[("authorization", &auth), ("x-end-user-ip", "not-an-ip")],
        ))
        .await;
    r.assert_error(422, "invalid_request");
}

#[tokio::test]
async fn the_global_cap_counts_per_utc_day_and_retries_after_midnight() {
    let t = TestApp::new(&[("MAX_CALLS_PER_DAY", "2")]).await;
    for i in 0..2 {
        let peer = format!("192.0.2.{}:1000", i + 1);
        assert_eq!(t.send(call_from(&peer, &number(i), &[])).await.status, 200);
    }
    let r = t.send(call_from("192.0.2.50:1000", &number(5), &[])).await;
    r.assert_error(429, "rate_limited");
    // The clock stands at noon UTC: twelve hours to midnight.
    assert_eq!(r.header("retry-after"), Some("43200"));
    t.clock.advance_secs(43_200);
    let r = t.send(call_from("192.0.2.50:1000", &number(5), &[])).await;
    assert_eq!(r.status, 200, "a new UTC day did not reset the cap");
}

#[tokio::test]
async fn ipv6_clients_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
    let t = TestApp::new(&[("MAX_REQUESTS_PER_IP", "2")]).await;
    assert_eq!(
        t.send(call_from("[2001:db8:1:2::1]:1", &number(0), &[]))
            .await
            .status,
        200
    );
    assert_eq!(
        t.send(call_from("[2001:db8:1:2:ffff::9]:1", &number(1), &[]))
            .await
            .status,
        200
    );
    assert_eq!(
        t.send(call_from("[2001:db8:1:2:abcd::5]:1", &number(2), &[]))
            .await
            .status,
        429
    );
    assert_eq!(
        t.send(call_from("[2001:db8:1:3::1]:1", &number(2), &[]))
            .await
            .status,
        200
    );

    assert_eq!(
        t.send(call_from("192.0.2.7:1", &number(3), &[]))
            .await
            .status,
        200
    );
    assert_eq!(
        t.send(call_from("[::ffff:192.0.2.7]:1", &number(4), &[]))
            .await
            .status,
        200
    );
    assert_eq!(
        t.send(call_from("192.0.2.7:1", &number(5), &[]))
            .await
            .status,
        429
    );
}

#[tokio::test]
async fn requests_refused_before_dispatch_are_not_counted() {
    let t = TestApp::new(&[]).await;
    for body in [
        json!({"phone_number": "+351760123456"}),
        json!({"phone_number": "12345"}),
        json!({"phone_number": NUMBER, "name": ""}),
    ] {
        for _ in 0..3 {
            assert_eq!(t.start_call(body.clone(), &[]).await.status, 422);
        }
    }
    for i in 0..3 {
        assert_eq!(t.send(call_from(PEER, &number(i), &[])).await.status, 200);
    }
}

#[tokio::test]
async fn headers_describe_the_most_restrictive_limit() {
    let t = TestApp::new(&[("MAX_REQUESTS_PER_IP", "3"), ("MAX_CALLS_PER_NUMBER", "10")]).await;
    let r = t.send(call_from(PEER, NUMBER, &[])).await;
    assert_eq!(r.header("ratelimit-limit"), Some("3"));
    assert_eq!(r.header("ratelimit-remaining"), Some("2"));

    let t = TestApp::new(&[("MAX_REQUESTS_PER_IP", "10"), ("MAX_CALLS_PER_NUMBER", "4")]).await;
    let r = t.send(call_from(PEER, NUMBER, &[])).await;
    assert_eq!(r.header("ratelimit-limit"), Some("4"));
    assert_eq!(r.header("ratelimit-remaining"), Some("3"));
}

#[tokio::test]
async fn concurrent_requests_from_one_ip_admit_exactly_the_limit() {
    let t = TestApp::new(&[("MAX_CALLS_PER_NUMBER", "1000")]).await;
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let router = t.router.clone();
            tokio::spawn(async move {
                use tower::ServiceExt;
                let request = call_from(PEER, &format!("+3519123450{:02}", i % 100), &[]);
                router.oneshot(request).await.unwrap().status().as_u16()
            })
        })
        .collect();
    let mut admitted = 0;
    for h in handles {
        if h.await.unwrap() == 200 {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 3);
    assert_eq!(t.calls(), 3);
}

/// A provider's definite refusal (`502`: nothing was placed) gives the visitor's slot back, so
/// an outage does not burn everyone's quota; a timeout (`504`: the call may have gone out)
/// keeps it.
#[tokio::test]
async fn a_definite_provider_refusal_gives_the_slot_back_and_a_timeout_does_not() {
    use chamada::dispatch::{DispatchError, PlacedCall};

    let t = TestApp::new(&[]).await;
    t.recorder.answer_with(Err(DispatchError::Provider {
        reason: "ElevenLabs failed (500)".into(),
    }));
    for i in 0..5 {
        let r = t.send(call_from(PEER, &number(i), &[])).await;
        r.assert_error(502, "provider_error");
        assert_eq!(r.header("ratelimit-remaining"), Some("3"), "call {i}");
    }
    t.recorder.answer_with(Err(DispatchError::Timeout));
    let r = t.send(call_from(PEER, &number(5), &[])).await;
    r.assert_error(504, "provider_timeout");
    assert_eq!(r.header("ratelimit-remaining"), Some("2"));
    t.recorder.answer_with(Ok(PlacedCall {
        provider_call_id: "conv_after_outage".into(),
    }));
    for i in 6..8 {
        let r = t.send(call_from(PEER, &number(i), &[])).await;
        assert_eq!(r.status, 200, "call {i}: {:?}", r.body);
    }
    // The timeout's slot and the two calls use all three.
    t.send(call_from(PEER, &number(8), &[]))
        .await
        .assert_error(429, "rate_limited");
    assert_eq!(t.calls(), 8);
}
