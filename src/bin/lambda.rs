//! The AWS Lambda function (template.yaml; `cargo lambda watch`).
#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    chamada::entry::lambda::run().await
}
