//! One conformance suite for every store: each function takes a port and states one rule of
//! docs/API.md §5, §8, §9 (the outbox) or §15 (call records). `main.rs` runs each against the
//! memory store and the DynamoDB store.

use std::sync::Arc;

use chamada::store::calls::retention_ms;
use chamada::store::outbox::OUTBOX_RETENTION_MS;
use chamada::store::{
    utc_day, Admission, Advance, Begin, CallRecord, CallRecords, CallStatus, Change, Envelope,
    IdempotencyStore, LimitCheck, LimitKind, Outbox, OutboxItem, OutboxState, RateLimiter, Settle,
    Step, StoredResponse, Window, DAY_MS, IDEMPOTENCY_LEASE_MS, IDEMPOTENCY_TTL_MS,
};

use crate::{CallStore, RecordStore};

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

// The outbox (docs/API.md §9).

/// A claim's lease in these rules.
pub const LEASE_MS: u64 = 60_000;

pub fn envelope(id: &str) -> Envelope {
    Envelope {
        id: id.into(),
        body: format!(r#"{{"id":"{id}","type":"call.initiated","data":{{"to":"+351912345678"}}}}"#),
    }
}

async fn enqueue(o: &Arc<dyn Outbox>, id: &str, now: u64) {
    o.enqueue(&envelope(id), now).await.expect("store answers");
}

async fn get(o: &Arc<dyn Outbox>, id: &str) -> OutboxItem {
    o.get(id)
        .await
        .expect("store answers")
        .unwrap_or_else(|| panic!("{id} is kept"))
}

async fn claim(o: &Arc<dyn Outbox>, id: &str, now: u64) -> Option<OutboxItem> {
    o.claim(id, now, LEASE_MS).await.expect("store answers")
}

/// The ids of `items`, in order.
fn ids(items: &[OutboxItem]) -> Vec<&str> {
    items.iter().map(|item| item.envelope.id.as_str()).collect()
}

async fn due_ids(o: &Arc<dyn Outbox>, now: u64, limit: usize) -> Vec<String> {
    let due = o.due(now, limit).await.expect("store answers");
    for item in &due {
        assert_eq!(item.state, OutboxState::Pending, "{item:?}");
        assert!(
            item.due_at_ms <= now && item.lease_until_ms <= now,
            "{item:?}"
        );
    }
    ids(&due).into_iter().map(String::from).collect()
}

/// An event is written once: enqueueing its id again (another body, later) changes nothing,
/// not its body, its times, nor a window in progress.
pub async fn enqueue_is_idempotent_by_id(o: Arc<dyn Outbox>) {
    let t = NOON_MS;
    assert_eq!(o.get("msg_1").await.unwrap(), None);
    enqueue(&o, "msg_1", t).await;
    let first = get(&o, "msg_1").await;
    assert_eq!(
        first,
        OutboxItem {
            envelope: envelope("msg_1"),
            state: OutboxState::Pending,
            attempts: 0,
            due_at_ms: t,
            lease_until_ms: 0,
            created_at_ms: t,
            last_error: None,
        }
    );
    let other = Envelope {
        id: "msg_1".into(),
        body: "another body".into(),
    };
    o.enqueue(&other, t + 5).await.unwrap();
    assert_eq!(get(&o, "msg_1").await, first);

    let claimed = claim(&o, "msg_1", t + 10).await.expect("due");
    o.enqueue(&other, t + 20).await.unwrap();
    assert_eq!(
        get(&o, "msg_1").await,
        claimed,
        "the window keeps its claim"
    );
    assert_eq!(due_ids(&o, t + 20, 10).await, Vec::<String>::new());

    // Past its retention the store forgets an event (TTL may lag; the id is free anyway).
    let forgotten = t + OUTBOX_RETENTION_MS;
    o.enqueue(&other, forgotten - 1).await.unwrap();
    assert_eq!(
        get(&o, "msg_1").await,
        claimed,
        "kept to the last millisecond"
    );
    o.enqueue(&other, forgotten).await.unwrap();
    let fresh = get(&o, "msg_1").await;
    assert_eq!(
        (fresh.envelope, fresh.attempts, fresh.created_at_ms),
        (other, 0, forgotten)
    );
}

/// `due` lists pending events whose time has come and that no window holds, earliest due
/// first, at most `limit` — however many leased events come before them.
pub async fn due_lists_only_pending_due_unleased_events_earliest_first_and_bounded(
    o: Arc<dyn Outbox>,
) {
    let t = NOON_MS;
    // Held by windows: due earliest of all.
    for (i, id) in ["msg_leased_1", "msg_leased_2", "msg_leased_3"]
        .iter()
        .enumerate()
    {
        enqueue(&o, id, t + i as u64).await;
        assert!(claim(&o, id, t + 50).await.is_some());
    }
    // Delivered and failed: not pending.
    enqueue(&o, "msg_delivered", t + 5).await;
    enqueue(&o, "msg_failed", t + 6).await;
    for (id, result) in [
        ("msg_delivered", Settle::Delivered),
        (
            "msg_failed",
            Settle::Failed {
                error: "status 410".into(),
            },
        ),
    ] {
        assert!(claim(&o, id, t + 50).await.is_some());
        assert!(o.settle(id, 1, &result, t + 51).await.unwrap());
    }
    // Pending, written out of order.
    enqueue(&o, "msg_c", t + 30).await;
    enqueue(&o, "msg_a", t + 10).await;
    enqueue(&o, "msg_b", t + 20).await;
    // Not due yet at t + 100.
    enqueue(&o, "msg_later", t + 101).await;

    let now = t + 100;
    assert_eq!(due_ids(&o, now, 10).await, ["msg_a", "msg_b", "msg_c"]);
    assert_eq!(due_ids(&o, now, 2).await, ["msg_a", "msg_b"], "bounded");
    assert_eq!(due_ids(&o, now, 1).await, ["msg_a"], "bounded");
    assert!(due_ids(&o, now, 0).await.is_empty());
    assert_eq!(
        due_ids(&o, t + 25, 10).await,
        ["msg_a", "msg_b"],
        "due by then"
    );
    assert_eq!(
        due_ids(&o, t + 101, 10).await,
        ["msg_a", "msg_b", "msg_c", "msg_later"]
    );
    // Once the windows' leases run out, their events are due again, in their place.
    assert_eq!(
        due_ids(&o, t + 50 + LEASE_MS, 4).await,
        ["msg_leased_1", "msg_leased_2", "msg_leased_3", "msg_a"]
    );
}

/// However many workers try at once, one window starts.
pub async fn of_twenty_concurrent_claims_of_one_due_event_exactly_one_wins(o: Arc<dyn Outbox>) {
    let t = NOON_MS;
    for round in 0..3u64 {
        let id = format!("msg_race_{round}");
        enqueue(&o, &id, t).await;
        let now = t + round;
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let o = o.clone();
                let id = id.clone();
                tokio::spawn(async move { o.claim(&id, now, LEASE_MS).await })
            })
            .collect();
        let mut won = Vec::new();
        for task in tasks {
            if let Some(item) = task.await.unwrap().expect("store answers under load") {
                won.push(item);
            }
        }
        assert_eq!(won.len(), 1, "round {round}: {won:?}");
        assert_eq!(won[0].attempts, 1);
        assert_eq!(won[0].lease_until_ms, now + LEASE_MS);
        assert_eq!(get(&o, &id).await.attempts, 1, "one window counted");
    }
}

/// A claim counts the window and holds the event for the lease: no other claim until it
/// expires, then the next window (attempt 2). Unknown events are never claimed.
pub async fn a_claim_holds_the_event_until_its_lease_expires(o: Arc<dyn Outbox>) {
    let t = NOON_MS;
    assert_eq!(claim(&o, "msg_unknown", t).await, None);
    assert_eq!(
        o.get("msg_unknown").await.unwrap(),
        None,
        "a claim creates nothing"
    );
    enqueue(&o, "msg_1", t).await;
    let first = claim(&o, "msg_1", t + 1).await.expect("due and unleased");
    assert_eq!(first.attempts, 1);
    assert_eq!(first.lease_until_ms, t + 1 + LEASE_MS);
    assert_eq!(first.state, OutboxState::Pending);
    assert_eq!(first.envelope, envelope("msg_1"));
    assert_eq!(get(&o, "msg_1").await, first);

    let expiry = t + 1 + LEASE_MS;
    assert_eq!(claim(&o, "msg_1", t + 2).await, None);
    assert_eq!(claim(&o, "msg_1", expiry - 1).await, None);
    assert!(due_ids(&o, expiry - 1, 10).await.is_empty());
    assert_eq!(due_ids(&o, expiry, 10).await, ["msg_1"]);
    let second = claim(&o, "msg_1", expiry).await.expect("the lease ran out");
    assert_eq!(second.attempts, 2);
    assert_eq!(second.lease_until_ms, expiry + LEASE_MS);
}

/// `settle` ends the window it names only while that window is the event's: after its lease
/// ran out and another began, or after the event left pending, it answers false and changes
/// nothing.
pub async fn settling_a_window_that_is_over_changes_nothing(o: Arc<dyn Outbox>) {
    let t = NOON_MS;
    assert!(!o
        .settle("msg_unknown", 1, &Settle::Delivered, t)
        .await
        .unwrap());
    assert_eq!(o.get("msg_unknown").await.unwrap(), None);

    enqueue(&o, "msg_1", t).await;
    assert_eq!(claim(&o, "msg_1", t).await.unwrap().attempts, 1);
    let second = claim(&o, "msg_1", t + LEASE_MS).await.unwrap();
    assert_eq!(second.attempts, 2);
    for stale in [
        Settle::Delivered,
        Settle::Failed {
            error: "status 500".into(),
        },
        Settle::RetryAt {
            due_at_ms: t + 1,
            error: "timeout".into(),
        },
    ] {
        assert!(!o
            .settle("msg_1", 1, &stale, t + LEASE_MS + 1)
            .await
            .unwrap());
        assert_eq!(get(&o, "msg_1").await, second, "{stale:?} changed nothing");
    }
    assert!(!o
        .settle("msg_1", 3, &Settle::Delivered, t + LEASE_MS + 1)
        .await
        .unwrap());
    assert_eq!(get(&o, "msg_1").await, second);

    assert!(o
        .settle("msg_1", 2, &Settle::Delivered, t + LEASE_MS + 2)
        .await
        .unwrap());
    let delivered = get(&o, "msg_1").await;
    assert_eq!(delivered.state, OutboxState::Delivered);
    assert_eq!(delivered.lease_until_ms, 0);
    assert_eq!(delivered.last_error, None);
    // Delivered is final: no window settles it again, none starts.
    let failed = Settle::Failed {
        error: "status 500".into(),
    };
    assert!(!o
        .settle("msg_1", 2, &failed, t + LEASE_MS + 3)
        .await
        .unwrap());
    assert_eq!(get(&o, "msg_1").await, delivered);
    assert_eq!(claim(&o, "msg_1", t + 10 * LEASE_MS).await, None);
    assert!(due_ids(&o, t + 10 * LEASE_MS, 10).await.is_empty());
}

/// A window that failed with time left schedules the next: due again exactly at `due_at_ms`,
/// not before, with its error kept and the window count going on.
pub async fn retry_at_makes_the_event_due_again_at_that_time(o: Arc<dyn Outbox>) {
    let t = NOON_MS;
    let retry_at = t + 5 * 60_000;
    enqueue(&o, "msg_1", t).await;
    claim(&o, "msg_1", t).await.unwrap();
    let retry = Settle::RetryAt {
        due_at_ms: retry_at,
        error: "status 503".into(),
    };
    assert!(o.settle("msg_1", 1, &retry, t + 2_000).await.unwrap());
    let item = get(&o, "msg_1").await;
    assert_eq!(item.state, OutboxState::Pending);
    assert_eq!(item.attempts, 1);
    assert_eq!(item.due_at_ms, retry_at);
    assert_eq!(item.lease_until_ms, 0, "the window let go");
    assert_eq!(item.last_error.as_deref(), Some("status 503"));
    assert_eq!(item.created_at_ms, t);

    assert!(due_ids(&o, retry_at - 1, 10).await.is_empty());
    assert_eq!(claim(&o, "msg_1", retry_at - 1).await, None);
    assert_eq!(due_ids(&o, retry_at, 10).await, ["msg_1"]);
    let next = claim(&o, "msg_1", retry_at).await.expect("due again");
    assert_eq!(next.attempts, 2);

    // A retry can also bring the next window earlier than a lease would have.
    let sooner = Settle::RetryAt {
        due_at_ms: retry_at + 1,
        error: "status 429".into(),
    };
    assert!(o.settle("msg_1", 2, &sooner, retry_at + 1).await.unwrap());
    assert_eq!(due_ids(&o, retry_at + 1, 10).await, ["msg_1"]);
    assert_eq!(
        get(&o, "msg_1").await.last_error.as_deref(),
        Some("status 429")
    );
}

/// Given-up events are listed newest first, bounded, with the reason; an operator puts one
/// back to pending, due now, windows counted from zero. A pending event is not redelivered.
pub async fn failed_events_are_listed_newest_first_and_redelivered_from_zero(o: Arc<dyn Outbox>) {
    let t = NOON_MS;
    for (i, id) in ["msg_old", "msg_mid", "msg_new"].iter().enumerate() {
        let at = t + i as u64 * 1_000;
        enqueue(&o, id, at).await;
        claim(&o, id, at).await.unwrap();
        let failed = Settle::Failed {
            error: format!("status 40{i}"),
        };
        assert!(o.settle(id, 1, &failed, at + 1).await.unwrap());
    }
    // Listed by when events were written, not when they failed: this one failed last.
    enqueue(&o, "msg_written_first", t - 1_000).await;
    claim(&o, "msg_written_first", t + 5_000).await.unwrap();
    let failed = Settle::Failed {
        error: "refused: status 410".into(),
    };
    assert!(o
        .settle("msg_written_first", 1, &failed, t + 5_001)
        .await
        .unwrap());
    enqueue(&o, "msg_delivered", t + 6_000).await;
    claim(&o, "msg_delivered", t + 6_000).await.unwrap();
    assert!(o
        .settle("msg_delivered", 1, &Settle::Delivered, t + 6_001)
        .await
        .unwrap());
    enqueue(&o, "msg_pending", t + 10_000).await;

    let failed = o.failed(10).await.unwrap();
    assert_eq!(
        ids(&failed),
        ["msg_new", "msg_mid", "msg_old", "msg_written_first"]
    );
    assert!(failed.iter().all(|item| item.state == OutboxState::Failed));
    assert_eq!(failed[0].last_error.as_deref(), Some("status 402"));
    assert_eq!(failed[0].attempts, 1);
    assert_eq!(failed[0].lease_until_ms, 0);
    assert_eq!(ids(&o.failed(2).await.unwrap()), ["msg_new", "msg_mid"]);
    assert!(o.failed(0).await.unwrap().is_empty());
    assert_eq!(due_ids(&o, t + 20_000, 10).await, ["msg_pending"]);

    let now = t + 60_000;
    assert!(!o.redeliver("msg_pending", now).await.unwrap());
    assert_eq!(get(&o, "msg_pending").await.due_at_ms, t + 10_000);
    assert!(!o.redeliver("msg_unknown", now).await.unwrap());
    assert_eq!(o.get("msg_unknown").await.unwrap(), None, "nothing created");

    assert!(o.redeliver("msg_mid", now).await.unwrap());
    let back = get(&o, "msg_mid").await;
    assert_eq!(back.state, OutboxState::Pending);
    assert_eq!(back.attempts, 0);
    assert_eq!(back.due_at_ms, now);
    assert_eq!(back.lease_until_ms, 0);
    assert_eq!(back.created_at_ms, t + 1_000);
    assert_eq!(
        ids(&o.failed(10).await.unwrap()),
        ["msg_new", "msg_old", "msg_written_first"]
    );
    assert_eq!(due_ids(&o, now, 10).await, ["msg_pending", "msg_mid"]);
    assert!(
        !o.redeliver("msg_mid", now + 1).await.unwrap(),
        "pending now"
    );
    assert_eq!(claim(&o, "msg_mid", now).await.unwrap().attempts, 1);

    // A delivered event can be sent again too.
    assert!(o.redeliver("msg_delivered", now).await.unwrap());
    let again = get(&o, "msg_delivered").await;
    assert_eq!((again.state, again.attempts), (OutboxState::Pending, 0));
    assert_eq!(due_ids(&o, now, 10).await, ["msg_pending", "msg_delivered"]);
}

/// `complete` with an event keeps both: the answer replays and the event is pending, due at
/// once, in the outbox.
pub async fn complete_with_an_event_keeps_the_answer_and_the_event_pending(s: Arc<dyn CallStore>) {
    let t = NOON_MS;
    let (key, a) = ("idem:key:test:order-3", "fp-a");
    assert_eq!(s.begin(key, a, t).await.unwrap(), Begin::Started);
    let stored = answer(r#"{"status":"initiated","call_id":"call_1"}"#);
    let event = envelope("msg_with_answer");
    s.complete(key, a, &stored, Some(&event), t + 2)
        .await
        .unwrap();
    assert_eq!(s.begin(key, a, t + 3).await.unwrap(), Begin::Replay(stored));
    let kept = s.get("msg_with_answer").await.unwrap().expect("the event");
    assert_eq!(
        kept,
        OutboxItem {
            envelope: event,
            state: OutboxState::Pending,
            attempts: 0,
            due_at_ms: t + 2,
            lease_until_ms: 0,
            created_at_ms: t + 2,
            last_error: None,
        }
    );
    let due = s.due(t + 2, 10).await.unwrap();
    assert_eq!(ids(&due), ["msg_with_answer"]);
}

/// When the key was taken over (this request's lease ran out and a request with another body
/// began), `complete` keeps the other request's record — but still records the event: the
/// call was placed, and its receiver must hear of it. An event already kept stays as it was
/// while the answer is still kept.
pub async fn complete_after_a_takeover_keeps_the_other_answer_and_still_records_the_event(
    s: Arc<dyn CallStore>,
) {
    let t = NOON_MS;
    let (key, a, b) = ("idem:key:test:order-4", "fp-a", "fp-b");
    assert_eq!(s.begin(key, a, t).await.unwrap(), Begin::Started);
    let later = t + IDEMPOTENCY_LEASE_MS;
    assert_eq!(s.begin(key, b, later).await.unwrap(), Begin::Started);

    let event_a = envelope("msg_of_a");
    s.complete(key, a, &answer("a"), Some(&event_a), later + 1)
        .await
        .unwrap();
    assert_eq!(s.begin(key, b, later + 2).await.unwrap(), Begin::InProgress);
    assert_eq!(s.begin(key, a, later + 2).await.unwrap(), Begin::Mismatch);
    let kept = s.get("msg_of_a").await.unwrap().expect("the event is kept");
    assert_eq!(kept.envelope, event_a);
    assert_eq!(kept.state, OutboxState::Pending);
    assert_eq!(kept.due_at_ms, later + 1);

    // `b` completes with an event of the same id (a retried completion): the answer is
    // kept, the event already there is left as it is.
    let same_id = Envelope {
        id: "msg_of_a".into(),
        body: "another body".into(),
    };
    s.complete(key, b, &answer("b"), Some(&same_id), later + 3)
        .await
        .unwrap();
    assert_eq!(
        s.begin(key, b, later + 4).await.unwrap(),
        Begin::Replay(answer("b"))
    );
    assert_eq!(s.get("msg_of_a").await.unwrap(), Some(kept));
    assert_eq!(ids(&s.due(later + 4, 10).await.unwrap()), ["msg_of_a"]);
}

/// A new call's record, as `start_call` keeps it: initiated at `at`, kept 30 days.
pub fn call_record(call_id: &str, provider_call_id: Option<&str>, at: u64) -> CallRecord {
    CallRecord {
        call_id: call_id.into(),
        provider: "elevenlabs".into(),
        provider_call_id: provider_call_id.map(Into::into),
        to_masked: "+351******678".into(),
        source: "web".into(),
        status: CallStatus::Initiated,
        created_at_ms: at,
        updated_at_ms: at,
        history: vec![Step {
            status: CallStatus::Initiated,
            at_ms: at,
        }],
        duration_secs: None,
        end_reason: None,
        summary: None,
        successful: None,
        token_hash: "5e".repeat(32),
        expires_at_ms: at + retention_ms(30),
    }
}

async fn record(s: &Arc<dyn RecordStore>, call_id: &str, now: u64) -> Option<CallRecord> {
    CallRecords::get(s.as_ref(), call_id, now)
        .await
        .expect("store answers")
}

async fn event(s: &Arc<dyn RecordStore>, id: &str) -> Option<OutboxItem> {
    Outbox::get(s.as_ref(), id).await.expect("store answers")
}

async fn advance(
    s: &Arc<dyn RecordStore>,
    call_id: &str,
    change: &Change,
    event_id: Option<&str>,
) -> Advance {
    let envelope = event_id.map(envelope);
    s.advance(call_id, change, envelope.as_ref())
        .await
        .expect("store answers")
}

/// The record as `advance` applied it.
fn applied(advance: Advance) -> CallRecord {
    match advance {
        Advance::Applied(record) => *record,
        other => panic!("expected the change applied, got {other:?}"),
    }
}

/// A record reads back as it was written — every field, absent ones absent — until it
/// expires; then (swept or not) it is none. Unknown ids are none.
pub async fn a_created_record_reads_back_until_it_expires(s: Arc<dyn CallRecords>) {
    let t = NOON_MS;
    let placed = call_record("3f2b8c1e-0000-4000-8000-000000000001", Some("conv_1"), t);
    s.create(placed.clone()).await.unwrap();
    // A call the provider refused: no provider id, no status token, an end reason.
    let refused = CallRecord {
        status: CallStatus::Failed,
        history: vec![Step {
            status: CallStatus::Failed,
            at_ms: t + 1,
        }],
        end_reason: Some("provider_error".into()),
        token_hash: String::new(),
        source: "api".into(),
        ..call_record("3f2b8c1e-0000-4000-8000-000000000002", None, t + 1)
    };
    s.create(refused.clone()).await.unwrap();

    assert_eq!(
        s.get(&placed.call_id, t).await.unwrap(),
        Some(placed.clone())
    );
    assert_eq!(
        s.get(&refused.call_id, t + 1).await.unwrap(),
        Some(refused.clone())
    );
    let last = placed.expires_at_ms - 1;
    assert_eq!(
        s.get(&placed.call_id, last).await.unwrap(),
        Some(placed.clone())
    );
    assert_eq!(
        s.get(&placed.call_id, last + 1).await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(
        s.get("3f2b8c1e-0000-4000-8000-00000000dead", t)
            .await
            .unwrap(),
        None
    );
}

/// The provider's id leads back to its call while the record lives, and only then.
pub async fn a_record_is_found_by_its_provider_call_id_while_it_lives(s: Arc<dyn CallRecords>) {
    let t = NOON_MS;
    let a = call_record("3f2b8c1e-0000-4000-8000-00000000000a", Some("conv_a"), t);
    let b = call_record("3f2b8c1e-0000-4000-8000-00000000000b", None, t);
    s.create(a.clone()).await.unwrap();
    s.create(b.clone()).await.unwrap();
    assert_eq!(s.find("conv_a", t).await.unwrap(), Some(a.call_id.clone()));
    assert_eq!(
        s.find("conv_a", a.expires_at_ms - 1).await.unwrap(),
        Some(a.call_id.clone())
    );
    assert_eq!(
        s.find("conv_a", a.expires_at_ms).await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(s.find("conv_unknown", t).await.unwrap(), None);
    assert_eq!(
        s.find(&b.call_id, t).await.unwrap(),
        None,
        "a call id is no provider id"
    );
}

/// A record is written once: a second `create` of the same call (a retry) changes nothing,
/// not even a record that has moved on since. Once expired, the id is free again.
pub async fn creating_a_record_twice_keeps_the_first(s: Arc<dyn CallRecords>) {
    let t = NOON_MS;
    let first = call_record("3f2b8c1e-0000-4000-8000-0000000000f1", Some("conv_f"), t);
    s.create(first.clone()).await.unwrap();
    let second = CallRecord {
        provider: "livekit".into(),
        token_hash: "77".repeat(32),
        created_at_ms: t + 5,
        updated_at_ms: t + 5,
        ..first.clone()
    };
    s.create(second.clone()).await.unwrap();
    assert_eq!(
        s.get(&first.call_id, t + 6).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        s.find("conv_f", t + 6).await.unwrap(),
        Some(first.call_id.clone())
    );

    let ringing = applied(
        s.advance(
            &first.call_id,
            &Change::to(CallStatus::Ringing, t + 7),
            None,
        )
        .await
        .unwrap(),
    );
    s.create(second.clone()).await.unwrap();
    assert_eq!(s.get(&first.call_id, t + 8).await.unwrap(), Some(ringing));

    let reborn = CallRecord {
        created_at_ms: first.expires_at_ms,
        updated_at_ms: first.expires_at_ms,
        expires_at_ms: first.expires_at_ms + DAY_MS,
        ..second.clone()
    };
    s.create(reborn.clone()).await.unwrap();
    assert_eq!(
        s.get(&first.call_id, first.expires_at_ms).await.unwrap(),
        Some(reborn)
    );
}

/// A change that ranks higher moves the call and writes its event, pending and due at the
/// change's time, with it; what the change does not say, the record keeps. A change at or
/// below the current rank is `Unchanged` and writes nothing, event included.
pub async fn advance_moves_forward_with_its_event_and_never_back(s: Arc<dyn RecordStore>) {
    let t = NOON_MS;
    let id = "3f2b8c1e-0000-4000-8000-0000000000a1";
    let created = CallRecord {
        end_reason: Some("provider_timeout".into()),
        ..call_record(id, Some("conv_adv"), t)
    };
    s.create(created.clone()).await.unwrap();

    let ringing = applied(
        advance(
            &s,
            id,
            &Change::to(CallStatus::Ringing, t + 10),
            Some("msg_ringing"),
        )
        .await,
    );
    let expected = CallRecord {
        status: CallStatus::Ringing,
        updated_at_ms: t + 10,
        history: vec![
            Step {
                status: CallStatus::Initiated,
                at_ms: t,
            },
            Step {
                status: CallStatus::Ringing,
                at_ms: t + 10,
            },
        ],
        ..created.clone()
    };
    assert_eq!(ringing, expected);
    assert_eq!(record(&s, id, t + 10).await, Some(expected.clone()));
    let kept = event(&s, "msg_ringing")
        .await
        .expect("the event is written with the change");
    assert_eq!(
        kept,
        OutboxItem {
            envelope: envelope("msg_ringing"),
            state: OutboxState::Pending,
            attempts: 0,
            due_at_ms: t + 10,
            lease_until_ms: 0,
            created_at_ms: t + 10,
            last_error: None,
        }
    );

    // Late, replayed or reordered: the same rank, or lower.
    for (late, event_id) in [
        (CallStatus::Ringing, "msg_ringing_again"),
        (CallStatus::Initiated, "msg_initiated"),
    ] {
        assert_eq!(
            advance(&s, id, &Change::to(late, t + 20), Some(event_id)).await,
            Advance::Unchanged,
            "{late:?}"
        );
        assert_eq!(event(&s, event_id).await, None, "no event for {late:?}");
    }
    assert_eq!(record(&s, id, t + 20).await, Some(expected.clone()));

    // Forward without an event (no receiver configured): the record alone.
    let answered =
        applied(advance(&s, id, &Change::to(CallStatus::InProgress, t + 30), None).await);
    assert_eq!(answered.status, CallStatus::InProgress);

    let done = Change {
        duration_secs: Some(42),
        end_reason: Some("client disconnected".into()),
        summary: Some("Booked a table for two.".into()),
        successful: Some("success".into()),
        ..Change::to(CallStatus::Completed, t + 40)
    };
    let completed = applied(advance(&s, id, &done, Some("msg_completed")).await);
    let expected = CallRecord {
        status: CallStatus::Completed,
        updated_at_ms: t + 40,
        history: vec![
            Step {
                status: CallStatus::Initiated,
                at_ms: t,
            },
            Step {
                status: CallStatus::Ringing,
                at_ms: t + 10,
            },
            Step {
                status: CallStatus::InProgress,
                at_ms: t + 30,
            },
            Step {
                status: CallStatus::Completed,
                at_ms: t + 40,
            },
        ],
        duration_secs: Some(42),
        end_reason: Some("client disconnected".into()),
        summary: Some("Booked a table for two.".into()),
        successful: Some("success".into()),
        ..created.clone()
    };
    assert_eq!(completed, expected);
    assert_eq!(record(&s, id, t + 41).await, Some(expected));
    let due = s.due(t + 41, 10).await.unwrap();
    assert_eq!(ids(&due), ["msg_ringing", "msg_completed"]);
}

/// Once final, a call stays as it is: no later change, final or not, moves it or writes an
/// event.
pub async fn a_final_status_never_changes(s: Arc<dyn RecordStore>) {
    let t = NOON_MS;
    let id = "3f2b8c1e-0000-4000-8000-0000000000b1";
    s.create(call_record(id, None, t)).await.unwrap();
    let busy = applied(
        advance(
            &s,
            id,
            &Change::to(CallStatus::Busy, t + 1),
            Some("msg_busy"),
        )
        .await,
    );
    assert_eq!(busy.status, CallStatus::Busy);
    let late = [
        CallStatus::Completed,
        CallStatus::Failed,
        CallStatus::NoAnswer,
        CallStatus::Canceled,
        CallStatus::Busy,
        CallStatus::InProgress,
        CallStatus::Ringing,
        CallStatus::Initiated,
    ];
    for (i, status) in late.into_iter().enumerate() {
        let event_id = format!("msg_late_{i}");
        let change = Change {
            duration_secs: Some(9),
            end_reason: Some("late".into()),
            ..Change::to(status, t + 2 + i as u64)
        };
        assert_eq!(
            advance(&s, id, &change, Some(&event_id)).await,
            Advance::Unchanged,
            "{status:?}"
        );
        assert_eq!(event(&s, &event_id).await, None, "no event for {status:?}");
    }
    assert_eq!(record(&s, id, t + 20).await, Some(busy));
    assert_eq!(ids(&s.due(t + 20, 10).await.unwrap()), ["msg_busy"]);
}

/// A change for a call never created, or whose record expired (swept or not), is `Unknown`
/// and writes nothing: no record, no event.
pub async fn advancing_an_unknown_or_expired_call_is_unknown_and_writes_nothing(
    s: Arc<dyn RecordStore>,
) {
    let t = NOON_MS;
    let unknown = "3f2b8c1e-0000-4000-8000-0000000000c0";
    assert_eq!(
        advance(
            &s,
            unknown,
            &Change::to(CallStatus::Completed, t),
            Some("msg_unknown")
        )
        .await,
        Advance::Unknown
    );
    assert_eq!(event(&s, "msg_unknown").await, None);
    assert_eq!(record(&s, unknown, t).await, None, "no record made up");

    let id = "3f2b8c1e-0000-4000-8000-0000000000c1";
    let created = call_record(id, None, t);
    s.create(created.clone()).await.unwrap();
    let end = created.expires_at_ms;
    assert_eq!(
        advance(
            &s,
            id,
            &Change::to(CallStatus::Completed, end),
            Some("msg_expired")
        )
        .await,
        Advance::Unknown
    );
    assert_eq!(event(&s, "msg_expired").await, None);
    // Just before the end it is still known.
    assert_eq!(
        advance(&s, id, &Change::to(CallStatus::Ringing, end - 1), None).await,
        Advance::Applied(Box::new(
            created.with(&Change::to(CallStatus::Ringing, end - 1))
        ))
    );
}

/// However many final events race (a provider's retries, two providers' reports), one
/// applies and one event is written: the others see the final status and change nothing.
pub async fn of_twenty_concurrent_final_advances_of_one_call_exactly_one_applies(
    s: Arc<dyn RecordStore>,
) {
    let t = NOON_MS;
    let finals = [
        CallStatus::Completed,
        CallStatus::Failed,
        CallStatus::NoAnswer,
        CallStatus::Busy,
        CallStatus::Canceled,
    ];
    for round in 0..3u64 {
        let id = format!("3f2b8c1e-0000-4000-8000-00000000d00{round}");
        s.create(call_record(&id, None, t)).await.unwrap();
        if round == 1 {
            // From a later status too.
            advance(&s, &id, &Change::to(CallStatus::InProgress, t + 1), None).await;
        }
        let tasks: Vec<_> = (0..20usize)
            .map(|i| {
                let s = s.clone();
                let id = id.clone();
                let change = Change::to(finals[i % finals.len()], t + 10 + round);
                let envelope = envelope(&format!("msg_race_{round}_{i}"));
                tokio::spawn(async move { s.advance(&id, &change, Some(&envelope)).await })
            })
            .collect();
        let mut applied = Vec::new();
        for task in tasks {
            match task.await.unwrap().expect("store answers under contention") {
                Advance::Applied(record) => applied.push(*record),
                Advance::Unchanged => {}
                Advance::Unknown => panic!("round {round}: the call is known"),
            }
        }
        assert_eq!(applied.len(), 1, "round {round}: {applied:?}");
        let mut written = Vec::new();
        for i in 0..20 {
            let event_id = format!("msg_race_{round}_{i}");
            if event(&s, &event_id).await.is_some() {
                written.push(i);
            }
        }
        assert_eq!(written.len(), 1, "round {round}: events {written:?}");
        assert_eq!(
            applied[0].status,
            finals[written[0] % finals.len()],
            "the event is the applied change's"
        );
        assert_eq!(record(&s, &id, t + 20).await.as_ref(), Some(&applied[0]));
        let steps = applied[0].history.len();
        assert_eq!(steps, if round == 1 { 3 } else { 2 }, "one final step");
    }
}
