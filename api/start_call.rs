//! Vercel function `POST /api/start_call` (the library's router; see vercel.json).
#[tokio::main]
async fn main() -> Result<(), vercel_runtime::Error> {
    chamada::entry::vercel::run().await
}
