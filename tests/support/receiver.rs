//! A webhook receiver that holds every request until the test opens its gate, recording each
//! request's `webhook-id`: proof that an answer did not wait for the receiver.

use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

pub struct GatedReceiver {
    pub url: String,
    pub received: Arc<Mutex<Vec<String>>>,
    pub gate: Arc<Semaphore>,
}

impl GatedReceiver {
    pub async fn start() -> GatedReceiver {
        let received = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(Semaphore::new(0));
        let (seen, held) = (received.clone(), gate.clone());
        let hook = axum::routing::post(move |headers: http::HeaderMap| {
            let (seen, held) = (seen.clone(), held.clone());
            async move {
                let id = headers["webhook-id"].to_str().unwrap_or("").to_string();
                seen.lock().unwrap().push(id);
                held.acquire().await.unwrap().forget();
                http::StatusCode::OK
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, axum::Router::new().route("/hook", hook))
                .await
                .unwrap()
        });
        GatedReceiver {
            url,
            received,
            gate,
        }
    }

    /// The `webhook-id`s received so far, in order.
    pub fn ids(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }
}
