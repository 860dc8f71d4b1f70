//! The web pages, as files embedded in the binary and served as they are: no front-end build,
//! no server-side templating, no JavaScript dependency. Each page is HTML with a little
//! JavaScript that calls the same HTTP APIs as any other client:
//!
//! - staff ([`staff_routes`], mounted with the desk): `/ui/desk` (agent desktop) and
//!   `/ui/supervisor` (dashboard), over `/v1/desk/*`, `/v1/stats/*`, UCS and the chat server;
//! - customers ([`customer_routes`], mounted with the web API): `/ui/contact` (the contact
//!   form), `/ui/chat` (a page with the chat widget) and `/ui/chat-widget.js`, which a site
//!   includes with one `<script>` tag.
//!
//! Files live in `services/web-ui/assets/`; `GET /ui/assets/{name}` ([`asset_routes`]) serves
//! the shared ones.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use runtime::routes::{Audience::{Public, Staff}, Policy::Open, Routes, Table};

/// `(name, content type, body)` of every embedded file.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.css", "text/css; charset=utf-8", include_str!("../assets/app.css")),
    ("common.js", "text/javascript; charset=utf-8", include_str!("../assets/common.js")),
    ("desk.js", "text/javascript; charset=utf-8", include_str!("../assets/desk.js")),
    ("supervisor.js", "text/javascript; charset=utf-8", include_str!("../assets/supervisor.js")),
    ("chart.js", "text/javascript; charset=utf-8", include_str!("../assets/chart.js")),
    ("contact.js", "text/javascript; charset=utf-8", include_str!("../assets/contact.js")),
];

const DESK: &str = include_str!("../assets/desk.html");
const SUPERVISOR: &str = include_str!("../assets/supervisor.html");
const CONTACT: &str = include_str!("../assets/contact.html");
const CHAT: &str = include_str!("../assets/chat.html");
const WIDGET: &str = include_str!("../assets/chat-widget.js");
const INDEX: &str = include_str!("../assets/index.html");

fn file(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Small files, changed only by a new release: revalidate rather than cache blindly.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

fn page(body: &'static str) -> Response {
    let mut response = file("text/html; charset=utf-8", body);
    // Staff and customer pages load nothing from elsewhere; a site embeds the widget script,
    // never these pages, so they may not be framed.
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self' ws: wss:; frame-ancestors 'none'"),
    );
    response
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => file(content_type, body),
        None => (StatusCode::NOT_FOUND, format!("no asset {name}")).into_response(),
    }
}

/// The agent desktop and the supervisor dashboard, and the files they share.
/// The pages hold no data (they log in and call the APIs), so they are open; they are served
/// on the staff listener only.
pub fn staff_routes() -> Table {
    Routes::new()
        .get("/ui", Staff, Open, || async { Redirect::to("/ui/") })
        .get("/ui/", Staff, Open, || async { page(INDEX) })
        .get("/ui/desk", Staff, Open, || async { page(DESK) })
        .get("/ui/supervisor", Staff, Open, || async { page(SUPERVISOR) })
        .with_state(())
}

/// The files both kinds of page use (`/ui/assets/{name}`): mounted once per process.
pub fn asset_routes() -> Table {
    Routes::new().get("/ui/assets/{name}", Public, Open, asset).with_state(())
}

/// The contact form, the chat page and the embeddable widget.
pub fn customer_routes() -> Table {
    Routes::new()
        .get("/ui/contact", Public, Open, || async { page(CONTACT) })
        .get("/ui/chat", Public, Open, || async { page(CHAT) })
        // Served to other sites' pages: any origin may load it.
        .get("/ui/chat-widget.js", Public, Open, || async {
            let mut response = file("text/javascript; charset=utf-8", WIDGET);
            response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
            response
        })
        .with_state(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_names_only_assets_that_exist() {
        for html in [DESK, SUPERVISOR, CONTACT, CHAT, INDEX] {
            for (at, _) in html.match_indices("/ui/assets/") {
                let name: String = html[at + 11..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-').collect();
                assert!(ASSETS.iter().any(|(n, _, _)| *n == name), "missing asset {name}");
            }
        }
    }
}
