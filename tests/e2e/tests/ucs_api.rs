//! The UCS HTTP API on a real broker and PostgreSQL: concurrent find-or-create yields one
//! contact, merges, notes and contents, categories and standard responses CRUD, the
//! claim-check blob store with its size limit, interaction detail, and the OpenAPI document.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use contract::command::{CommandPayload, MediaType, Submit};
use e2e::{TestEnv, sql};
use runtime::commands::CommandClient;
use serde_json::{Value, json};

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Polls `path` until `check` holds (writes show once projected).
    async fn eventually(&self, path: &str, check: impl Fn(u16, &Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = self.get(path).await;
            if check(status, &body) {
                return body;
            }
            assert!(Instant::now() < deadline, "{path} never matched; last: {status} {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_contents_library_and_blobs() {
    let env = TestEnv::start().await.unwrap();
    let mut settings = env.settings(&env.dir.path().join("data"));
    settings.ucs.database_url = Some(sql::fresh_postgres("api").await);
    settings.ucs.blob_dir = Some(env.dir.path().join("blobs"));
    settings.ucs.max_blob_bytes = 64 * 1024;
    let (router, projector) = ucs::parts(&settings, &settings.ucs, &env.topics).await.unwrap();
    let health = runtime::health::Health::new();
    let status = projector.status.clone();
    health.register("ucs", move || ucs::readiness(&status));
    let router = router.merge(health.routes());
    let shutdown = runtime::CancellationToken::new();
    let addr = e2e::serve_table(router, env.dir.path(), shutdown.clone()).await;
    let token = shutdown.clone();
    let projector_task = tokio::spawn(async move { projector.run(ucs::Until::Shutdown, token).await });
    let (stop_server, server) = env.spawn_interaction_server();
    let api = Api { base: format!("http://{addr}"), http: e2e::http() };
    api.eventually("/health/ready/ucs", |s, _| s == 200).await;

    // Find-or-create, 16 callers at once with differently written forms of one address.
    let calls = (0..16).map(|i| {
        let value = if i % 2 == 0 { "Ann.Lee@Example.com" } else { "  ann.lee@example.COM " };
        api.send(reqwest::Method::POST, "/v1/contacts/identify", json!({"kind": "email", "value": value, "display_name": "Ann Lee"}))
    });
    let answers = futures::future::join_all(calls).await;
    let ids: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 200, "{body}");
            body["contact_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "concurrent find-or-create gave several contacts: {ids:?}");
    let ann = ids.into_iter().next().unwrap();
    let contact = api.eventually(&format!("/v1/contacts/{ann}"), |s, _| s == 200).await;
    assert_eq!(contact["identities"], json!([{"kind": "email", "value": "ann.lee@example.com"}]));
    let (_, again) = api.send(reqwest::Method::POST, "/v1/contacts/identify", json!({"kind": "email", "value": "ann.lee@example.com"})).await;
    assert_eq!(again["contact_id"], ann.as_str());
    assert_eq!(again["created"], false);
    let (status, bad) = api.send(reqwest::Method::POST, "/v1/contacts/identify", json!({"kind": "email", "value": "not-an-address"})).await;
    assert_eq!(status, 400);
    assert!(bad["error"].as_str().unwrap().contains("not an e-mail address"), "{bad}");

    // A second contact by phone, merged into Ann: search and identify lead to the survivor.
    let (_, phone) = api.send(reqwest::Method::POST, "/v1/contacts/identify", json!({"kind": "phone", "value": "+44 20 7946 0958"})).await;
    let phone_contact = phone["contact_id"].as_str().unwrap().to_owned();
    api.eventually(&format!("/v1/contacts/{phone_contact}"), |s, _| s == 200).await;
    let (status, _) = api.send(reqwest::Method::POST, &format!("/v1/contacts/{phone_contact}/merge"), json!({"into": ann})).await;
    assert_eq!(status, 202);
    let merged = api
        .eventually(&format!("/v1/contacts/{ann}"), |_, b| b["identities"].as_array().is_some_and(|a| a.len() == 2))
        .await;
    assert_eq!(merged["merged_contacts"], json!([phone_contact]));
    let (_, by_phone) = api.send(reqwest::Method::POST, "/v1/contacts/identify", json!({"kind": "phone", "value": "+442079460958"})).await;
    assert_eq!(by_phone["contact_id"], ann.as_str());
    let (_, found) = api.get("/v1/contacts?q=7946").await;
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["id"], ann.as_str());
    let (status, _) = api.send(reqwest::Method::POST, &format!("/v1/contacts/{ann}/merge"), json!({"into": phone_contact})).await;
    assert_eq!(status, 400, "merging a survivor into its own merged contact must be refused");

    // Blobs: stored once, fetched back, oversize refused with the limit named.
    let body = b"%PDF-1.4 an attachment".to_vec();
    let put = || api.http.post(format!("{}/v1/blobs", api.base)).body(body.clone()).send();
    let first = put().await.unwrap();
    assert_eq!(first.status().as_u16(), 201);
    let stored: Value = first.json().await.unwrap();
    let second = put().await.unwrap();
    assert_eq!(second.status().as_u16(), 200);
    assert_eq!(second.json::<Value>().await.unwrap()["reference"], stored["reference"]);
    let reference = stored["reference"].as_str().unwrap().to_owned();
    let fetched = api.http.get(format!("{}/v1/blobs/{reference}", api.base)).send().await.unwrap();
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), body.as_slice());
    let huge = api.http.post(format!("{}/v1/blobs", api.base)).body(vec![b'x'; 100 * 1024]).send().await.unwrap();
    assert_eq!(huge.status().as_u16(), 413);
    let why: Value = huge.json().await.unwrap();
    assert!(why["error"].as_str().unwrap().contains("65536 bytes"), "{why}");
    let (status, _) = api.get("/v1/blobs/sha256:nothex").await;
    assert_eq!(status, 400);

    // An interaction of Ann's with a body part, an attachment and a note.
    let client = CommandClient::new(&env.kafka, &env.topics, "test").unwrap();
    let interaction = "api-interaction-1";
    let submit = client.command(
        interaction,
        CommandPayload::Submit(Submit {
            media_type: MediaType::Email,
            origin: "test".into(),
            target_queue: "inbound".into(),
            priority: 0,
            properties: [("subject".to_owned(), "Invoice".to_owned())].into(),
            contact_id: Some(phone_contact.clone()),
            content_ref: Some(reference.clone()),
            parent_interaction_id: None,
        }),
    );
    client.send(&submit).await.unwrap();
    let part = |i: i32, role: &str, blob: Option<&str>, text: Option<&str>| {
        json!({"part_index": i, "role": role, "mime_type": "text/plain", "size": 22, "blob_ref": blob, "text": text})
    };
    let (s1, _) = api.send(reqwest::Method::POST, &format!("/v1/interactions/{interaction}/contents"), part(0, "text_body", None, Some("Please resend it"))).await;
    let (s2, _) = api.send(reqwest::Method::POST, &format!("/v1/interactions/{interaction}/contents"), part(1, "attachment", Some(&reference), None)).await;
    assert_eq!((s1, s2), (202, 202));
    let (status, missing) = api
        .send(reqwest::Method::POST, &format!("/v1/interactions/{interaction}/contents"), part(2, "attachment", Some(&format!("sha256:{}", "a".repeat(64))), None))
        .await;
    assert_eq!(status, 400, "{missing}");
    let (status, _) = api.send(reqwest::Method::POST, "/v1/notes", json!({"interaction_id": interaction, "author": "ann-agent", "text": "Resent"})).await;
    assert_eq!(status, 202);
    let detail = api
        .eventually(&format!("/v1/interactions/{interaction}/detail"), |s, b| {
            s == 200 && b["contents"].as_array().is_some_and(|c| c.len() == 2) && b["notes"].as_array().is_some_and(|n| n.len() == 1)
        })
        .await;
    assert_eq!(detail["subject"], "Invoice");
    assert_eq!(detail["status"], "waiting");
    assert_eq!(detail["queue"], "inbound");
    let trail: Vec<&str> = detail["history"].as_array().unwrap().iter().map(|h| h["kind"].as_str().unwrap()).collect();
    assert_eq!(trail, ["Submitted", "PlacedInQueue"]);
    assert_eq!(detail["contents"][1]["blob_ref"], reference.as_str());
    // Ann's history includes the interaction filed under her merged phone contact.
    let history = api.eventually(&format!("/v1/contacts/{ann}/history"), |_, b| b.as_array().is_some_and(|a| a.len() == 1)).await;
    assert_eq!(history[0]["id"], interaction);

    // Categories and standard responses: create, update, filter, delete.
    let (status, created) = api.send(reqwest::Method::POST, "/v1/categories", json!({"name": "Billing"})).await;
    assert_eq!(status, 202);
    let category = created["id"].as_str().unwrap().to_owned();
    let (_, response) = api
        .send(reqwest::Method::POST, "/v1/standard-responses", json!({"name": "Invoice copy", "category_id": category, "body_text": "Attached is a copy.", "media": ["email"]}))
        .await;
    let response_id = response["id"].as_str().unwrap().to_owned();
    api.eventually(&format!("/v1/standard-responses?category_id={category}&media=email"), |_, b| b.as_array().is_some_and(|a| a.len() == 1)).await;
    let (_, none_for_sms) = api.get("/v1/standard-responses?media=sms").await;
    assert_eq!(none_for_sms, json!([]));
    api.send(reqwest::Method::PUT, &format!("/v1/standard-responses/{response_id}"), json!({"name": "Invoice copy", "category_id": category, "body_text": "A copy is attached.", "media": []}))
        .await;
    api.eventually(&format!("/v1/standard-responses/{response_id}"), |_, b| b["body_text"] == "A copy is attached.").await;
    let (status, bad_media) = api.send(reqwest::Method::POST, "/v1/standard-responses", json!({"name": "x", "body_text": "y", "media": ["fax"]})).await;
    assert_eq!(status, 400, "{bad_media}");
    api.send(reqwest::Method::DELETE, &format!("/v1/standard-responses/{response_id}"), json!(null)).await;
    api.send(reqwest::Method::DELETE, &format!("/v1/categories/{category}"), json!(null)).await;
    api.eventually(&format!("/v1/standard-responses/{response_id}"), |s, _| s == 404).await;
    api.eventually("/v1/categories", |_, b| b == &json!([])).await;

    // The OpenAPI document is generated from the handlers and lists every route.
    let (status, doc) = api.get("/v1/openapi.json").await;
    assert_eq!(status, 200);
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/v1/contacts",
        "/v1/contacts/identify",
        "/v1/contacts/{id}/history",
        "/v1/interactions/{id}/detail",
        "/v1/standard-responses/{id}",
        "/v1/categories",
        "/v1/blobs",
        "/v1/blobs/{reference}",
    ] {
        assert!(paths.contains_key(path), "OpenAPI lacks {path}");
    }

    stop_server.cancel();
    server.await.unwrap().unwrap();
    shutdown.cancel();
    projector_task.await.unwrap().unwrap();
}
