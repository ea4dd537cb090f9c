//! Property tests: the phone gate and the limiter hold for arbitrary inputs and timings.

use std::sync::Arc;

use chamada::phone::{normalize, PhonePolicy};
use chamada::store::memory::MemoryStore;
use chamada::store::{Admission, LimitCheck, LimitKind, RateLimiter, Window};
use proptest::prelude::*;

fn policy() -> &'static PhonePolicy {
    static POLICY: std::sync::OnceLock<PhonePolicy> = std::sync::OnceLock::new();
    POLICY.get_or_init(|| PhonePolicy::new(&["PT", "ES", "US"]).unwrap())
}

/// Digits with spaces and hyphens sprinkled in, behind a `+`.
fn separated_number() -> impl Strategy<Value = String> {
    (
        prop_oneof!["351", "34", "1", "44", "881", "9"],
        proptest::collection::vec(
            (0u8..10, prop_oneof![Just(""), Just(" "), Just("-")]),
            6..14,
        ),
    )
        .prop_map(|(cc, parts)| {
            let mut s = format!("+{cc}");
            for (d, sep) in parts {
                s.push_str(sep);
                s.push(char::from(b'0' + d));
            }
            s
        })
}

fn check_round_trip(input: &str) {
    let gate = normalize(input);
    match policy().check(input) {
        Ok(allowed) => {
            let e164 = allowed.e164.as_str();
            // Accepted means: the gate accepted it, it is canonical E.164, and checking the
            // canonical form gives the same answer.
            assert_eq!(gate.as_ref().map(|n| n.as_str()), Ok(e164));
            assert!(e164.starts_with('+'));
            assert!(e164[1..].bytes().all(|b| b.is_ascii_digit()));
            assert!((9..=16).contains(&e164.len()));
            assert_eq!(policy().check(e164), Ok(allowed.clone()));
            assert!(["PT", "ES", "US"].contains(&allowed.region.as_str()));
        }
        Err(_) => {
            if let Ok(n) = gate {
                // Refused after the gate: the canonical form is refused too.
                assert!(policy().check(n.as_str()).is_err());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_phone_gate_never_panics_on_arbitrary_strings(input in any::<String>()) {
        check_round_trip(&input);
    }

    #[test]
    fn the_phone_gate_never_panics_on_number_like_bytes(input in "[+0-9 \\-;=a-z:.()]{0,40}") {
        check_round_trip(&input);
    }

    #[test]
    fn accepted_numbers_round_trip_to_the_same_e164(input in separated_number()) {
        check_round_trip(&input);
    }
}

/// One burst of concurrent requests: how long after the previous burst, and how many. Times
/// are multiples of 50 ms, like the window, so bursts often land exactly on a window's edge.
fn bursts() -> impl Strategy<Value = Vec<(u64, usize)>> {
    proptest::collection::vec((0u64..30, 1usize..6), 1..40)
        .prop_map(|v| v.into_iter().map(|(k, n)| (k * 50, n)).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// For arbitrary timings and concurrent bursts against one key, the limiter never admits
    /// more than `max` in any window-length span, and refuses only when `max` admissions lie
    /// inside the window (it is exact, not merely safe).
    #[test]
    fn the_limiter_never_admits_more_than_max_in_any_window(
        bursts in bursts(),
        max in 1u32..5,
        window_ms in (2u64..30).prop_map(|w| w * 50),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let store: Arc<dyn RateLimiter> = Arc::new(MemoryStore::new());
        let check = LimitCheck {
            kind: LimitKind::Ip,
            key: "ip:192.0.2.1".into(),
            max,
            window: Window::Rolling { ms: window_ms },
        };
        let mut now = 1_000_000u64;
        let mut admitted: Vec<u64> = Vec::new();
        let mut refused: Vec<u64> = Vec::new();
        for (gap, size) in bursts {
            now += gap;
            let results = runtime.block_on(async {
                let tasks: Vec<_> = (0..size)
                    .map(|_| {
                        let store = store.clone();
                        let check = check.clone();
                        tokio::spawn(async move { store.admit(&[check], now).await.unwrap() })
                    })
                    .collect();
                let mut out = Vec::new();
                for task in tasks {
                    out.push(task.await.unwrap());
                }
                out
            });
            for result in results {
                match result {
                    Admission::Admitted(_) => admitted.push(now),
                    Admission::Refused { by } => {
                        prop_assert!(by.reset_secs >= 1);
                        refused.push(now);
                    }
                }
            }
        }
        for &t in &admitted {
            let in_span = admitted.iter().filter(|&&a| a >= t && a < t + window_ms).count();
            prop_assert!(in_span <= max as usize, "{in_span} admitted in [{t}, {})", t + window_ms);
        }
        for &t in &refused {
            let in_window = admitted.iter().filter(|&&a| a + window_ms > t && a <= t).count();
            prop_assert_eq!(in_window, max as usize, "refused at {} with a free slot", t);
        }
    }
}
