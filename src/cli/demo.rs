//! The bundled demo page, served on a loopback port so `pagecast record demo` works offline.

use axum::Router;
use axum::response::Html;
use axum::routing::get;

const DEMO_PAGE: &str = include_str!("demo.html");

/// Serves the demo page on 127.0.0.1 (random port) for as long as the returned task lives.
pub async fn serve() -> std::io::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Router::new().route("/", get(|| async { Html(DEMO_PAGE) }));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}/"), task))
}
