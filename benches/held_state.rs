//! Tail latency of the memory store's limiter as its state grows (issue 17): every admission of
//! a 24 h window is held, as on a busy local server or a single warm instance. Each admission is
//! a new address and a new number (as a crowd of visitors would be), plus a daily cap above the
//! run, so the store holds `HELD` admissions of two keys each at the end. Every `admit` is timed
//! alone (keys built outside the timed code); the figures are its distribution, and the memory
//! the held state costs per admission (VmRSS before and after).
//!
//!     cargo bench --bench held_state               # 500 000 admissions
//!     HELD=100000 cargo bench --bench held_state
//!
//! Wall time on a shared machine: compare runs of the same command, and read the ratios.

use std::time::{Duration, Instant};

use chamada::store::memory::MemoryStore;
use chamada::store::{Admission, LimitCheck, LimitKind, RateLimiter, Window};

const DAY_MS: u64 = 86_400_000;
/// 2026-11-28T12:00:00Z.
const NOON_MS: u64 = 1_795_867_200_000;

fn main() {
    let held: usize = std::env::var("HELD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let store = MemoryStore::new();
    let window = Window::Rolling { ms: DAY_MS };
    let mut latencies: Vec<Duration> = Vec::with_capacity(held);
    let rss_before = rss_kib();
    let started = Instant::now();
    for i in 0..held {
        let checks = [
            LimitCheck {
                kind: LimitKind::Ip,
                key: format!(
                    "ip:10.{}.{}.{}",
                    (i >> 16) & 0xff,
                    (i >> 8) & 0xff,
                    i & 0xff
                ),
                max: 3,
                window,
            },
            LimitCheck {
                kind: LimitKind::Number,
                key: format!("number:+3519{i:08}"),
                max: 3,
                window,
            },
            LimitCheck {
                kind: LimitKind::Global,
                key: "global:20785".to_string(),
                max: 10_000_000,
                window: Window::UtcDay,
            },
        ];
        // One admission per millisecond: all of them within the window.
        let now = NOON_MS + i as u64;
        let t = Instant::now();
        let admitted = runtime.block_on(store.admit(&checks, now));
        latencies.push(t.elapsed());
        assert!(
            matches!(admitted, Ok(Admission::Admitted(_))),
            "admission {i} refused"
        );
    }
    let total = started.elapsed();
    let rss_after = rss_kib();
    println!("held admissions: {held} (2 keys each, 24 h window), total {total:.2?}");
    report("all admissions", &mut latencies.clone());
    let last = held / 5;
    report(
        &format!("last {last} (store at 80-100%)"),
        &mut latencies[held - last..].to_vec(),
    );
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        let bytes = after.saturating_sub(before) * 1024;
        println!(
            "RSS: {before} KiB -> {after} KiB, {:.0} bytes per held admission",
            bytes as f64 / held as f64
        );
    }
}

fn report(what: &str, latencies: &mut [Duration]) {
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    let mean = latencies.iter().sum::<Duration>() / latencies.len() as u32;
    println!(
        "{what}: mean {mean:.2?}, p50 {:.2?}, p99 {:.2?}, p99.9 {:.2?}, p99.99 {:.2?}, max {:.2?}",
        at(0.5),
        at(0.99),
        at(0.999),
        at(0.9999),
        latencies[latencies.len() - 1]
    );
}

/// The process's resident set (Linux), in KiB.
fn rss_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
