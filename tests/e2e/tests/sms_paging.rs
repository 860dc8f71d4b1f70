//! SMS in paging mode (issue 8) on the real broker, with the SMS server, router, desk and web
//! API as processes, and a Twilio-compatible gateway peer on loopback: webhooks are signed
//! with Twilio's own Python library, and a small REST server in this test takes our sends
//! (checking HTTP Basic auth) and answers as Twilio's Messages API does.
//!
//! An inbound SMS becomes an interaction, once even when delivered twice; a bad signature is
//! 403; an invalid sender number is 400 with the reason and parked on the dead-letter topic.
//! Ann answers on the desk: the reply goes to the sender through the gateway, is recorded as
//! sent (gateway id, GSM-7, one segment), and the signed delivery receipt lands on it. An
//! application pages a customer through the web API with a long Cyrillic text: UCS-2, three
//! segments. A number the gateway refuses comes back to the send-failed queue with the reason.
//! An MMS with a SMIL part is routed to Ann and its parts are in UCS in presentation order (not
//! message order); an oversized MMS, one with malformed SMIL and ones whose media is not on the
//! gateway's https host (plain http, another host, a redirect elsewhere) are refused and
//! parked. The gateway peer serves https with a certificate of a CA the test makes. The
//! workflow's `respond` step acknowledges the SMS with a standard response from UCS, filled.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Path as UrlPath;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use desk::users::Role;
use e2e::desk::{DeskClient, wait_ready, write_users};
use e2e::sms::{SID, Sent, TOKEN, post_webhook, sign};
use e2e::{TestEnv, free_port};
use serde_json::{Value, json};

const WORKFLOW: &str = r#"
offer_timeout_s = 60
[[queue]]
name = "sms-inbound"
steps = [
  { type = "respond", standard_response = "sms-ack", media = ["sms"], queue = "outbound-send" },
  { type = "route" },
]
[[queue]]
name = "outbound"
steps = [{ type = "move_to", queue = "outbound-send" }]
"#;

const SMIL: &str = r#"<?xml version="1.0"?>
<!DOCTYPE smil PUBLIC "-//W3C//DTD SMIL 2.0//EN" "http://www.w3.org/2001/SMIL20/SMIL20.dtd">
<smil><head><layout><region id="Image"/><region id="Text"/></layout></head>
<body><par dur="5s"><img src="cid:photo1" region="Image"/><text src="caption.txt" region="Text"/></par><par dur="5s"><img src="photo2.jpg" region="Image"/></par></body></smil>"#;

/// The gateway's media store: `(content type, header, header value, bytes)` by name.
fn media(name: &str) -> Option<(&'static str, &'static str, String, Vec<u8>)> {
    Some(match name {
        "photo2" => ("image/jpeg", "content-location", "photo2.jpg".into(), vec![0xFF, 0xD8, 2, 2, 2]),
        "smil" => ("application/smil", "content-location", "pres.smil".into(), SMIL.as_bytes().to_vec()),
        "caption" => ("text/plain", "content-disposition", "inline; filename=\"caption.txt\"".into(), b"Look at the dent!".to_vec()),
        "photo1" => ("image/jpeg", "content-id", "<photo1>".into(), vec![0xFF, 0xD8, 1, 1, 1]),
        "badsmil" => ("application/smil", "content-location", "bad.smil".into(), b"<smil><body><img src=\"cid:nothing\"/></body></smil>".to_vec()),
        "huge" => ("video/mp4", "content-location", "huge.mp4".into(), vec![0; 300_000]),
        _ => return None,
    })
}

/// Every host name media was asked from, as the `Host` header said it.
type AskedHosts = Arc<std::sync::Mutex<Vec<String>>>;

async fn media_api(axum::extract::State(asked): axum::extract::State<AskedHosts>, headers: axum::http::HeaderMap, UrlPath(name): UrlPath<String>) -> axum::response::Response {
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or_default().to_owned();
    let port = host.rsplit_once(':').map(|(_, p)| p.to_owned()).unwrap_or_default();
    asked.lock().unwrap().push(host);
    if name == "elsewhere" {
        // The same server under another name: off the gateway's media hosts.
        return axum::response::Redirect::temporary(&format!("https://localhost:{port}/media/photo1")).into_response();
    }
    match media(&name) {
        Some((content_type, header, value, bytes)) => ([("content-type", content_type.to_owned()), (header, value)], bytes).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}


#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sms_and_mms_in_and_out_through_a_twilio_compatible_gateway() {
    let env = TestEnv::start().await.unwrap();
    let (stop_server, server) = env.spawn_interaction_server();
    let dir = env.dir.path().to_owned();
    std::fs::write(dir.join("workflow.toml"), WORKFLOW).unwrap();
    let capacity: BTreeMap<String, i32> = [("sms".to_owned(), 2), ("mms".to_owned(), 1)].into();
    write_users(&dir.join("desk-users.toml"), vec![("ann".into(), Role::Agent, BTreeMap::new(), capacity), ("sue".into(), Role::Supervisor, BTreeMap::new(), BTreeMap::new())]);

    // The gateway's REST side.
    let sent: Sent = Arc::default();
    let asked: AskedHosts = Arc::default();
    let tls = e2e::tls::TestTls::generate(&dir).unwrap();
    let media_routes = axum::Router::new().route("/media/{name}", axum::routing::get(media_api)).with_state(asked.clone());
    let api_port = e2e::sms::start_https(sent.clone(), media_routes, &tls).await;

    let sms_port = free_port();
    let mut settings = env.settings(&dir.join("data"));
    settings.router.workflow = Some(dir.join("workflow.toml"));
    settings.router.tick_ms = 50;
    settings.desk.users_file = Some(dir.join("desk-users.toml"));
    settings.sms.account_sid = SID.into();
    settings.sms.auth_token = TOKEN.into();
    settings.sms.api_base = format!("https://127.0.0.1:{api_port}");
    settings.sms.ca_file = Some(tls.ca_file.clone());
    settings.sms.from_number = "+441234567890".into();
    settings.sms.public_url = Some(format!("http://127.0.0.1:{sms_port}"));
    settings.sms.max_attempts = 2;
    settings.sms.retry_initial_ms = 200;
    settings.sms.mms_max_bytes = 100_000;
    let ucs_port = free_port();
    settings.sms.ucs_url = Some(format!("http://127.0.0.1:{ucs_port}"));
    let services = env.spawn_services(&mut settings, &[("ucs", ucs_port), ("router", free_port()), ("desk", free_port()), ("sms-server", sms_port), ("web-api", free_port())]);
    let http = e2e::http();
    wait_ready(&http, &services.url("ucs", "/health/ready/ucs")).await;
    wait_ready(&http, &services.url("router", "/health/ready/router")).await;
    wait_ready(&http, &services.url("desk", "/health/ready/desk")).await;
    wait_ready(&http, &services.url("sms-server", "/health/live")).await;
    wait_ready(&http, &services.url("web-api", "/health/live")).await;
    let desk = DeskClient::new(&http, services.port("desk"));
    let (ann, sue) = (desk.login("ann").await, desk.login("sue").await);
    let (s, b) = desk.post(&ann, "/v1/desk/state", json!({"state": "ready"})).await;
    assert_eq!(s, 200, "{b}");
    // The workflow acknowledges each SMS with this standard response, sent by the SMS server.
    let ack = json!({"name": "sms-ack", "media": ["sms"], "body_text": "Thanks, we have your message (ref {{interaction_id}}). An agent will text you back."});
    let r = http.post(format!("http://127.0.0.1:{ucs_port}/v1/standard-responses")).json(&ack).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    e2e::poll_json(&http, &format!("http://127.0.0.1:{ucs_port}/v1/standard-responses?media=sms"), Duration::from_secs(30), |a| a.as_array().is_some_and(|a| a.len() == 1)).await;

    // Inbound: signed as Twilio signs it; twice (a redelivery) is one interaction.
    let inbound = services.url("sms-server", "/v1/sms/twilio/inbound");
    let params = [("MessageSid", "SM11111111111111111111111111111111"), ("AccountSid", SID), ("From", "+447911123456"), ("To", "+441234567890"), ("Body", "Where is my parcel?"), ("NumMedia", "0")];
    let signature = sign(&inbound, &params);
    for _ in 0..2 {
        let (s, body) = post_webhook(&http, &inbound, &params, &signature).await;
        assert_eq!(s, 200, "{body}");
        assert!(body.contains("<Response>"), "TwiML: {body}");
    }
    // Refusals: a changed body under the old signature; an invalid sender number.
    let mut tampered = params;
    tampered[4] = ("Body", "Where is my refund?");
    let (s, body) = post_webhook(&http, &inbound, &tampered, &signature).await;
    assert!(s == 403 && body.contains("does not match"), "{s} {body}");
    let bad_number = [("MessageSid", "SM22222222222222222222222222222222"), ("From", "12"), ("Body", "hi")];
    let (s, body) = post_webhook(&http, &inbound, &bad_number, &sign(&inbound, &bad_number)).await;
    assert!(s == 400 && body.contains("not a"), "{s} {body}");
    env.wait_for("the bad SMS parked", Duration::from_secs(30), || {
        env.read_all(&env.topic("deadletter")).iter().any(|m| e2e::header(m, "dlq.reason").is_some_and(|r| r.contains("\"12\"")))
    })
    .await;

    // Routed to Ann; one interaction for the two deliveries.
    let offered = desk.get_until(&sue, "/v1/desk/queues/sms-inbound", Duration::from_secs(60), |q| q["interactions"].as_array().is_some_and(|a| a.iter().any(|i| i["status"] == "offered"))).await;
    let interactions = offered["interactions"].as_array().unwrap();
    assert_eq!(interactions.len(), 1, "{offered}");
    let id = interactions[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(interactions[0]["properties"]["from"], "+447911123456");
    let path = format!("/v1/desk/interactions/{id}");
    let (s, b) = desk.post(&ann, &format!("{path}/accept"), json!({})).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = desk.post(&ann, &format!("{path}/release"), json!({"text": "It arrives tomorrow before noon."})).await;
    assert_eq!(s, 200, "{b}");
    let reply = desk.get_until(&ann, &path, Duration::from_secs(30), |i| i["properties"]["reply_interaction"].is_string()).await["properties"]["reply_interaction"].as_str().unwrap().to_owned();
    let reply_path = format!("/v1/desk/interactions/{reply}");
    let done = desk.get_until(&sue, &reply_path, Duration::from_secs(60), |i| i["status"] == "stopped").await;
    assert_eq!((done["properties"]["sms_encoding"].as_str(), done["properties"]["sms_segments"].as_str()), (Some("GSM-7"), Some("1")), "{done}");
    let first = sent.lock().unwrap().iter().find(|m| m["Body"] == "It arrives tomorrow before noon.").cloned().unwrap();
    assert_eq!((first["To"].as_str(), first["From"].as_str()), ("+447911123456", "+441234567890"));
    // The strategy's acknowledgement went to the sender too, filled, once for the two deliveries.
    let is_ack = |m: &BTreeMap<String, String>| m["Body"].starts_with("Thanks, we have");
    env.wait_for("the acknowledgement sent", Duration::from_secs(30), || sent.lock().unwrap().iter().any(is_ack)).await;
    let acks: Vec<BTreeMap<String, String>> = sent.lock().unwrap().iter().filter(|m| is_ack(m)).cloned().collect();
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!((acks[0]["To"].as_str(), acks[0]["Body"].clone()), ("+447911123456", format!("Thanks, we have your message (ref {id}). An agent will text you back.")));

    // The gateway's signed delivery receipt lands on the sent interaction.
    let callback = first["StatusCallback"].clone();
    let receipt = [("MessageSid", done["properties"]["gateway_message_id"].as_str().unwrap()), ("MessageStatus", "delivered"), ("AccountSid", SID)];
    let (s, body) = post_webhook(&http, &callback, &receipt, &sign(&callback, &receipt)).await;
    assert_eq!(s, 204, "{body}");
    desk.get_until(&sue, &reply_path, Duration::from_secs(30), |i| i["properties"]["delivery_status"] == "delivered").await;

    // Paging by an application through the web API: a long Cyrillic text is UCS-2, 3 segments.
    let text = "Ваша посылка прибудет завтра до полудня. ".repeat(4);
    let page = json!({"media_type": "sms", "queue": "outbound-send", "properties": {"to": "+447911123457", "reply_text": text}});
    let r: Value = http.post(services.url("web-api", "/v1/interactions")).json(&page).send().await.unwrap().json().await.unwrap();
    let paged = desk.get_until(&sue, &format!("/v1/desk/interactions/{}", r["interaction_id"].as_str().unwrap()), Duration::from_secs(60), |i| i["status"] == "stopped").await;
    assert_eq!((paged["properties"]["sms_encoding"].as_str(), paged["properties"]["sms_segments"].as_str()), (Some("UCS-2"), Some("3")), "{paged}");
    assert_eq!(sent.lock().unwrap().last().unwrap()["Body"], text, "sent whole; the gateway splits it");

    // A recipient the gateway refuses: retried, then back in send-failed with its reason.
    let page = json!({"media_type": "sms", "queue": "outbound-send", "properties": {"to": "+12125550143", "reply_text": "Your appointment is at 10:00."}});
    let r: Value = http.post(services.url("web-api", "/v1/interactions")).json(&page).send().await.unwrap().json().await.unwrap();
    let failed = desk.get_until(&sue, &format!("/v1/desk/interactions/{}", r["interaction_id"].as_str().unwrap()), Duration::from_secs(60), |i| i["queue"] == "send-failed").await;
    assert!(failed["properties"]["send_error"].as_str().unwrap().contains("unsubscribed recipient"), "{failed}");

    // An MMS: parts listed in message order, shown in the SMIL's order.
    let media_url = |name: &str| format!("https://127.0.0.1:{api_port}/media/{name}");
    let (u0, u1, u2, u3) = (media_url("photo2"), media_url("smil"), media_url("caption"), media_url("photo1"));
    let mms = [
        ("MessageSid", "MM33333333333333333333333333333333"),
        ("From", "+447911123456"),
        ("To", "+441234567890"),
        ("Body", "My parcel arrived like this"),
        ("NumMedia", "4"),
        ("MediaUrl0", u0.as_str()),
        ("MediaContentType0", "image/jpeg"),
        ("MediaUrl1", u1.as_str()),
        ("MediaContentType1", "application/smil"),
        ("MediaUrl2", u2.as_str()),
        ("MediaContentType2", "text/plain"),
        ("MediaUrl3", u3.as_str()),
        ("MediaContentType3", "image/jpeg"),
    ];
    let (s, body) = post_webhook(&http, &inbound, &mms, &sign(&inbound, &mms)).await;
    assert_eq!(s, 200, "{body}");
    let queue = desk.get_until(&sue, "/v1/desk/queues/sms-inbound", Duration::from_secs(60), |q| q["interactions"].as_array().is_some_and(|a| a.iter().any(|i| i["media_type"] == "mms"))).await;
    let mms_id = queue["interactions"].as_array().unwrap().iter().find(|i| i["media_type"] == "mms").unwrap()["id"].as_str().unwrap().to_owned();
    // It reaches Ann like any interaction; what she opens is its parts in UCS.
    let mms_path = format!("/v1/desk/interactions/{mms_id}");
    desk.get_until(&sue, &mms_path, Duration::from_secs(60), |i| i["status"] == "offered" && i["offer"]["agent_id"] == "ann").await;
    let (s, b) = desk.post(&ann, &format!("{mms_path}/accept"), json!({})).await;
    assert_eq!(s, 200, "{b}");
    let assigned = desk.get_until(&ann, &mms_path, Duration::from_secs(30), |i| i["status"] == "assigned").await;
    assert_eq!((assigned["properties"]["mms_parts"].as_str(), assigned["properties"]["mms_slides"].as_str()), (Some("3"), Some("2")), "{assigned}");
    let detail = e2e::poll_json(&http, &format!("http://127.0.0.1:{ucs_port}/v1/interactions/{mms_id}/detail"), Duration::from_secs(60), |d| d["contents"].as_array().is_some_and(|c| c.len() == 5)).await;
    let mut contents: Vec<&Value> = detail["contents"].as_array().unwrap().iter().collect();
    contents.sort_by_key(|c| c["part_index"].as_i64());
    let shown: Vec<(&str, Option<&str>)> = contents.iter().map(|c| (c["mime_type"].as_str().unwrap(), c["filename"].as_str())).collect();
    assert_eq!(
        shown,
        [("text/plain", None), ("image/jpeg", None), ("text/plain", Some("caption.txt")), ("image/jpeg", Some("photo2.jpg")), ("application/smil", Some("pres.smil"))],
        "body, then the SMIL's order (photo1, caption, photo2), then the SMIL: {detail}"
    );
    assert_eq!(contents[2]["text"], "Look at the dent!");
    let photo1 = http.get(format!("http://127.0.0.1:{ucs_port}/v1/blobs/{}", contents[1]["blob_ref"].as_str().unwrap())).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(photo1.as_ref(), [0xFF, 0xD8, 1, 1, 1], "stored as sent, not decoded");

    // Refused and parked, with reasons: malformed SMIL; too large.
    let (bad_url, huge_url) = (media_url("badsmil"), media_url("huge"));
    // And media from anywhere but the gateway (SSRF): plain http, another host, a redirect
    // to another host. The gateway's credentials never go there.
    let plain = format!("http://127.0.0.1:{api_port}/media/photo1");
    let other_host = format!("https://localhost:{api_port}/media/photo1");
    let redirected = media_url("elsewhere");
    let asked_before = asked.lock().unwrap().len();
    for (sid, url, why) in [
        ("MM44444444444444444444444444444444", bad_url.as_str(), "SMIL part is not valid"),
        ("MM55555555555555555555555555555555", huge_url.as_str(), "over 100000 bytes"),
        ("MM66666666666666666666666666666666", plain.as_str(), "is not https"),
        ("MM77777777777777777777777777777777", other_host.as_str(), "not on the gateway's media hosts"),
        ("MM88888888888888888888888888888888", redirected.as_str(), "redirected off the gateway"),
    ] {
        let refused = [("MessageSid", sid), ("From", "+447911123456"), ("NumMedia", "1"), ("MediaUrl0", url), ("MediaContentType0", "application/smil")];
        let (s, body) = post_webhook(&http, &inbound, &refused, &sign(&inbound, &refused)).await;
        assert!(s == 400 && body.contains(why), "{s} {body}");
        env.wait_for("the refused MMS parked", Duration::from_secs(30), || {
            env.read_all(&env.topic("deadletter")).iter().any(|m| e2e::header(m, "dlq.reason").is_some_and(|r| r.contains(why)))
        })
        .await;
    }

    let asked: Vec<String> = asked.lock().unwrap()[asked_before..].to_vec();
    assert!(asked.iter().all(|h| h.starts_with("127.0.0.1:")), "media asked of another host: {asked:?}");
    assert!(asked.iter().any(|h| h.starts_with("127.0.0.1:")), "the redirecting URL itself was asked: {asked:?}");

    drop(services);
    stop_server.cancel();
    server.await.unwrap().unwrap();
}
