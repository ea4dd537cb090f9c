//! The PostgreSQL store through the router, on a real PostgreSQL and a real PgBouncer in
//! transaction mode (`pg.rs`): exact under contention from several instances behind the
//! pooler, failing closed while the database is down and back without a restart, one round
//! trip per store call (counted by the server, `pg_stat_statements`), Row Level Security that
//! leaves Supabase's API roles nothing, and `migrate` run twice.

use std::sync::Arc;

use crate::pg::{self, Cluster, Route};
use crate::support::{bearer, TestApp, KEY};
use chamada::store::{Admission, LimitCheck, LimitKind, RateLimiter, Window};
use serde_json::json;

/// An app (one serverless instance: one connection) on `url`, development, dry-run replaced
/// by a recorder.
async fn instance(url: &str, extra: &[(&str, &str)]) -> TestApp {
    let mut vars = vec![("RATE_LIMIT_STORE", "postgres"), ("DATABASE_URL", url)];
    vars.extend_from_slice(extra);
    let app = TestApp::new(&vars).await;
    assert!(
        app.app.config.problems.is_empty(),
        "{:?}",
        app.app.config.problems
    );
    app
}

/// A valid Portuguese mobile number, one per `i`.
fn number(i: usize) -> String {
    format!("+351912{i:06}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_requests_from_one_ip_admit_exactly_three_through_the_pooler() {
    let cluster = tokio::task::spawn_blocking(pg::shared).await.unwrap();
    let database = cluster.database().await;
    let settings = cluster.settings(&database, Route::Pooler);
    chamada::store::postgres::migrate(&settings).await.unwrap();
    let url = cluster.url(&database, Route::Pooler);
    // Eight instances, each with its own connection through PgBouncer (pool of 20 server
    // connections): the admissions really race for the same row.
    let mut apps = Vec::new();
    for _ in 0..8 {
        apps.push(Arc::new(
            instance(&url, &[("MAX_REQUESTS_PER_IP", "3")]).await,
        ));
    }
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let app = apps[i % apps.len()].clone();
            tokio::spawn(async move {
                app.start_call(json!({ "phone_number": number(i) }), &[])
                    .await
                    .status
                    .as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((ok, limited), (3, 197), "{statuses:?}");
    let placed: usize = apps.iter().map(|a| a.calls()).sum();
    assert_eq!(placed, 3, "calls placed");
}

/// A request through `app`: its status and error code.
async fn call(app: &TestApp, i: usize) -> (u16, String) {
    let response = app
        .start_call(json!({ "phone_number": number(i) }), &[])
        .await;
    let code = response.json()["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (response.status.as_u16(), code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_database_refuses_calls_with_503_and_they_resume_when_it_is_back() {
    let mut cluster = tokio::task::spawn_blocking(Cluster::start).await.unwrap();
    let database = cluster.database().await;
    chamada::store::postgres::migrate(&cluster.settings(&database, Route::Direct))
        .await
        .unwrap();
    let direct = instance(
        &cluster.url(&database, Route::Direct),
        &[("MAX_REQUESTS_PER_IP", "100")],
    )
    .await;
    let pooled = instance(
        &cluster.url(&database, Route::Pooler),
        &[("MAX_REQUESTS_PER_IP", "100")],
    )
    .await;
    assert_eq!(call(&direct, 1).await.0, 200);
    assert_eq!(call(&pooled, 2).await.0, 200);
    assert_eq!((direct.calls(), pooled.calls()), (1, 1));

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.stop_postgres();
        cluster
    })
    .await
    .unwrap();
    for i in 3..5 {
        let refused = (503, "rate_limit_unavailable".to_string());
        assert_eq!(call(&direct, i).await, refused, "direct, down");
        assert_eq!(call(&pooled, i + 10).await, refused, "pooler, down");
    }
    assert_eq!((direct.calls(), pooled.calls()), (1, 1), "no call placed");

    let mut cluster = cluster;
    let _cluster = tokio::task::spawn_blocking(move || {
        cluster.start_postgres();
        cluster
    })
    .await
    .unwrap();
    // Same apps, same processes: the next call opens a new connection.
    assert_eq!(call(&direct, 5).await.0, 200, "direct, back");
    // PgBouncer refuses new server logins for `server_login_retry` after failed ones (1 s
    // here, 15 s by default): until then the call is refused as while down, then it goes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut i = 100;
    loop {
        i += 1;
        match call(&pooled, i).await {
            (200, _) => break,
            other => {
                assert_eq!(other, (503, "rate_limit_unavailable".to_string()));
                assert_eq!(pooled.calls(), 1, "no call placed while refused");
                assert!(
                    std::time::Instant::now() < deadline,
                    "the pooler never came back"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
    assert_eq!((direct.calls(), pooled.calls()), (2, 2));
}

/// Statements the server ran for `request`: what it costs in round trips (one statement is
/// one round trip: `query_typed` sends Parse/Bind/Describe/Execute/Sync in one write).
async fn statements_of<F: std::future::Future<Output = u16>>(
    cluster: &Cluster,
    database: &str,
    request: F,
) -> (u16, i64) {
    let before = cluster.statements(database).await;
    let status = request.await;
    let after = cluster.statements(database).await;
    (status, after - before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_kind_costs_the_store_one_round_trip_per_port_call() {
    let cluster = tokio::task::spawn_blocking(pg::shared).await.unwrap();
    let database = cluster.database().await;
    chamada::store::postgres::migrate(&cluster.settings(&database, Route::Pooler))
        .await
        .unwrap();
    let app = instance(
        &cluster.url(&database, Route::Pooler),
        &[("MAX_CALLS_PER_DAY", "1000"), ("PRODUCTION_API_KEY", KEY)],
    )
    .await;
    let web = |i: usize| {
        let app = &app;
        async move {
            app.start_call(json!({ "phone_number": number(i) }), &[])
                .await
                .status
                .as_u16()
        }
    };
    let api = bearer(KEY);
    let mut table = Vec::new();

    // Warm: the connection is opened by the first request (not a statement).
    let (status, n) = statements_of(cluster, &database, web(1)).await;
    table.push(("web admitted (ip+number+day) + record", status, n));
    assert_eq!((status, n), (200, 2));
    let (status, n) = statements_of(cluster, &database, async {
        app.start_call(
            json!({ "phone_number": number(2) }),
            &[("authorization", &api)],
        )
        .await
        .status
        .as_u16()
    })
    .await;
    table.push(("api admitted (number+day) + record", status, n));
    assert_eq!((status, n), (200, 2));
    web(3).await;
    web(4).await;
    let (status, n) = statements_of(cluster, &database, web(6)).await;
    table.push(("web refused (ip full)", status, n));
    assert_eq!((status, n), (429, 1));
    let (status, n) = statements_of(cluster, &database, async {
        app.start_call(
            json!({ "phone_number": number(7) }),
            &[("authorization", &api), ("idempotency-key", "k-1")],
        )
        .await
        .status
        .as_u16()
    })
    .await;
    table.push((
        "api with Idempotency-Key: begin + admit + complete + record",
        status,
        n,
    ));
    assert_eq!((status, n), (200, 4));
    let (status, n) = statements_of(cluster, &database, async {
        app.start_call(
            json!({ "phone_number": number(7) }),
            &[("authorization", &api), ("idempotency-key", "k-1")],
        )
        .await
        .status
        .as_u16()
    })
    .await;
    table.push(("its replay: begin", status, n));
    assert_eq!((status, n), (200, 1));
    for (kind, status, n) in table {
        println!("round trips: {kind}: {status} {n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_and_refusal_are_one_statement_each_under_every_limit_count() {
    let cluster = tokio::task::spawn_blocking(pg::shared).await.unwrap();
    let (store, database) = cluster.store(Route::Direct).await;
    let check = |key: &str, window: Window| LimitCheck {
        kind: LimitKind::Ip,
        key: key.into(),
        max: 1,
        window,
    };
    let rolling = Window::Rolling { ms: 60_000 };
    let three = [
        check("ip:a", rolling),
        check("number:a", rolling),
        check("global:1", Window::UtcDay),
    ];
    for checks in [&three[..1], &three[..2], &three[..]] {
        let before = cluster.statements(&database).await;
        let admitted = store.admit(checks, 1_000 + checks.len() as u64).await;
        let middle = cluster.statements(&database).await;
        let refused = store.admit(checks, 2_000).await;
        let after = cluster.statements(&database).await;
        assert!(
            matches!(admitted, Ok(Admission::Admitted(_))),
            "{admitted:?}"
        );
        assert!(
            matches!(refused, Ok(Admission::Refused { .. })),
            "{refused:?}"
        );
        assert_eq!(
            (middle - before, after - middle),
            (1, 1),
            "{} limits",
            checks.len()
        );
        // The next size starts from fresh keys.
        store
            .refund(checks, 1_000 + checks.len() as u64)
            .await
            .unwrap();
        let admin = cluster.admin(&database).await;
        admin
            .batch_execute("delete from chamada.limits")
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_level_security_leaves_supabases_api_roles_nothing_even_with_grants() {
    let cluster = tokio::task::spawn_blocking(pg::shared).await.unwrap();
    let (store, database) = cluster.store(Route::Direct).await;
    let check = LimitCheck {
        kind: LimitKind::Ip,
        key: "ip:192.0.2.1".into(),
        max: 3,
        window: Window::Rolling { ms: 60_000 },
    };
    store.admit(&[check], 1_000).await.unwrap();
    let admin = cluster.admin(&database).await;
    for role in ["anon", "authenticated"] {
        // As migrated: no access to the schema at all.
        let denied = admin
            .batch_execute(&format!(
                "begin; set local role {role}; select count(*) from chamada.limits; commit"
            ))
            .await;
        assert!(denied.is_err(), "{role} read the schema");
        admin.batch_execute("rollback").await.unwrap();
        let denied = admin
            .batch_execute(&format!(
                "begin; set local role {role}; \
                 select * from chamada.admit(array['k'], array[1], array[1000::int8], 1); commit"
            ))
            .await;
        assert!(denied.is_err(), "{role} called admit");
        admin.batch_execute("rollback").await.unwrap();
    }
    // Even when someone grants the API roles the tables (Supabase's defaults do so for the
    // public schema), RLS without a policy shows them no row and lets them write none.
    admin
        .batch_execute(
            "grant usage on schema chamada to anon; \
             grant all on all tables in schema chamada to anon;",
        )
        .await
        .unwrap();
    let rows = admin
        .simple_query("begin; set local role anon; select count(*) from chamada.limits; commit")
        .await
        .unwrap();
    let seen: Vec<&str> = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0),
            _ => None,
        })
        .collect();
    assert_eq!(seen, ["0"], "anon saw rows");
    let written = admin
        .batch_execute(
            "begin; set local role anon; \
             insert into chamada.limits (key) values ('rl#forged'); commit",
        )
        .await;
    assert!(written.is_err(), "anon wrote a row");
    admin.batch_execute("rollback").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_applies_once_through_the_pooler_and_the_command_line_says_so() {
    let cluster = tokio::task::spawn_blocking(pg::shared).await.unwrap();
    let database = cluster.database().await;
    let url = cluster.url(&database, Route::Pooler);
    let run = |url: String| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_chamada"))
                .arg("migrate")
                .current_dir(std::env::temp_dir())
                .env_clear()
                .env("DATABASE_URL", url)
                .output()
                .unwrap()
        })
    };
    let first = run(url.clone()).await.unwrap();
    assert!(first.status.success(), "{first:?}");
    let first = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(first.starts_with("Applied 0001_store"), "{first}");
    let again = run(url.clone()).await.unwrap();
    assert!(again.status.success(), "{again:?}");
    let again = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(again.starts_with("Database up to date"), "{again}");
    // The library says the same, and the schema works.
    let settings = cluster.settings(&database, Route::Pooler);
    let migrated = chamada::store::postgres::migrate(&settings).await.unwrap();
    assert!(migrated.applied.is_empty());

    // A wrong password or host never reaches the output.
    let bad = run("postgres://chamada:fake-secret-pw@127.0.0.1:1/nowhere?sslmode=disable".into())
        .await
        .unwrap();
    assert!(!bad.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&bad.stdout),
        String::from_utf8_lossy(&bad.stderr)
    );
    assert!(!said.contains("fake-secret-pw"), "{said}");
}

/// Rows of `chamada.limits`, as the database holds them (expired or not).
async fn limit_rows(admin: &tokio_postgres::Client) -> i64 {
    admin
        .query_one("select count(*) from chamada.limits", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_cleans_up_expired_rows_at_most_once_a_minute_and_keeps_live_ones() {
    use chamada::store::Outbox;
    let cluster = tokio::task::spawn_blocking(pg::shared).await.unwrap();
    let (store, database) = cluster.store(Route::Direct).await;
    let check = |key: &str| LimitCheck {
        kind: LimitKind::Ip,
        key: key.into(),
        max: 3,
        window: Window::Rolling { ms: 60_000 },
    };
    let t = 1_000_000;
    store.admit(&[check("ip:old")], t).await.unwrap(); // counts until t + 60 s
    store.admit(&[check("ip:brief")], t + 50_000).await.unwrap(); // until t + 110 s
    store.admit(&[check("ip:new")], t + 90_000).await.unwrap(); // until t + 150 s
    let admin = cluster.admin(&database).await;
    assert_eq!(limit_rows(&admin).await, 3);
    // The sweep at t + 100 s deletes the expired row only.
    store.due(t + 100_000, 10).await.unwrap();
    assert_eq!(limit_rows(&admin).await, 2);
    // 20 s later `ip:brief` has expired too, but the last cleanup is under a minute old.
    store.due(t + 120_000, 10).await.unwrap();
    assert_eq!(limit_rows(&admin).await, 2, "cleaned again within a minute");
    // A minute after the last cleanup: everything expired goes.
    store.due(t + 160_000, 10).await.unwrap();
    assert_eq!(limit_rows(&admin).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_verified_against_the_configured_ca_and_the_host_name() {
    let cluster = tokio::task::spawn_blocking(pg::shared).await.unwrap();
    let database = cluster.database().await;
    let url = |host: &str| {
        secrecy::SecretString::from(format!(
            "postgres://chamada@{host}:{}/{database}?sslmode=require",
            cluster.port
        ))
    };
    let ca = cluster.ca();
    let ca = ca.to_str().unwrap();
    // The server's certificate, signed by the configured CA, for the name asked: used.
    let verified =
        chamada::store::postgres::PgSettings::parse(&url("localhost"), Some(ca)).unwrap();
    chamada::store::postgres::migrate(&verified).await.unwrap();
    let store = chamada::store::postgres::PgStore::new(
        verified,
        &secrecy::SecretString::from(pg::HASH_KEY),
    );
    let check = LimitCheck {
        kind: LimitKind::Ip,
        key: "ip:192.0.2.9".into(),
        max: 1,
        window: Window::Rolling { ms: 60_000 },
    };
    assert!(matches!(
        store.admit(std::slice::from_ref(&check), 1_000).await,
        Ok(Admission::Admitted(_))
    ));
    // The same PEM given as text works the same way.
    let pem = std::fs::read_to_string(ca).unwrap();
    let as_text =
        chamada::store::postgres::PgSettings::parse(&url("localhost"), Some(&pem)).unwrap();
    chamada::store::postgres::migrate(&as_text).await.unwrap();
    // And on one line, its line breaks written `\n` (a single-line settings field).
    let one_line = pem.trim_end().replace('\n', "\\n");
    assert!(!one_line.contains('\n'));
    let one_line =
        chamada::store::postgres::PgSettings::parse(&url("localhost"), Some(&one_line)).unwrap();
    chamada::store::postgres::migrate(&one_line).await.unwrap();

    // Mozilla's roots (no DATABASE_CA_CERT) do not know the test CA; the CA does not vouch for
    // the address 127.0.0.1 (the certificate names `localhost` only): refused, fail closed.
    for (host, ca) in [("localhost", None), ("127.0.0.1", Some(ca))] {
        let settings = chamada::store::postgres::PgSettings::parse(&url(host), ca).unwrap();
        let refused = chamada::store::postgres::migrate(&settings)
            .await
            .unwrap_err();
        assert!(
            refused.to_string().contains("TLS handshake failed"),
            "{host} {ca:?}: {refused}"
        );
        let store = chamada::store::postgres::PgStore::new(
            settings,
            &secrecy::SecretString::from(pg::HASH_KEY),
        );
        assert!(store
            .admit(std::slice::from_ref(&check), 2_000)
            .await
            .is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_server_on_postgres_remembers_callers_across_a_restart() {
    use crate::support::server::Server;
    let cluster = tokio::task::spawn_blocking(pg::shared).await.unwrap();
    let database = cluster.database().await;
    chamada::store::postgres::migrate(&cluster.settings(&database, Route::Pooler))
        .await
        .unwrap();
    // A password the test cluster never asks for (trust), to see that it is never printed.
    let url = cluster
        .url(&database, Route::Pooler)
        .replace("chamada@", "chamada:fake-pw-never-logged@");
    let vars = [
        ("RATE_LIMIT_STORE", "postgres"),
        ("DATABASE_URL", url.as_str()),
        ("MAX_CALLS_PER_NUMBER", "2"),
    ];
    let call = |base: String| async move {
        chamada::outbound::http_client()
            .unwrap()
            .post(format!("{base}/api/start_call"))
            .json(&json!({ "phone_number": "+351912345678" }))
            .send()
            .await
            .unwrap()
    };
    let first = Server::start(&vars).await;
    assert!(first.first.contains("store=postgres"), "{}", first.first);
    assert!(!first.first.contains("DEGRADED"), "{}", first.first);
    for _ in 0..2 {
        assert_eq!(call(first.base.clone()).await.status(), 200);
    }
    let logs = first.stop().await;
    assert!(
        !logs
            .iter()
            .any(|line| line.contains("fake-pw-never-logged")),
        "the connection string was logged"
    );

    let second = Server::start(&vars).await;
    let refused = call(second.base.clone()).await;
    let status = refused.status();
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    second.stop().await;
    assert_eq!(status, 429);
    assert!((86_000..=86_400).contains(&retry_after), "{retry_after}");
}
