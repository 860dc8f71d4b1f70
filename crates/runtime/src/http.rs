//! Serving an axum router until shutdown, and the health endpoints every service has.

use std::net::{IpAddr, SocketAddr};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

/// The answer of every `/health/ready/...` endpoint: `200 {"status": "ready"}`, or while the
/// service is still catching up `503 {"status": not_yet}`.
pub fn readiness(ready: bool, not_yet: &str) -> Response {
    if ready {
        (StatusCode::OK, Json(std::collections::BTreeMap::from([("status", "ready")]))).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(std::collections::BTreeMap::from([("status", not_yet)]))).into_response()
    }
}

/// `router` with a per-client-address limit (the public routes: web API, chat start): a burst
/// of `settings.rate_burst` requests, refilled at `settings.rate_per_minute`; beyond it `429`
/// with the wait in the body and `x-ratelimit-*` / `retry-after` headers. The client is
/// [`client_ip`]: the peer, or behind `http.trusted_proxies` the address they forwarded for.
/// Needs the peer address, which [`serve`] provides.
pub fn rate_limited(router: Router, settings: &crate::config::WebApiSettings, http: &crate::config::HttpSettings) -> Result<Router, String> {
    let per_request_ms = (60_000 / u64::from(settings.rate_per_minute.max(1))).max(1);
    let config = tower_governor::governor::GovernorConfigBuilder::default()
        .per_millisecond(per_request_ms)
        .burst_size(settings.rate_burst.max(1))
        .key_extractor(ClientIpKey { trusted: http.trusted_proxies()?.into() })
        .use_headers()
        .finish()
        .ok_or("[web_api] rate_per_minute and rate_burst must be at least 1")?;
    let layer = tower_governor::GovernorLayer::new(config).error_handler(|e| {
        let (status, message) = match e {
            tower_governor::GovernorError::TooManyRequests { wait_time, headers } => {
                let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(serde_json::json!({"error": format!("too many requests from this address; try again in {wait_time} s")}))).into_response();
                if let Some(headers) = headers {
                    response.headers_mut().extend(headers);
                }
                return response;
            }
            other => (StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        };
        (status, Json(serde_json::json!({"error": message}))).into_response()
    });
    Ok(router.layer(layer))
}

/// The address a request comes from: the peer's, unless the peer is one of `trusted`
/// proxies; then, reading `X-Forwarded-For` from its end, the first address that is not a
/// trusted proxy (what a client puts at the start of the header is never believed).
pub fn client_ip(peer: IpAddr, headers: &axum::http::HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(&canonical_ip(*ip)));
    if !is_trusted(&peer) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|a| a.trim().parse::<IpAddr>().map(canonical_ip))
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    let mut client = peer;
    for address in forwarded.into_iter().rev() {
        client = address;
        if !is_trusted(&address) {
            break;
        }
    }
    client
}

/// Whether the client reached us over https: only a trusted proxy's `X-Forwarded-Proto` is
/// believed (this process itself serves plain http). Cookies set for such a client are
/// marked `Secure`.
pub fn forwarded_https(peer: IpAddr, headers: &axum::http::HeaderMap, trusted: &[ipnet::IpNet]) -> bool {
    trusted.iter().any(|n| n.contains(&canonical_ip(peer)))
        && headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|v| v.split(',').next().is_some_and(|p| p.trim().eq_ignore_ascii_case("https")))
}

/// An IPv4 address seen through an IPv6 socket (`::ffff:a.b.c.d`) as IPv4, so that it
/// matches IPv4 networks.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// The rate limit's key: [`client_ip`].
#[derive(Clone)]
struct ClientIpKey {
    trusted: std::sync::Arc<[ipnet::IpNet]>,
}

impl tower_governor::key_extractor::KeyExtractor for ClientIpKey {
    type Key = IpAddr;

    fn extract<T>(&self, req: &axum::http::Request<T>) -> Result<IpAddr, tower_governor::GovernorError> {
        let peer = req
            .extensions()
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .ok_or(tower_governor::GovernorError::UnableToExtractKey)?;
        Ok(client_ip(peer, req.headers(), &self.trusted))
    }
}

/// Binds `addr` (port 0 picks a free one) and returns the bound address and the serving task,
/// which stops gracefully when `shutdown` is cancelled.
pub async fn serve(
    router: Router,
    addr: SocketAddr,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        // Peer addresses for per-client limits (the web API's rate limit).
        axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    });
    Ok((bound, task))
}

/// The one error an HTTP API answers with: a status and a message meant for the caller, as
/// `{"error": "..."}`. An internal failure (database, broker, I/O) is logged in full with a
/// reference and answered with that reference only: internals never reach a client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    internal: Option<String>,
}

impl ApiError {
    /// A refusal the caller can act on (bad input, not found, too large, ...).
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), internal: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// A failure of ours: 500, its detail only in the log.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::hidden(StatusCode::INTERNAL_SERVER_ERROR, "internal error", detail)
    }

    /// A dependency is away (the broker, the database): 503 with `message`, the detail in the
    /// log; the caller may retry.
    pub fn unavailable(message: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        Self::hidden(StatusCode::SERVICE_UNAVAILABLE, message, detail)
    }

    fn hidden(status: StatusCode, message: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        Self { status, message: message.into(), internal: Some(detail.to_string()) }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self.internal {
            None => (self.status, Json(serde_json::json!({ "error": self.message }))).into_response(),
            Some(detail) => {
                let reference = uuid::Uuid::new_v4().to_string();
                tracing::error!(status = %self.status, %reference, error = %detail, "{}", self.message);
                let message = format!("{} (reference {reference} in the service's log)", self.message);
                (self.status, Json(serde_json::json!({ "error": message, "reference": reference }))).into_response()
            }
        }
    }
}

#[cfg(test)]
mod api_error_tests {
    use super::*;

    async fn body(e: ApiError) -> (StatusCode, String) {
        let response = e.into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap_or_default();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn internal_detail_never_reaches_the_client() {
        let (status, text) = body(ApiError::internal("pool timed out while connecting to postgres://user:secret@db")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(text.contains("internal error") && text.contains("reference"), "{text}");
        assert!(!text.contains("secret") && !text.contains("postgres"), "{text}");
        let (status, text) = body(ApiError::unavailable("the contact store cannot take writes now; retry", "KafkaError (Message production error: MessageTimedOut)")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(text.contains("retry") && !text.contains("Kafka"), "{text}");
        let (status, text) = body(ApiError::not_found("no contact c1")).await;
        assert_eq!((status, text.as_str()), (StatusCode::NOT_FOUND, r#"{"error":"no contact c1"}"#));
    }
}

#[cfg(test)]
mod client_address_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::routing::get;

    fn forwarded(value: &str) -> axum::http::HeaderMap {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("x-forwarded-for", value.parse().unwrap());
        headers
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let (proxy, stranger) = ("10.0.0.5".parse().unwrap(), "203.0.113.9".parse().unwrap());
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client_ip(stranger, &forwarded("198.51.100.1"), &trusted), stranger, "a stranger cannot claim another address");
        assert_eq!(client_ip(proxy, &forwarded("198.51.100.1"), &trusted), ip("198.51.100.1"));
        assert_eq!(client_ip(proxy, &forwarded("1.2.3.4, 198.51.100.1, 10.0.0.9"), &trusted), ip("198.51.100.1"), "what the client wrote first is not believed");
        assert_eq!(client_ip(proxy, &forwarded("garbage"), &trusted), proxy);
        assert_eq!(client_ip(proxy, &axum::http::HeaderMap::new(), &trusted), proxy);
        assert_eq!(client_ip(ip("::ffff:10.0.0.5"), &forwarded("198.51.100.1"), &trusted), ip("198.51.100.1"));
        assert_eq!(client_ip(proxy, &forwarded("198.51.100.1"), &[]), proxy, "no trusted proxies: the header is ignored");
    }

    #[test]
    fn https_is_believed_only_from_a_trusted_proxy() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proto = |value: &str| {
            let mut headers = axum::http::HeaderMap::new();
            headers.insert("x-forwarded-proto", value.parse().unwrap());
            headers
        };
        let (proxy, stranger): (IpAddr, IpAddr) = ("10.0.0.5".parse().unwrap(), "203.0.113.9".parse().unwrap());
        assert!(forwarded_https(proxy, &proto("https"), &trusted));
        assert!(forwarded_https(proxy, &proto("HTTPS, http"), &trusted));
        assert!(!forwarded_https(proxy, &proto("http"), &trusted));
        assert!(!forwarded_https(stranger, &proto("https"), &trusted), "anyone can send the header");
        assert!(!forwarded_https(proxy, &axum::http::HeaderMap::new(), &trusted));
    }

    /// Two clients behind one trusted proxy have a limit each; a stranger's forged header
    /// does not give it a fresh one.
    #[tokio::test]
    async fn the_rate_limit_counts_the_forwarded_client_behind_a_trusted_proxy() {
        use tower::ServiceExt as _;
        let limits = crate::config::WebApiSettings { rate_per_minute: 1, rate_burst: 1, ..Default::default() };
        let http = crate::config::HttpSettings { trusted_proxies: vec!["10.0.0.5".into()], ..Default::default() };
        let router = rate_limited(Router::new().route("/", get(|| async { "ok" })), &limits, &http).unwrap();
        let call = |peer: &str, forwarded_for: Option<&str>| {
            let router = router.clone();
            let peer: SocketAddr = format!("{peer}:4000").parse().unwrap();
            let mut request = axum::http::Request::builder().uri("/");
            if let Some(f) = forwarded_for {
                request = request.header("x-forwarded-for", f);
            }
            let mut request = request.body(axum::body::Body::empty()).unwrap();
            request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            async move { router.oneshot(request).await.unwrap().status().as_u16() }
        };
        assert_eq!(call("10.0.0.5", Some("198.51.100.1")).await, 200);
        assert_eq!(call("10.0.0.5", Some("198.51.100.1")).await, 429);
        assert_eq!(call("10.0.0.5", Some("198.51.100.2")).await, 200, "another client behind the proxy");
        assert_eq!(call("203.0.113.9", Some("198.51.100.3")).await, 200);
        assert_eq!(call("203.0.113.9", Some("198.51.100.4")).await, 429, "a forged header is not a new client");
    }
}

/// Every refusal as `{"error": "..."}`: axum's extractors answer a bad path, query, body or
/// content type with a plain-text 4xx; this rewrites those into the JSON body every handler
/// uses, so each API's OpenAPI document can promise one error shape (schemathesis holds it to
/// that). Applied by the binary to both listeners.
pub fn json_errors(router: Router) -> Router {
    router.layer(axum::middleware::map_response(json_error_body))
}

async fn json_error_body(response: Response) -> Response {
    let plain = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !(response.status().is_client_error() && plain) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => parts.status.canonical_reason().unwrap_or("refused").to_owned(),
    };
    let mut headers = parts.headers;
    headers.remove(axum::http::header::CONTENT_TYPE);
    headers.remove(axum::http::header::CONTENT_LENGTH);
    let mut json = (parts.status, Json(serde_json::json!({ "error": text }))).into_response();
    for (name, value) in &headers {
        json.headers_mut().entry(name).or_insert(value.clone());
    }
    json
}

#[cfg(test)]
mod json_error_tests {
    #![allow(clippy::unwrap_used)]
    use tower::ServiceExt as _;

    use super::*;

    #[tokio::test]
    async fn an_extractors_plain_text_refusal_becomes_json() {
        #[derive(serde::Deserialize)]
        struct Q {
            #[allow(dead_code)]
            limit: u8,
        }
        let app = json_errors(Router::new().route("/x", axum::routing::get(|_: axum::extract::Query<Q>| async { "fine" })));
        let response = app.clone().oneshot(axum::http::Request::get("/x?limit=1000").body(axum::body::Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()["content-type"], "application/json");
        let body: serde_json::Value = serde_json::from_slice(&axum::body::to_bytes(response.into_body(), 4096).await.unwrap()).unwrap();
        assert!(body["error"].as_str().unwrap().contains("limit"), "{body}");
        let fine = app.oneshot(axum::http::Request::get("/x?limit=1").body(axum::body::Body::empty()).unwrap()).await.unwrap();
        assert_eq!(axum::body::to_bytes(fine.into_body(), 64).await.unwrap(), "fine", "a text/plain 200 is left alone");
    }
}
