//! The providers' official SDKs as judges (scripts/provider-sdks: the pinned `elevenlabs`
//! Python package from PyPI, in its own virtualenv): the bytes Chamada accepts are the bytes
//! ElevenLabs' own verifier accepts, both ways.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;

use crate::calls::{fixture, post_event, signature, SECRET};
use crate::support::{config, TestApp, NOON_MS};
use chamada::after_answer::AfterAnswer;

/// Runs `scripts/provider-sdks` with `args` and `body` on stdin: (accepted, stdout).
fn judge(args: &[&str], body: &[u8]) -> (bool, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/provider-sdks");
    let mut child = Command::new(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("scripts/provider-sdks runs");
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_ne!(
        out.status.code(),
        Some(2),
        "usage error: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

#[tokio::test]
async fn elevenlabs_own_verifier_and_chamada_agree_on_every_signature() {
    let body = serde_json::to_vec(&fixture("elevenlabs/post_call_transcription.json")).unwrap();
    let now = (NOON_MS / 1000).to_string();

    // What Chamada's tests sign, the SDK accepts…
    let ours = signature(SECRET, NOON_MS / 1000, &body);
    let (ok, kind) = judge(
        &[
            "elevenlabs-verify",
            "--secret",
            SECRET,
            "--signature",
            &ours,
            "--now",
            &now,
        ],
        &body,
    );
    assert!(ok, "the SDK refused Chamada's signature");
    assert_eq!(kind, "post_call_transcription");
    // …and refuses when the body or the secret differ.
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    let args = [
        "elevenlabs-verify",
        "--secret",
        SECRET,
        "--signature",
        &ours,
        "--now",
        &now,
    ];
    assert!(!judge(&args, &tampered).0);
    let wrong = [
        "elevenlabs-verify",
        "--secret",
        "other",
        "--signature",
        &ours,
        "--now",
        &now,
    ];
    assert!(!judge(&wrong, &body).0);

    // What the SDK's scheme signs, Chamada accepts (and refuses once tampered).
    let (ok, theirs) = judge(
        &["elevenlabs-sign", "--secret", SECRET, "--timestamp", &now],
        &body,
    );
    assert!(ok);
    let t = TestApp::delivering(
        config(&[("ELEVENLABS_WEBHOOK_SECRET", SECRET)]),
        AfterAnswer::Stream,
    )
    .await;
    let r = post_event(&t, &body, Some(&theirs)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json(), json!({"received": true}));
    post_event(&t, &tampered, Some(&theirs))
        .await
        .assert_error(401, "unauthorized");
}
