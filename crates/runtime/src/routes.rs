//! The route table: every HTTP route with its audience and the credential it needs.
//!
//! axum cannot list a router's routes, so the table is the source: a service declares each
//! route here (method, path, audience, policy, handler) and the routers are built from it, the
//! staff listener's with every route and the public listener's with the public ones only. The
//! policy is enforced by a layer on the route itself, before its handler runs; who the caller
//! is, the process's [`Gatekeeper`] says (the binary gives one to the router as an extension;
//! without it a guarded route fails closed). The authorization matrix test walks the same
//! table (`switchboard routes`).

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{Method, StatusCode, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use axum::{Json, Router};
use serde::Serialize;

/// Who may reach a route at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// Customers and gateways, from the internet: served on `[http] public_listen` (and on the
    /// staff listener too, for the agent desktop's chat socket and internal callers).
    Public,
    /// Staff and services: served on `[http] listen` only.
    Staff,
}

/// The credential a route needs, checked before its handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Anyone: health, pages, the login itself, API descriptions.
    Open,
    /// A customer: anyone, limited by rate; what the customer holds (a chat's token) and may
    /// ask for the handler checks.
    Customer,
    /// A messaging gateway: anyone; the handler checks the gateway's signature.
    Gateway,
    /// A desk session of any role, or a service key with scope `read`.
    Agent,
    /// A supervisor's or admin's desk session, or a service key with scope `manage`.
    Supervisor,
    /// An admin's desk session.
    Admin,
    /// A service key with scope `write`: one process writing another's store (UCS contents,
    /// contact identification, blobs), never a person.
    Service,
}

impl Policy {
    /// Whether the route checks nothing before its handler.
    pub fn is_open(self) -> bool {
        matches!(self, Policy::Open | Policy::Customer | Policy::Gateway)
    }
}

/// A role a desk session carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StaffRole {
    Agent,
    Supervisor,
    Admin,
}

/// Who is calling, as the [`Gatekeeper`] found out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    Staff { user: String, role: StaffRole },
    Service { name: String, scopes: Vec<String> },
}

/// Why a caller is not let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 401: no credential, or one that is not (or no longer) valid.
    Unauthenticated(String),
    /// 403: a valid credential that does not reach this route.
    Forbidden(String),
}

impl Caller {
    /// Whether this caller may use a route of `policy`, and why not.
    pub fn may(&self, policy: Policy) -> Result<(), Refusal> {
        if policy.is_open() {
            return Ok(());
        }
        let (role_needed, scope_needed) = match policy {
            Policy::Agent => (Some(StaffRole::Agent), Some("read")),
            Policy::Supervisor => (Some(StaffRole::Supervisor), Some("manage")),
            Policy::Admin => (Some(StaffRole::Admin), None),
            Policy::Service => (None, Some("write")),
            Policy::Open | Policy::Customer | Policy::Gateway => (None, None),
        };
        match self {
            Caller::Anonymous => Err(Refusal::Unauthenticated(
                "this route needs a valid credential: a desk session (Authorization: Bearer <token> from POST /v1/desk/login, or its cookie) or a service key".into(),
            )),
            Caller::Staff { role, user } => match role_needed {
                Some(needed) if *role >= needed => Ok(()),
                Some(needed) => Err(Refusal::Forbidden(format!("{user} is {}; this needs {}", role_name(*role), role_name(needed)))),
                None => Err(Refusal::Forbidden("only a service key may use this route".into())),
            },
            Caller::Service { name, scopes } => match scope_needed {
                Some(scope) if scopes.iter().any(|s| s == scope) => Ok(()),
                Some(scope) => Err(Refusal::Forbidden(format!("service key {name:?} lacks scope {scope:?}"))),
                None => Err(Refusal::Forbidden("only an admin's desk session may use this route".into())),
            },
        }
    }
}

fn role_name(role: StaffRole) -> &'static str {
    match role {
        StaffRole::Agent => "an agent",
        StaffRole::Supervisor => "a supervisor",
        StaffRole::Admin => "an admin",
    }
}

/// The cookie a desk login sets: `HttpOnly` (no script reads it), `SameSite=Strict`.
pub const SESSION_COOKIE: &str = "switchboard_session";

/// The credential a request presents: `Authorization: Bearer <token>`, or for a read (GET,
/// HEAD: an event stream, which cannot set headers) the session cookie. A write by cookie
/// alone is never believed, so another site cannot forge one (CSRF).
pub fn presented_token(request: &Parts) -> Option<String> {
    let bearer = request.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(|t| t.trim().to_owned());
    if bearer.is_some() {
        return bearer;
    }
    if request.method != Method::GET && request.method != Method::HEAD {
        return None;
    }
    session_cookie(&request.headers)
}

/// The desk session cookie's value in `headers`, if any (a read's credential, or a WebSocket
/// handshake's: a browser cannot set headers on either).
pub fn session_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(SESSION_COOKIE).and_then(|rest| rest.strip_prefix('=')).map(str::to_owned))
}

/// Finds out who is calling from a request's head (its `Authorization` header, its session
/// cookie). Implemented by the binary with the desk's session keys and the service keys.
pub trait Gatekeeper: Send + Sync + 'static {
    /// Async: a desk session is checked against the staff directory once it has read
    /// everything written to `staff.events` before the request (a logout elsewhere counts).
    fn caller<'a>(&'a self, request: &'a Parts) -> futures::future::BoxFuture<'a, Caller>;

    /// The caller a bare token stands for (a WebSocket's first frame), as [`Self::caller`]
    /// would find it in a header.
    fn token_caller<'a>(&'a self, token: &'a str) -> futures::future::BoxFuture<'a, Caller>;
}

/// The process's gatekeeper, as a request extension.
#[derive(Clone)]
pub struct Gate(pub Arc<dyn Gatekeeper>);

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteSpec {
    #[serde(serialize_with = "method_name")]
    pub method: Method,
    pub path: &'static str,
    pub audience: Audience,
    pub policy: Policy,
}

fn method_name<S: serde::Serializer>(method: &Method, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(method.as_str())
}

/// A service's routes, being declared, on its state `S`.
pub struct Routes<S> {
    specs: Vec<RouteSpec>,
    all: Router<S>,
    public: Router<S>,
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    pub fn new() -> Self {
        Self { specs: Vec::new(), all: Router::new(), public: Router::new() }
    }

    /// Declares `method path` for `audience` under `policy`, answered by `handler`.
    #[must_use]
    pub fn route<H, T>(mut self, method: Method, path: &'static str, audience: Audience, policy: Policy, handler: H) -> Self
    where
        H: axum::handler::Handler<T, S>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).unwrap_or(MethodFilter::GET);
        let guarded: MethodRouter<S> = axum::routing::on(filter, handler).route_layer(axum::middleware::from_fn(move |request: Request, next: Next| guard(policy, request, next)));
        self.all = self.all.route(path, guarded.clone());
        if audience == Audience::Public {
            self.public = self.public.route(path, guarded);
        }
        self.specs.push(RouteSpec { method, path, audience, policy });
        self
    }

    pub fn get<H: axum::handler::Handler<T, S>, T: 'static>(self, path: &'static str, audience: Audience, policy: Policy, handler: H) -> Self {
        self.route(Method::GET, path, audience, policy, handler)
    }

    pub fn post<H: axum::handler::Handler<T, S>, T: 'static>(self, path: &'static str, audience: Audience, policy: Policy, handler: H) -> Self {
        self.route(Method::POST, path, audience, policy, handler)
    }

    pub fn patch<H: axum::handler::Handler<T, S>, T: 'static>(self, path: &'static str, audience: Audience, policy: Policy, handler: H) -> Self {
        self.route(Method::PATCH, path, audience, policy, handler)
    }

    pub fn delete<H: axum::handler::Handler<T, S>, T: 'static>(self, path: &'static str, audience: Audience, policy: Policy, handler: H) -> Self {
        self.route(Method::DELETE, path, audience, policy, handler)
    }

    /// The routes on their state: a [`Table`].
    pub fn with_state(self, state: S) -> Table {
        Table { specs: self.specs, all: self.all.with_state(state.clone()), public: self.public.with_state(state) }
    }
}

/// Routes ready to serve, with their table.
#[derive(Default)]
pub struct Table {
    specs: Vec<RouteSpec>,
    all: Router,
    public: Router,
}

impl Table {
    pub fn new() -> Self {
        Self::default()
    }

    #[must_use]
    pub fn merge(mut self, other: Table) -> Self {
        self.specs.extend(other.specs);
        self.all = self.all.merge(other.all);
        self.public = self.public.merge(other.public);
        self
    }

    /// The same routes with `wrap` applied to both routers (a rate limit, say).
    pub fn try_map<E>(self, wrap: impl Fn(Router) -> Result<Router, E>) -> Result<Self, E> {
        Ok(Self { specs: self.specs, all: wrap(self.all)?, public: wrap(self.public)? })
    }

    pub fn specs(&self) -> &[RouteSpec] {
        &self.specs
    }

    /// The staff listener's router (every route) and the public listener's (public routes).
    pub fn into_routers(self) -> (Router, Router) {
        (self.all, self.public)
    }
}

/// The layer of every route: who is calling, whether they may, and the caller as a request
/// extension for the handler.
async fn guard(policy: Policy, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let gate = parts.extensions.get::<Gate>().cloned();
    if policy.is_open() {
        // Open to anyone, but a handler may allow more to a staff or service caller (the web
        // API's submission): it finds the caller as an extension, `Anonymous` without a gate.
        let caller = match gate {
            Some(gate) => gate.0.caller(&parts).await,
            None => Caller::Anonymous,
        };
        parts.extensions.insert(caller);
        return next.run(Request::from_parts(parts, body)).await;
    }
    let Some(gate) = gate else {
        tracing::error!(path = %parts.uri.path(), "a guarded route is served without a gatekeeper; refusing");
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "this route is not available");
    };
    let caller = gate.0.caller(&parts).await;
    match caller.may(policy) {
        Ok(()) => {
            parts.extensions.insert(caller);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(Refusal::Unauthenticated(why)) => {
            let mut response = refuse(StatusCode::UNAUTHORIZED, &why);
            response.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
            response
        }
        // The route's policy named: a refusal by the table, not by the handler's own checks.
        Err(Refusal::Forbidden(why)) => (StatusCode::FORBIDDEN, Json(serde_json::json!({"error": why, "policy": policy}))).into_response(),
    }
}

/// `router` answering only requests whose `Host` (without its port) is one of `hosts`
/// (lowercase): a page on another name that resolves to this address (DNS rebinding) gets
/// `421` and nothing else.
pub fn host_checked(router: Router, hosts: Vec<String>) -> Router {
    let hosts = Arc::new(hosts);
    router.layer(axum::middleware::from_fn(move |request: Request, next: Next| {
        let hosts = hosts.clone();
        async move {
            let host = request.headers().get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).or_else(|| request.uri().host()).map(host_without_port);
            match host {
                Some(host) if hosts.contains(&host) => next.run(request).await,
                Some(host) => refuse(StatusCode::MISDIRECTED_REQUEST, &format!("this listener does not answer to host {host:?}; list it in [http] allowed_hosts")),
                None => refuse(StatusCode::MISDIRECTED_REQUEST, "a Host header is required"),
            }
        }
    }))
}

fn host_without_port(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    if host.starts_with('[') {
        return host.split_once(']').map_or(host.clone(), |(h, _)| format!("{h}]"));
    }
    host.rsplit_once(':').map_or(host.clone(), |(h, _)| h.to_owned())
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (status, Json(serde_json::json!({"error": why}))).into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn roles_and_scopes_reach_what_their_policy_allows() {
        let staff = |role| Caller::Staff { user: "ann".into(), role };
        let service = |scopes: &[&str]| Caller::Service { name: "email".into(), scopes: scopes.iter().map(|s| (*s).to_owned()).collect() };
        let cases = [
            (Caller::Anonymous, [true, false, false, false, false]),
            (staff(StaffRole::Agent), [true, true, false, false, false]),
            (staff(StaffRole::Supervisor), [true, true, true, false, false]),
            (staff(StaffRole::Admin), [true, true, true, true, false]),
            (service(&["read"]), [true, true, false, false, false]),
            (service(&["read", "manage", "write"]), [true, true, true, false, true]),
        ];
        for (caller, expected) in cases {
            let got: Vec<bool> = [Policy::Customer, Policy::Agent, Policy::Supervisor, Policy::Admin, Policy::Service].iter().map(|p| caller.may(*p).is_ok()).collect();
            assert_eq!(got, expected, "{caller:?}");
        }
        assert!(matches!(Caller::Anonymous.may(Policy::Agent), Err(Refusal::Unauthenticated(_))));
        assert!(matches!(staff(StaffRole::Agent).may(Policy::Supervisor), Err(Refusal::Forbidden(_))));
    }

    fn parts(method: Method, headers: &[(&str, &str)]) -> Parts {
        let mut request = axum::http::Request::builder().method(method).uri("/x");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn a_cookie_counts_for_reads_only_and_the_header_wins() {
        let cookie = ("cookie", "theme=dark; switchboard_session=abc; other=1");
        assert_eq!(presented_token(&parts(Method::GET, &[cookie])), Some("abc".into()));
        assert_eq!(presented_token(&parts(Method::POST, &[cookie])), None);
        assert_eq!(presented_token(&parts(Method::POST, &[cookie, ("authorization", "Bearer xyz")])), Some("xyz".into()));
        assert_eq!(presented_token(&parts(Method::GET, &[("cookie", "switchboard_sessionx=abc")])), None);
        assert_eq!(presented_token(&parts(Method::GET, &[])), None);
    }

    #[test]
    fn hosts_are_compared_without_ports() {
        assert_eq!(host_without_port("LocalHost:8080"), "localhost");
        assert_eq!(host_without_port("[::1]:8080"), "[::1]");
        assert_eq!(host_without_port("[::1]"), "[::1]");
        assert_eq!(host_without_port("127.0.0.1"), "127.0.0.1");
    }
}
