//! One conformance suite for every store: each function takes a port and states one rule of
//! docs/API.md §5 or §8. `main.rs` runs each against the memory store and the DynamoDB store.

use std::sync::Arc;

use chamada::store::{
    utc_day, Admission, Begin, IdempotencyStore, LimitCheck, LimitKind, RateLimiter,
    StoredResponse, Window, DAY_MS, IDEMPOTENCY_LEASE_MS, IDEMPOTENCY_TTL_MS,
};

/// 2026-11-28T12:00:00Z.
pub const NOON_MS: u64 = 1_795_867_200_000;
pub const WINDOW_SECS: u64 = 86_400;
const WINDOW_MS: u64 = WINDOW_SECS * 1000;

pub fn ip(addr: &str, max: u32) -> LimitCheck {
    LimitCheck {
        kind: LimitKind::Ip,
        key: format!("ip:{addr}"),
        max,
        window: Window::Rolling { ms: WINDOW_MS },
    }
}

pub fn number(e164: &str, max: u32) -> LimitCheck {
    LimitCheck {
        kind: LimitKind::Number,
        key: format!("number:{e164}"),
        max,
        window: Window::Rolling { ms: WINDOW_MS },
    }
}

pub fn global(now_ms: u64, max: u32) -> LimitCheck {
    LimitCheck {
        kind: LimitKind::Global,
        key: format!("global:{}", utc_day(now_ms)),
        max,
        window: Window::UtcDay,
    }
}

async fn admit(l: &Arc<dyn RateLimiter>, checks: &[LimitCheck], now: u64) -> Admission {
    l.admit(checks, now).await.expect("store answers")
}

fn admitted(a: &Admission) -> bool {
    matches!(a, Admission::Admitted(_))
}

/// `(kind, Retry-After)` of a refusal.
fn refused_by(a: &Admission) -> (LimitKind, u64) {
    match a {
        Admission::Refused { by } => {
            assert_eq!(by.remaining, 0);
            (by.kind, by.reset_secs)
        }
        Admission::Admitted(s) => panic!("expected a refusal, got {s:?}"),
    }
}

/// `(remaining, reset)` of a single-limit admission.
fn single(a: &Admission) -> (u32, u64) {
    match a {
        Admission::Admitted(s) if s.len() == 1 => (s[0].remaining, s[0].reset_secs),
        other => panic!("expected one admitted limit, got {other:?}"),
    }
}

/// A slot frees exactly one window after its admission, and `Retry-After` says so, rounded
/// up to the second; a window later everything is free again.
pub async fn rolling_window_frees_a_slot_exactly_one_window_after_its_admission(
    l: Arc<dyn RateLimiter>,
) {
    let c = [ip("203.0.113.10", 3)];
    let t0 = NOON_MS;
    assert_eq!(single(&admit(&l, &c, t0).await), (2, WINDOW_SECS));
    // `reset` counts down to the oldest slot's release.
    assert_eq!(
        single(&admit(&l, &c, t0 + 1_000).await),
        (1, WINDOW_SECS - 1)
    );
    assert_eq!(
        single(&admit(&l, &c, t0 + 2_500).await),
        (0, WINDOW_SECS - 2)
    );

    let a = admit(&l, &c, t0 + 3_000).await;
    assert_eq!(refused_by(&a), (LimitKind::Ip, WINDOW_SECS - 3));
    let a = admit(&l, &c, t0 + WINDOW_MS - 1).await;
    assert_eq!(
        refused_by(&a),
        (LimitKind::Ip, 1),
        "1 ms left rounds up to 1 s"
    );

    // The first slot frees exactly at t0 + window.
    let a = admit(&l, &c, t0 + WINDOW_MS).await;
    assert_eq!(
        single(&a),
        (0, 1),
        "slots left: none; next frees at t0 + 1 s + window"
    );
    let a = admit(&l, &c, t0 + WINDOW_MS + 1).await;
    assert_eq!(refused_by(&a), (LimitKind::Ip, 1));
    let a = admit(&l, &c, t0 + WINDOW_MS + 1_000).await;
    assert_eq!(single(&a), (0, 2), "next frees at t0 + 2.5 s + window");
    let a = admit(&l, &c, t0 + WINDOW_MS + 1_001).await;
    assert_eq!(refused_by(&a), (LimitKind::Ip, 2));

    // Long after, every old admission has left the window: a full allowance again.
    let later = t0 + 3 * WINDOW_MS;
    assert_eq!(single(&admit(&l, &c, later).await), (2, WINDOW_SECS));
    assert_eq!(single(&admit(&l, &c, later + 1).await), (1, WINDOW_SECS));
}

/// The per-number limit counts whoever asks; other numbers and other addresses are separate.
pub async fn per_number_limit_counts_every_caller(l: Arc<dyn RateLimiter>) {
    let n = "+351912345678";
    let t = NOON_MS;
    for (i, addr) in ["198.51.100.1", "198.51.100.2"].iter().enumerate() {
        let a = admit(&l, &[ip(addr, 3), number(n, 2)], t + i as u64 * 1_000).await;
        assert!(admitted(&a), "{a:?}");
    }
    let a = admit(&l, &[ip("198.51.100.3", 3), number(n, 2)], t + 5_000).await;
    assert_eq!(refused_by(&a), (LimitKind::Number, WINDOW_SECS - 5));
    // An authenticated caller (no per-IP check) is limited per number too.
    let a = admit(&l, &[number(n, 2)], t + 6_000).await;
    assert_eq!(refused_by(&a), (LimitKind::Number, WINDOW_SECS - 6));
    let a = admit(
        &l,
        &[ip("198.51.100.3", 3), number("+351912345679", 2)],
        t + 7_000,
    )
    .await;
    assert!(admitted(&a), "{a:?}");
}

/// The global limit counts per UTC calendar day: refused until midnight UTC, with
/// `Retry-After` the seconds left in the day; the next day starts from zero.
pub async fn global_limit_counts_per_utc_day(l: Arc<dyn RateLimiter>) {
    let before_midnight = (NOON_MS / DAY_MS + 1) * DAY_MS - 2_000;
    let g = |now| global(now, 2);
    assert_eq!(
        single(&admit(&l, &[g(before_midnight)], before_midnight).await),
        (1, 2)
    );
    let now = before_midnight + 500;
    assert_eq!(single(&admit(&l, &[g(now)], now).await), (0, 2));
    let now = before_midnight + 1_000;
    assert_eq!(
        refused_by(&admit(&l, &[g(now)], now).await),
        (LimitKind::Global, 1)
    );
    let midnight = before_midnight + 2_000;
    assert_eq!(
        single(&admit(&l, &[g(midnight)], midnight).await),
        (1, WINDOW_SECS)
    );
    // With a number check too: the global limit refuses before the number's.
    let now = midnight + 1_000;
    let a = admit(&l, &[number("+351912345678", 3), g(now)], now).await;
    assert!(admitted(&a), "{a:?}");
    let a = admit(&l, &[number("+351912345670", 3), g(now)], now).await;
    assert_eq!(refused_by(&a), (LimitKind::Global, WINDOW_SECS - 1));
}

/// All or nothing: a request refused by one limit is counted under none of the others.
pub async fn a_refusal_consumes_nothing(l: Arc<dyn RateLimiter>) {
    let t = NOON_MS;
    let n = "+351912345678";
    let a = admit(&l, &[ip("192.0.2.1", 1), number(n, 1), global(t, 2)], t).await;
    assert!(admitted(&a), "{a:?}");
    // Refused by the number: neither 192.0.2.2's only slot nor a global slot is used.
    let a = admit(&l, &[ip("192.0.2.2", 1), number(n, 1), global(t, 2)], t + 1).await;
    assert_eq!(refused_by(&a).0, LimitKind::Number);
    let a = admit(
        &l,
        &[ip("192.0.2.2", 1), number("+351912345679", 1), global(t, 2)],
        t + 2,
    )
    .await;
    assert!(admitted(&a), "{a:?}");
    // Now the day is used up (2 of 2), which proves the refusal took no global slot.
    let a = admit(
        &l,
        &[ip("192.0.2.3", 1), number("+351912345670", 1), global(t, 2)],
        t + 3,
    )
    .await;
    assert_eq!(refused_by(&a).0, LimitKind::Global);
    // When several limits refuse, `by` is the one with the longest wait.
    let a = admit(
        &l,
        &[ip("192.0.2.1", 1), number(n, 1), global(t, 2)],
        t + 10_000,
    )
    .await;
    let end_of_day_secs = ((t / DAY_MS + 1) * DAY_MS - t - 10_000).div_ceil(1000);
    let ip_wait = WINDOW_SECS - 10;
    let expected = if end_of_day_secs > ip_wait {
        (LimitKind::Global, end_of_day_secs)
    } else {
        (LimitKind::Ip, ip_wait)
    };
    assert_eq!(refused_by(&a), expected);
}

/// Concurrent admissions are exact: of `n` at once, exactly `max` pass, whatever interleaving.
async fn race(l: &Arc<dyn RateLimiter>, requests: Vec<Vec<LimitCheck>>, now: u64) -> usize {
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|checks| {
            let l = l.clone();
            tokio::spawn(async move { l.admit(&checks, now).await })
        })
        .collect();
    let mut admitted_count = 0;
    for task in tasks {
        match task.await.unwrap().expect("store answers under load") {
            Admission::Admitted(_) => admitted_count += 1,
            Admission::Refused { by } => assert!(by.reset_secs >= 1),
        }
    }
    admitted_count
}

pub async fn two_hundred_concurrent_admissions_admit_exactly_the_limit(l: Arc<dyn RateLimiter>) {
    let t = NOON_MS;
    for round in 0..3u64 {
        let now = t + round;
        // One address, limit 3.
        let same_ip = (0..200)
            .map(|_| vec![ip(&format!("203.0.113.{round}"), 3)])
            .collect();
        assert_eq!(race(&l, same_ip, now).await, 3, "per IP, round {round}");
        // One number, 200 addresses.
        let n = format!("+35191234560{round}");
        let same_number = (0..200)
            .map(|i| vec![ip(&format!("10.{round}.0.{i}"), 3), number(&n, 3)])
            .collect();
        assert_eq!(
            race(&l, same_number, now).await,
            3,
            "per number, round {round}"
        );
    }
    // One day, 200 numbers.
    let same_day = (0..200)
        .map(|i| vec![number(&format!("+3519100{i:05}"), 3), global(t, 3)])
        .collect();
    assert_eq!(race(&l, same_day, t).await, 3, "global");

    // A mix where one limit refuses: the number is used up, so all 200 sharing one address
    // are refused and the address keeps its 3 slots.
    let full = "+351919999999";
    for i in 0..3 {
        let a = admit(&l, &[number(full, 3)], t + i).await;
        assert!(admitted(&a));
    }
    let refused_mix = (0..200)
        .map(|_| vec![ip("198.51.100.200", 3), number(full, 3)])
        .collect();
    assert_eq!(race(&l, refused_mix, t + 10).await, 0, "mix");
    let fresh = (0..200)
        .map(|i| {
            vec![
                ip("198.51.100.200", 3),
                number(&format!("+3519200{i:05}"), 3),
            ]
        })
        .collect();
    assert_eq!(race(&l, fresh, t + 20).await, 3, "the address lost nothing");
}

fn answer(body: &str) -> StoredResponse {
    StoredResponse {
        status: 200,
        headers: vec![("ratelimit-remaining".into(), "2".into())],
        body: body.into(),
    }
}

/// Same key and body replays, another body is a mismatch, an unfinished one is in progress;
/// records live 24 h, unfinished leases 10 min; release gives the key back.
pub async fn idempotency_replays_refuses_and_expires(s: Arc<dyn IdempotencyStore>) {
    let t = NOON_MS;
    let (key, a, b) = ("idem:ip:203.0.113.10:order-1", "fp-a", "fp-b");
    assert_eq!(s.begin(key, a, t).await.unwrap(), Begin::Started);
    assert_eq!(s.begin(key, a, t + 1).await.unwrap(), Begin::InProgress);
    assert_eq!(s.begin(key, b, t + 1).await.unwrap(), Begin::Mismatch);
    let stored = answer(r#"{"status":"initiated"}"#);
    s.complete(key, a, &stored, None, t + 2).await.unwrap();
    assert_eq!(
        s.begin(key, a, t + 3).await.unwrap(),
        Begin::Replay(stored.clone())
    );
    assert_eq!(s.begin(key, b, t + 3).await.unwrap(), Begin::Mismatch);
    // Release after completion changes nothing.
    s.release(key, a).await.unwrap();
    let last = t + 2 + IDEMPOTENCY_TTL_MS;
    assert_eq!(
        s.begin(key, a, last - 1).await.unwrap(),
        Begin::Replay(stored)
    );
    // A day after the answer, the key is free again (for any body).
    assert_eq!(s.begin(key, b, last).await.unwrap(), Begin::Started);
}

pub async fn an_abandoned_lease_expires_and_release_frees_the_key(s: Arc<dyn IdempotencyStore>) {
    let t = NOON_MS;
    let (key, a, b) = ("idem:key:test:order-2", "fp-a", "fp-b");
    assert_eq!(s.begin(key, a, t).await.unwrap(), Begin::Started);
    assert_eq!(
        s.begin(key, a, t + IDEMPOTENCY_LEASE_MS - 1).await.unwrap(),
        Begin::InProgress
    );
    // The first owner crashed: after the lease another request may take the key.
    assert_eq!(
        s.begin(key, b, t + IDEMPOTENCY_LEASE_MS).await.unwrap(),
        Begin::Started
    );
    // Releasing with the wrong body does nothing; with the owner's body frees the key.
    s.release(key, a).await.unwrap();
    assert_eq!(
        s.begin(key, b, t + IDEMPOTENCY_LEASE_MS + 1).await.unwrap(),
        Begin::InProgress
    );
    s.release(key, b).await.unwrap();
    assert_eq!(
        s.begin(key, a, t + IDEMPOTENCY_LEASE_MS + 2).await.unwrap(),
        Begin::Started
    );
}

/// A provider's definite refusal gives the slot back: under every limit, exactly the one
/// admission. Rolling limits find it by its time, so refunding it twice (or refunding an
/// admission that never was) gives nothing more; a day counter only counts, so the caller
/// refunds each admission once.
pub async fn a_refund_gives_back_exactly_one_admission(l: Arc<dyn RateLimiter>) {
    let t = NOON_MS;
    let checks = |n: &str| vec![ip("192.0.2.9", 2), number(n, 2), global(t, 2)];
    assert!(admitted(&admit(&l, &checks("+351912345671"), t).await));
    assert!(admitted(&admit(&l, &checks("+351912345672"), t + 1).await));
    let a = admit(&l, &checks("+351912345673"), t + 2).await;
    assert!(!admitted(&a), "{a:?}");

    l.refund(&checks("+351912345672"), t + 1)
        .await
        .expect("store answers");
    let rolling = |n: &str| vec![ip("192.0.2.9", 2), number(n, 2)];
    // A second refund of the same admission changes nothing.
    l.refund(&rolling("+351912345672"), t + 1)
        .await
        .expect("store answers");
    // Refunding an admission that never happened changes nothing either.
    l.refund(&rolling("+351912345671"), t + 5)
        .await
        .expect("store answers");

    // One slot back under each limit: one more admission fits, and only one.
    assert!(admitted(&admit(&l, &checks("+351912345674"), t + 3).await));
    let a = admit(&l, &[ip("192.0.2.9", 2)], t + 4).await;
    assert_eq!(refused_by(&a).0, LimitKind::Ip);
    let a = admit(&l, &[global(t, 2)], t + 4).await;
    assert_eq!(refused_by(&a).0, LimitKind::Global);
    // The number that was refunded is free again (its only admission was given back).
    let a = admit(&l, &[number("+351912345672", 1)], t + 4).await;
    assert!(admitted(&a), "{a:?}");
}
