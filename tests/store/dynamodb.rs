//! What only the DynamoDB store has: hashed keys, the table, round trips, failing closed,
//! all through the real router where a request is involved.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aws_sdk_dynamodb::types::{AttributeValue, TimeToLiveStatus};
use axum::body::Body;
use axum::Router;
use chamada::clock::ManualClock;
use chamada::dispatch::ProviderKind;
use chamada::store::dynamodb::{self, DynamoStore};
use chamada::store::RateLimiter;
use chamada::{router, App};
use http::Request;
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

use crate::conformance::{ip, number, NOON_MS};
use crate::dynoxide::{client_for, Dynoxide, RoundTrips, HASH_KEY, TABLE};
use crate::support::{bearer, config, production, Recorder, TestResponse, KEY, NUMBER, PEER};

const ORIGIN: &str = "https://chamada.example";

trait AssertStatus {
    fn assert_status(&self, status: u16);
}

impl AssertStatus for TestResponse {
    fn assert_status(&self, status: u16) {
        assert_eq!(self.status.as_u16(), status, "body: {:?}", self.body);
    }
}

/// The real router in production on `store`, the provider replaced by a recorder.
struct Service {
    router: Router,
    clock: ManualClock,
    recorder: Arc<Recorder>,
}

impl Service {
    async fn new(store: Arc<DynamoStore>, extra: &[(&str, &str)]) -> Service {
        let mut vars = vec![("PUBLIC_CALLS", "true")];
        vars.extend_from_slice(extra);
        let vars = production(&vars);
        let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let clock = ManualClock::at(NOON_MS);
        let recorder = Recorder::new(ProviderKind::ElevenLabs);
        let limiter: Arc<dyn RateLimiter> = store.clone();
        let app = App::build(config(&refs))
            .await
            .with_clock(Arc::new(clock.clone()))
            .with_dispatcher(recorder.clone())
            .with_stores(limiter, store);
        Service {
            router: router(Arc::new(app)),
            clock,
            recorder,
        }
    }

    /// `POST /api/start_call` for `to` from `PEER`, with extra headers.
    async fn call(&self, to: &str, headers: &[(&str, &str)]) -> TestResponse {
        let mut builder =
            Request::post("/api/start_call").header("content-type", "application/json");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let body = serde_json::json!({ "phone_number": to }).to_string();
        let request = crate::support::from_peer(builder.body(Body::from(body)).unwrap(), PEER);
        let response = self.router.clone().oneshot(request).await.unwrap();
        TestResponse::read(response).await
    }

    /// An anonymous browser request from the allowed origin.
    async fn web(&self, to: &str) -> TestResponse {
        self.call(to, &[("origin", ORIGIN)]).await
    }
}

/// Limit and idempotency keys are keyed hashes; call records are keyed by the random ids
/// (`call#<call id>`, `callref#<provider call id>`). No key or attribute holds a raw IP, a
/// full number or an API key (a record holds the masked number only).
#[tokio::test]
async fn keys_in_the_table_are_keyed_hashes_never_raw_ips_or_numbers() {
    let server = Dynoxide::start().await;
    let (store, _) = server.store().await;
    let service = Service::new(store, &[]).await;
    let web = service.web(NUMBER).await;
    web.assert_status(200);
    let api = service
        .call(
            NUMBER,
            &[
                ("authorization", &bearer(KEY)),
                ("idempotency-key", "order-1"),
            ],
        )
        .await;
    api.assert_status(200);
    let call_ids: Vec<String> = [&web, &api]
        .iter()
        .map(|r| r.json()["call_id"].as_str().unwrap().to_string())
        .collect();

    let client = server.client(&RoundTrips::default()).await;
    let items = client.scan().table_name(TABLE).send().await.unwrap();
    let items = items.items();
    let mut kinds = Vec::new();
    for item in items {
        let Some(AttributeValue::S(pk)) = item.get("pk") else {
            panic!("no pk")
        };
        let (prefix, id) = pk.split_once('#').unwrap();
        kinds.push(prefix);
        match prefix {
            "rl" | "idem" => assert!(
                id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
                "{pk}"
            ),
            "call" => assert!(call_ids.iter().any(|c| c == id), "{pk}"),
            // The recording provider answers every call with the same id.
            "callref" => assert_eq!(id, "conv_test_123"),
            _ => panic!("unexpected item {pk}"),
        }
        assert!(
            item.contains_key("expires_at"),
            "every item can expire by TTL"
        );
        for (name, value) in item {
            let text = format!("{value:?}");
            if name == "resp" {
                continue; // the answer replayed as sent
            }
            for raw in ["203.0.113", "351912345678", KEY] {
                assert!(!text.contains(raw), "{name} holds {raw}");
            }
        }
    }
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        ["call", "call", "callref", "idem", "rl", "rl"],
        "the IP, the number, one idempotency record, two call records and the way back"
    );
}

#[tokio::test]
async fn create_table_is_repeatable_and_turns_ttl_on_for_expires_at() {
    let server = Dynoxide::start().await;
    let client = server.client(&RoundTrips::default()).await;
    assert!(dynamodb::create_table(&client, "chamada-ttl")
        .await
        .unwrap());
    assert!(!dynamodb::create_table(&client, "chamada-ttl")
        .await
        .unwrap());
    let ttl = client
        .describe_time_to_live()
        .table_name("chamada-ttl")
        .send()
        .await
        .unwrap();
    let ttl = ttl.time_to_live_description().unwrap();
    assert_eq!(ttl.attribute_name(), Some("expires_at"));
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
}

/// docs/API.md §5: an admitted or refused request costs the limits one store round trip in
/// the common case, two at most; a placed call adds one write for its record (docs/API.md
/// §15: the record and the way back from the provider's id, one `TransactWriteItems`).
/// Counted with an SDK interceptor, per request kind, through the router.
#[tokio::test]
async fn round_trips_per_request_kind_stay_within_two() {
    const TWI: &str = "TransactWriteItems";
    /// The call record's write, after the limits' (the recording provider gives an id).
    const RECORD: &str = TWI;
    let server = Dynoxide::start().await;
    let (store, trips) = server.store().await;
    let service = Service::new(store.clone(), &[("MAX_CALLS_PER_DAY", "1000")]).await;
    let api = bearer(KEY);
    let mut table = Vec::new();
    let mut measure = |kind: &str, response: TestResponse, status: u16, trips: &RoundTrips| {
        response.assert_status(status);
        let ops = trips.operations();
        trips.reset();
        table.push(format!("{kind}: {} {ops:?}", ops.len()));
        ops
    };

    let r = service.web(NUMBER).await;
    assert_eq!(
        measure("web admitted (ip+number+day)", r, 200, &trips),
        [TWI, RECORD]
    );
    let r = service
        .call("+351912345679", &[("authorization", &api)])
        .await;
    assert_eq!(
        measure("api admitted (number+day)", r, 200, &trips),
        [TWI, RECORD]
    );
    let r = service
        .call(
            "+351912345670",
            &[("authorization", &api), ("x-end-user-ip", "198.51.100.7")],
        )
        .await;
    assert_eq!(
        measure("api for an end user admitted", r, 200, &trips),
        [TWI, RECORD]
    );
    service.web("+351912345671").await.assert_status(200);
    service.web("+351912345672").await.assert_status(200);
    trips.reset();
    let r = service.web("+351912345673").await;
    assert_eq!(measure("web refused (ip full)", r, 429, &trips), [TWI]);

    // A day later: full lists of expired entries are rewritten, once.
    service.clock.advance_secs(86_400);
    let r = service.web(NUMBER).await;
    assert_eq!(
        measure("web admitted over expired entries", r, 200, &trips),
        [TWI, TWI, RECORD]
    );
    let r = service.web("+351912345674").await;
    assert_eq!(
        measure("web admitted after the rewrite", r, 200, &trips),
        [TWI, RECORD]
    );

    // Without a day limit an API request has one limit: one UpdateItem.
    let single = Service::new(store.clone(), &[]).await;
    let r = single
        .call("+351912345676", &[("authorization", &api)])
        .await;
    assert_eq!(
        measure("api admitted (number only)", r, 200, &trips),
        ["UpdateItem", RECORD]
    );

    let r = service
        .call(
            "+351912345675",
            &[("authorization", &api), ("idempotency-key", "k1")],
        )
        .await;
    assert_eq!(
        measure(
            "api idempotent first (begin, admit, record, complete)",
            r,
            200,
            &trips,
        ),
        ["PutItem", TWI, RECORD, "UpdateItem"]
    );
    let r = service
        .call(
            "+351912345675",
            &[("authorization", &api), ("idempotency-key", "k1")],
        )
        .await;
    assert_eq!(
        measure("api idempotent replay", r, 200, &trips),
        ["PutItem"]
    );
    eprintln!("round trips per request kind:\n  {}", table.join("\n  "));
}

#[tokio::test]
async fn a_stopped_store_answers_503_rate_limit_unavailable_and_places_no_call() {
    let mut server = Dynoxide::start().await;
    let (store, _) = server.store().await;
    let service = Service::new(store, &[]).await;
    service.web(NUMBER).await.assert_status(200);
    assert_eq!(service.recorder.count(), 1);

    server.stop().await;
    let response = service.web("+351912345679").await;
    response.assert_error(503, "rate_limit_unavailable");
    let response = service
        .call(
            NUMBER,
            &[("authorization", &bearer(KEY)), ("idempotency-key", "k2")],
        )
        .await;
    response.assert_error(503, "rate_limit_unavailable");
    assert_eq!(
        service.recorder.count(),
        1,
        "no call placed without the store"
    );
}

/// A fake DynamoDB that answers every request with `response`; counts the requests.
async fn fake_dynamodb(response: &'static str) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(read) = socket.read(&mut buf).await {
                    if read == 0 {
                        break;
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    if socket.write_all(response.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (endpoint, requests)
}

const NONSENSE: &str = "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: 16\r\n\r\nthis is not json";
const THROTTLED: &str = "HTTP/1.1 400 Bad Request\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: 91\r\n\r\n{\"__type\":\"com.amazonaws.dynamodb.v20120810#ThrottlingException\",\"message\":\"Rate exceeded\"}";

#[tokio::test]
async fn nonsense_and_throttled_answers_fail_closed_with_503_and_no_call() {
    for (what, canned) in [("nonsense", NONSENSE), ("throttled", THROTTLED)] {
        let (endpoint, requests) = fake_dynamodb(canned).await;
        let client = client_for(&endpoint, &RoundTrips::default(), None).await;
        let store = Arc::new(DynamoStore::new(
            client,
            TABLE,
            &SecretString::from(HASH_KEY),
        ));
        let service = Service::new(store, &[]).await;
        let response = service.web(NUMBER).await;
        response.assert_error(503, "rate_limit_unavailable");
        assert_eq!(service.recorder.count(), 0, "{what}: no call");
        let sent = requests.load(Ordering::SeqCst);
        assert!(
            (1..=2).contains(&sent),
            "{what}: {sent} attempts, one retry at most"
        );
    }
}

/// The messages of an error and of each of its causes, outermost first.
fn chain(error: &(dyn std::error::Error + 'static)) -> Vec<String> {
    std::iter::successors(Some(error), |e| e.source())
        .map(|e| e.to_string())
        .collect()
}

#[tokio::test]
async fn a_store_error_names_the_operation_never_a_key_and_keeps_the_sdk_cause() {
    let checks = [ip("203.0.113.10", 1), number(NUMBER, 3)];
    let no_key = |text: &str| {
        !text.contains("203.0.113") && !text.contains(&NUMBER[1..]) && !text.contains(HASH_KEY)
    };

    let (endpoint, _) = fake_dynamodb(THROTTLED).await;
    let client = client_for(&endpoint, &RoundTrips::default(), None).await;
    let store = DynamoStore::new(client, TABLE, &SecretString::from(HASH_KEY));
    let error = store.admit(&checks[..1], NOON_MS).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "store unavailable: UpdateItem refused: ThrottlingException"
    );
    let causes = chain(&error);
    assert!(
        causes[1..].iter().any(|c| c.contains("Rate exceeded")),
        "{causes:?}"
    );
    assert!(
        format!("{error:?}").contains("ThrottlingException"),
        "{error:?}"
    );
    assert!(causes.iter().all(|c| no_key(c)), "{causes:?}");

    let mut server = Dynoxide::start().await;
    let (store, _) = server.store().await;
    server.stop().await;
    let error = store.admit(&checks, NOON_MS).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "store unavailable: TransactWriteItems unreachable"
    );
    let causes = chain(&error);
    assert!(
        causes.len() > 1,
        "the SDK's error is the source: {causes:?}"
    );
    assert!(format!("{error:?}").contains("ConnectorError"), "{error:?}");
    assert!(causes.iter().all(|c| no_key(c)), "{causes:?}");
}

#[tokio::test]
async fn a_corrupt_item_fails_closed_rather_than_admitting() {
    let server = Dynoxide::start().await;
    let (store, _) = server.store().await;
    let c = [ip("203.0.113.10", 1)];
    store.admit(&c, NOON_MS).await.unwrap();
    // Overwrite the list with something that is not a list of times.
    let client = server.client(&RoundTrips::default()).await;
    let scan = client.scan().table_name(TABLE).send().await.unwrap();
    let pk = scan.items()[0]["pk"].clone();
    client
        .put_item()
        .table_name(TABLE)
        .item("pk", pk)
        .item("ts", AttributeValue::S("garbage".into()))
        .item("v", AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap();
    let result = store.admit(&c, NOON_MS + 1).await;
    assert!(result.is_err(), "{result:?}");
    let both = store
        .admit(&[ip("203.0.113.10", 1), number(NUMBER, 3)], NOON_MS + 2)
        .await;
    assert!(both.is_err(), "{both:?}");
}

#[tokio::test]
async fn idempotent_requests_replay_through_the_router_on_dynamodb() {
    let server = Dynoxide::start().await;
    let (store, _) = server.store().await;
    let service = Service::new(store, &[]).await;
    let api = bearer(KEY);
    let headers = [
        ("authorization", api.as_str()),
        ("idempotency-key", "order-42"),
    ];
    let first = service.call(NUMBER, &headers).await;
    first.assert_status(200);
    let again = service.call(NUMBER, &headers).await;
    again.assert_status(200);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json()["call_id"], first.json()["call_id"]);
    let other = service.call("+351912345679", &headers).await;
    other.assert_error(422, "idempotency_key_reused");
    assert_eq!(service.recorder.count(), 1, "one call for three requests");
}

/// A TCP relay to `upstream` that reads the first connection's request and closes it unanswered
/// (as a load balancer or a dropped NAT entry does); later connections are relayed whole.
async fn cuts_first_connection(upstream: &str) -> (String, Arc<AtomicUsize>) {
    let upstream = upstream.trim_start_matches("http://").to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = socket.read(&mut buf).await;
                drop(socket);
                continue;
            }
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let mut server = tokio::net::TcpStream::connect(upstream).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut socket, &mut server).await;
            });
        }
    });
    (endpoint, connections)
}

/// The SDK sends through the service's reqwest (src/store/dynamodb/http.rs): a connection closed
/// before the answer is a transient transport error, so the SDK's one retry takes it on a new
/// connection and the request is admitted — not refused as the caller's error.
#[tokio::test]
async fn a_connection_cut_before_the_answer_is_retried_and_admitted() {
    let server = Dynoxide::start().await;
    server.store().await; // creates the table
    let (endpoint, connections) = cuts_first_connection(&server.endpoint).await;
    let trips = RoundTrips::default();
    let client = client_for(&endpoint, &trips, None).await;
    let store = Arc::new(DynamoStore::new(
        client,
        TABLE,
        &SecretString::from(HASH_KEY),
    ));
    let service = Service::new(store, &[]).await;
    service.web(NUMBER).await.assert_status(200);
    assert_eq!(service.recorder.count(), 1);
    assert_eq!(connections.load(Ordering::SeqCst), 2, "one cut, one retry");
    let sent = trips.operations();
    assert_eq!(
        sent[..2],
        ["TransactWriteItems", "TransactWriteItems"],
        "the admission, then its retry: {sent:?}"
    );
}
