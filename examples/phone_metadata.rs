//! What the phone metadata choice buys at a cold start (docs/PERFORMANCE.md, src/phone/metadata.rs):
//! the time from a fresh process to the first answered phone check, with our per-region
//! territories (`PhonePolicy::new(["PT"])`, compiled at init from the table `build.rs` generated)
//! against the `phonenumber` crate's global database (`phonenumber::metadata::DATABASE`,
//! deserialised on first use; the crate is a dev-dependency, linked into this example only).
//!
//!     cargo run --release --example phone_metadata            # 30 fresh processes per mode
//!     cargo run --release --example phone_metadata -- 50
//!
//! Each measurement is its own process (the crate's database is a process-wide lazy static),
//! so every figure is a first use. Also reports the resident memory after the check.

use std::process::Command;
use std::time::Instant;

use chamada::phone::PhonePolicy;
use phonenumber::metadata::DATABASE;
use phonenumber::{Mode, Type};

const NUMBER: &str = "+351912345678";

fn main() {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        Some("ours") => {
            let start = Instant::now();
            let policy = PhonePolicy::new(&["PT"]).expect("PT");
            let built = start.elapsed();
            let allowed = policy.check(NUMBER).expect("allowed");
            let first = start.elapsed();
            assert_eq!(allowed.region, "PT");
            report(built.as_secs_f64(), first.as_secs_f64());
        }
        Some("crate") => {
            // The same gates as `PhonePolicy::check`, on the crate's global database.
            let start = Instant::now();
            let number = phonenumber::parse(None, NUMBER).expect("parses");
            let built = start.elapsed();
            assert!(number.is_valid());
            assert_eq!(number.format().mode(Mode::E164).to_string(), NUMBER);
            let region = number.metadata(&DATABASE).map(|m| m.id().to_string());
            assert_eq!(region.as_deref(), Some("PT"));
            assert!(matches!(
                number.number_type(&DATABASE),
                Type::Mobile | Type::FixedLine | Type::FixedLineOrMobile
            ));
            let first = start.elapsed();
            report(built.as_secs_f64(), first.as_secs_f64());
        }
        other => {
            let runs: usize = other.and_then(|n| n.parse().ok()).unwrap_or(30);
            let me = std::env::current_exe().expect("current exe");
            println!("| database | runs | ready, median ms | first check answered, median ms | p90 ms | RSS after, KiB |");
            println!("|---|---|---|---|---|---|");
            for mode in ["ours", "crate"] {
                let mut rows: Vec<(f64, f64, u64)> = (0..runs)
                    .map(|_| {
                        let out = Command::new(&me).arg(mode).output().expect("child runs");
                        assert!(out.status.success(), "{mode} failed");
                        let text = String::from_utf8_lossy(&out.stdout);
                        let mut f = text.split_whitespace();
                        let mut next =
                            || f.next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
                        (next(), next(), next() as u64)
                    })
                    .collect();
                rows.sort_by(|a, b| a.1.total_cmp(&b.1));
                let mut ready: Vec<f64> = rows.iter().map(|r| r.0).collect();
                ready.sort_by(f64::total_cmp);
                let label = if mode == "ours" {
                    "ours: PT territories, compiled"
                } else {
                    "crate: phonenumber::metadata::DATABASE"
                };
                println!(
                    "| {label} | {runs} | {:.2} | {:.2} | {:.2} | {} |",
                    ready[runs / 2] * 1e3,
                    rows[runs / 2].1 * 1e3,
                    rows[(runs * 9 / 10).min(runs - 1)].1 * 1e3,
                    rows[runs / 2].2
                );
            }
        }
    }
}

/// Prints "ready first rss_kib" for the parent.
fn report(ready: f64, first: f64) {
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_default();
    println!("{ready} {first} {rss}");
}
