//! A DynamoDB-compatible server (dynoxide) embedded in the tests, over real HTTP on
//! 127.0.0.1:0, and clients for it that count their round trips.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Credentials, Intercept, Region, RuntimeComponents};
use aws_sdk_dynamodb::Client;
use chamada::store::dynamodb::{self, DynamoStore};
use secrecy::SecretString;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const TABLE: &str = "chamada-test-limits";
pub const HASH_KEY: &str = "test-hash-key-0123456789abcdef0123456789";

/// One server with an in-memory database, stopped by [`Dynoxide::stop`] or on drop.
pub struct Dynoxide {
    pub endpoint: String,
    /// The database the server serves, for what the SDK client has no call for (streams).
    pub db: dynoxide::Database,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), String>>>,
}

impl Dynoxide {
    pub async fn start() -> Dynoxide {
        let db = dynoxide::Database::memory().expect("in-memory database");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(dynoxide::server::serve_with_shutdown(
            listener,
            db.clone(),
            async {
                let _ = stopped.await;
            },
        ));
        Dynoxide {
            endpoint,
            db,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops accepting and closes idle connections; returns once the server has finished.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// A client on the production settings (timeouts, retries), pointed here with fake
    /// credentials, counting every HTTP request it sends in `trips`.
    pub async fn client(&self, trips: &RoundTrips) -> Client {
        client_for(&self.endpoint, trips, None).await
    }

    /// The store on a fresh table, and the counter of its round trips. Its attempts may take
    /// up to 10 s instead of 1 s: the suite checks rules, not latency, and an unoptimised
    /// build on two cores can take longer than a second to answer 200 requests at once.
    pub async fn store(&self) -> (Arc<DynamoStore>, RoundTrips) {
        self.store_with(None).await
    }

    /// [`store`](Self::store) whose client runs `hook` before sending requests.
    pub async fn store_with(&self, hook: Option<BeforeSend>) -> (Arc<DynamoStore>, RoundTrips) {
        let trips = RoundTrips::default();
        let timeout = Some(Duration::from_secs(10));
        let client = client_with(&self.endpoint, &trips, timeout, hook).await;
        dynamodb::create_table(&client, TABLE).await.unwrap();
        trips.reset();
        let store = DynamoStore::new(client, TABLE, &SecretString::from(HASH_KEY));
        (Arc::new(store), trips)
    }
}

impl Dynoxide {
    /// Every record of `table`'s stream so far, oldest first, as JSON in the shape DynamoDB
    /// Streams (and a Lambda event's `Records`) carries: `eventName`, `dynamodb.Keys`,
    /// `dynamodb.NewImage`, …
    pub fn stream_records(&self, table: &str) -> Vec<serde_json::Value> {
        use dynoxide::actions::{describe_stream, get_records, get_shard_iterator, list_streams};
        let streams = self
            .db
            .list_streams(list_streams::ListStreamsRequest {
                table_name: Some(table.into()),
                ..Default::default()
            })
            .expect("ListStreams");
        let arn = &streams
            .streams
            .first()
            .expect("the table has a stream")
            .stream_arn;
        let described = self
            .db
            .describe_stream(describe_stream::DescribeStreamRequest {
                stream_arn: arn.clone(),
                ..Default::default()
            })
            .expect("DescribeStream");
        let mut records = Vec::new();
        for shard in &described.stream_description.shards {
            let mut iterator = self
                .db
                .get_shard_iterator(get_shard_iterator::GetShardIteratorRequest {
                    stream_arn: arn.clone(),
                    shard_id: shard.shard_id.clone(),
                    shard_iterator_type: "TRIM_HORIZON".into(),
                    sequence_number: None,
                })
                .expect("GetShardIterator")
                .shard_iterator;
            while let Some(current) = iterator {
                let page = self
                    .db
                    .get_records(get_records::GetRecordsRequest {
                        shard_iterator: current,
                        limit: None,
                    })
                    .expect("GetRecords");
                if page.records.is_empty() {
                    break;
                }
                for record in &page.records {
                    records.push(serde_json::to_value(record).expect("a record as JSON"));
                }
                iterator = page.next_shard_iterator;
            }
        }
        records
    }
}

impl Drop for Dynoxide {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A client of `endpoint` with the store's settings, `attempt_timeout` overriding its
/// per-attempt timeout.
pub async fn client_for(
    endpoint: &str,
    trips: &RoundTrips,
    attempt_timeout: Option<Duration>,
) -> Client {
    client_with(endpoint, trips, attempt_timeout, None).await
}

/// [`client_for`], running `hook` (when given) before each request is sent.
async fn client_with(
    endpoint: &str,
    trips: &RoundTrips,
    attempt_timeout: Option<Duration>,
    hook: Option<BeforeSend>,
) -> Client {
    let mut loader = dynamodb::config_loader()
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            "test-access-key-id",
            "test-secret-access-key",
            None,
            None,
            "chamada-tests",
        ));
    if let Some(timeout) = attempt_timeout {
        loader = loader.timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(timeout)
                .operation_attempt_timeout(timeout)
                .operation_timeout(timeout * 2)
                .build(),
        );
    }
    let sdk = loader.load().await;
    let mut config = aws_sdk_dynamodb::config::Builder::from(&sdk).interceptor(trips.clone());
    if let Some(hook) = hook {
        config = config.interceptor(hook);
    }
    Client::from_conf(config.build())
}

/// The DynamoDB operation a request is (`GetItem`, `TransactWriteItems`, …).
fn operation(context: &BeforeTransmitInterceptorContextRef<'_>) -> String {
    context
        .request()
        .headers()
        .get("x-amz-target")
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or("?")
        .to_string()
}

/// Runs a function once, just before the first request of one operation is sent: another
/// writer's change landing between a read and a write, made through the server's
/// [`dynoxide::Database`] (synchronous, so it can run here).
pub struct BeforeSend {
    operation: &'static str,
    hook: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl BeforeSend {
    pub fn new(operation: &'static str, hook: impl FnOnce() + Send + 'static) -> BeforeSend {
        BeforeSend {
            operation,
            hook: Mutex::new(Some(Box::new(hook))),
        }
    }
}

impl std::fmt::Debug for BeforeSend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BeforeSend")
            .field("operation", &self.operation)
            .finish_non_exhaustive()
    }
}

impl Intercept for BeforeSend {
    fn name(&self) -> &'static str {
        "BeforeSend"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if operation(context) == self.operation {
            if let Some(hook) = self.hook.lock().unwrap().take() {
                hook();
            }
        }
        Ok(())
    }
}

/// Counts the HTTP requests a client sends (retries included), by DynamoDB operation.
#[derive(Debug, Clone, Default)]
pub struct RoundTrips(Arc<Mutex<Vec<String>>>);

impl RoundTrips {
    /// The operations sent since the last reset, in order.
    pub fn operations(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    pub fn reset(&self) {
        self.0.lock().unwrap().clear();
    }
}

impl Intercept for RoundTrips {
    fn name(&self) -> &'static str {
        "RoundTrips"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.0.lock().unwrap().push(operation(context));
        Ok(())
    }
}

/// The item under `pk` of `table`, read as it is (consistent).
pub async fn raw(
    client: &Client,
    table: &str,
    pk: &str,
) -> Option<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    client
        .get_item()
        .table_name(table)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(pk.into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
}

/// A string attribute.
pub fn s(value: &str) -> aws_sdk_dynamodb::types::AttributeValue {
    aws_sdk_dynamodb::types::AttributeValue::S(value.into())
}

/// A number attribute.
pub fn num(value: u64) -> aws_sdk_dynamodb::types::AttributeValue {
    aws_sdk_dynamodb::types::AttributeValue::N(value.to_string())
}
