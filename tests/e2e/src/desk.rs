//! Talking to the desk over HTTP as agents and supervisors do, and writing its users file.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use desk::users::{Role, User, Users};
use serde_json::{Value, json};

/// Every test user's password.
pub const PASSWORD: &str = "correct horse battery";

/// Skill or media name to a level or count.
pub type Levels = BTreeMap<String, i32>;

/// Writes a desk users file of `(id, role, skills, capacity)`, every password [`PASSWORD`].
pub fn write_users(file: &Path, people: Vec<(String, Role, Levels, Levels)>) {
    let hash = desk::users::hash_password(PASSWORD).unwrap();
    let mut users = Users::default();
    for (id, role, skills, capacity) in people {
        users.upsert(User { id, name: String::new(), role, password_hash: hash.clone(), skills, capacity, place: None });
    }
    users.save(file).unwrap();
}

/// Waits (up to two minutes) until `url` answers 2xx.
pub async fn wait_ready(http: &reqwest::Client, url: &str) {
    let started = Instant::now();
    loop {
        if http.get(url).send().await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{url} not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub struct DeskClient {
    pub http: reqwest::Client,
    pub base: String,
}

impl DeskClient {
    pub fn new(http: &reqwest::Client, port: u16) -> Self {
        Self { http: http.clone(), base: format!("http://127.0.0.1:{port}") }
    }

    pub async fn login(&self, user: &str) -> String {
        let r = self.http.post(format!("{}/v1/desk/login", self.base)).json(&json!({"user": user, "password": PASSWORD})).send().await.unwrap();
        assert!(r.status().is_success(), "login {user}: {}", r.text().await.unwrap());
        r.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        let r = self.http.post(format!("{}{path}", self.base)).bearer_auth(token).json(&body).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let r = self.http.get(format!("{}{path}", self.base)).bearer_auth(token).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Polls `GET path` until `check` holds for its answer (or fails after `limit`).
    pub async fn get_until(&self, token: &str, path: &str, limit: Duration, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let (status, body) = self.get(token, path).await;
            if status == 200 && check(&body) {
                return body;
            }
            assert!(Instant::now() < deadline, "GET {path}: condition not met; last answer {status} {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
