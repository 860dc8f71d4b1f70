//! Mail into the SMTP listener from a real SMTP client (lettre) on a real broker, with UCS as
//! its own process: an accepted mail is in UCS (contents, contact) and submitted once even
//! when delivered twice; a reply threads onto it; mail that cannot be accepted is refused with
//! an SMTP code and the reason, and leaves no interaction behind. The listener relays for no
//! one: other recipient domains, peers outside its relay networks and connections beyond its
//! limit are refused.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use contract::event::{EventPayload, InteractionEvent};
use e2e::mail::start_mail_intake;
use e2e::TestEnv;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::Value;

fn submitted(env: &TestEnv) -> Vec<InteractionEvent> {
    env.read_decoded::<InteractionEvent>(&env.topic("interaction.events"))
        .into_iter()
        .map(|(_, _, e)| e)
        .filter(|e| matches!(e.payload, EventPayload::Submitted(_)))
        .collect()
}

/// The first line the server sends (its greeting or refusal).
async fn first_line(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncBufReadExt as _;
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(10), tokio::io::BufReader::new(stream).read_line(&mut line)).await.unwrap().unwrap();
    line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn smtp_mail_becomes_one_interaction_with_its_content_in_ucs() {
    let env = TestEnv::start().await.unwrap();
    let (stop_server, server) = env.spawn_interaction_server();
    let dir = env.dir.path().to_owned();
    let mut settings = env.settings(&dir.join("data"));
    settings.email.max_message_bytes = 32 * 1024;
    settings.email.domain = "shop.example".into();
    settings.email.smtp_relay_networks = vec!["127.0.0.1/32".into()];
    settings.email.smtp_max_connections = 3;
    // STARTTLS offered with a certificate of a CA the test makes (plain SMTP still taken).
    let tls = e2e::tls::TestTls::generate(&dir).unwrap();
    settings.email.smtp_tls_cert_file = Some(tls.cert_file.clone());
    settings.email.smtp_tls_key_file = Some(tls.key_file.clone());
    let intake = start_mail_intake(&env, &mut settings).await;
    let (ucs_port, smtp_port) = (intake.ucs_port, intake.smtp_port);
    let http = e2e::http();

    let smtp: AsyncSmtpTransport<Tokio1Executor> =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1").port(smtp_port).timeout(Some(Duration::from_secs(30))).build();
    let send_raw = |from: Option<&'static str>, raw: String| {
        let smtp = smtp.clone();
        async move {
            let envelope = lettre::address::Envelope::new(from.map(|f| f.parse().unwrap()), vec!["support@shop.example".parse().unwrap()]).unwrap();
            smtp.send_raw(&envelope, raw.as_bytes()).await
        }
    };

    // A mail with a text body and an attachment, delivered twice.
    let first = "From: Ada Lovelace <ada@example.com>\r\nTo: support@shop.example\r\nSubject: Double charge\r\nMessage-ID: <order-1@example.com>\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nI was charged twice for order 1.\r\n--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"invoice.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n";
    let reply = send_raw(Some("ada@example.com"), first.to_owned()).await.unwrap();
    let text = reply.message().collect::<Vec<_>>().join(" ");
    let id = email::intake::interaction_id_for("order-1@example.com");
    assert!(text.contains(&id), "250 names the interaction: {text}");
    send_raw(Some("ada@example.com"), first.to_owned()).await.unwrap();

    // Her answer to it (once UCS has the first, as it would minutes later) threads onto it.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while http.get(format!("http://127.0.0.1:{ucs_port}/v1/interactions/{id}/detail")).send().await.unwrap().status() != 200 {
        assert!(std::time::Instant::now() < deadline, "UCS never recorded {id}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second = "From: ada@example.com\r\nTo: support@shop.example\r\nSubject: Re: Double charge\r\nMessage-ID: <order-1-b@example.com>\r\nIn-Reply-To: <order-1@example.com>\r\n\r\nAny news?\r\n";
    send_raw(Some("ada@example.com"), second.to_owned()).await.unwrap();
    let second_id = email::intake::interaction_id_for("order-1-b@example.com");

    // Refusals, each with its code and reason.
    let too_big = format!("From: a@example.com\r\nSubject: big\r\n\r\n{}\r\n", "x".repeat(40 * 1024));
    let e = send_raw(Some("a@example.com"), too_big).await.unwrap_err();
    assert!(e.to_string().contains("exceeds the limit of 32768 bytes"), "{e}");
    assert!(e.is_permanent(), "{e}");
    let e = send_raw(None, "Subject: who?\r\n\r\nno sender\r\n".into()).await.unwrap_err();
    assert!(e.to_string().contains("no sender"), "a bounce without From: {e}");
    let e = send_raw(Some("a@example.com"), "From: a@example.com\r\nContent-Type: text/plain; charset=x-martian\r\nMessage-ID: <martian@example.com>\r\n\r\n\u{fffd}\u{fffd} text\r\n".into()).await;
    // (lettre sends UTF-8; the replacement characters stand for bytes no charset decodes)
    assert!(e.as_ref().is_err_and(|e| e.to_string().contains("x-martian")), "{e:?}");
    let mut deep = String::from("From: a@example.com\r\nContent-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n");
    for level in 1..=15 {
        deep.push_str(&format!("--b{}\r\nContent-Type: multipart/mixed; boundary=\"b{level}\"\r\n\r\n", level - 1));
    }
    deep.push_str("--b15\r\n\r\nhi\r\n");
    let e = send_raw(Some("a@example.com"), deep).await.unwrap_err();
    assert!(e.to_string().contains("nested"), "{e}");
    let mut many = String::from("From: a@example.com\r\nContent-Type: multipart/mixed; boundary=\"m\"\r\n\r\n");
    for n in 0..120 {
        many.push_str(&format!("--m\r\nContent-Type: text/plain\r\n\r\npart {n}\r\n"));
    }
    many.push_str("--m--\r\n");
    let e = send_raw(Some("a@example.com"), many).await.unwrap_err();
    assert!(e.to_string().contains("parts") && e.to_string().contains("100"), "too many parts: {e}");
    assert!(e.is_permanent(), "{e}");

    // The log: one Submitted per accepted mail, none for the refused ones.
    env.wait_for("both submissions and the duplicate's refusal", Duration::from_secs(60), || {
        submitted(&env).len() >= 2
            && env
                .read_decoded::<InteractionEvent>(&env.topic("interaction.events"))
                .iter()
                .any(|(_, _, e)| matches!(&e.payload, EventPayload::CommandRejected(_)) && e.interaction_id == id)
    })
    .await;
    let mut s = submitted(&env);
    s.sort_by_key(|e| e.occurred_at);
    assert_eq!(s.iter().map(|e| e.interaction_id.as_str()).collect::<Vec<_>>(), [id.as_str(), second_id.as_str()], "{s:?}");
    let (EventPayload::Submitted(a), EventPayload::Submitted(b)) = (&s[0].payload, &s[1].payload) else { unreachable!() };
    assert_eq!(a.properties["from"], "ada@example.com");
    assert_eq!(a.properties["subject"], "Double charge");
    assert!(a.content_ref.as_deref().is_some_and(|r| r.starts_with("sha256:")));
    assert_eq!(a.contact_id, b.contact_id, "same sender, same contact");
    assert_eq!(b.parent_interaction_id.as_deref(), Some(id.as_str()), "the answer threads onto the first mail");

    // UCS has the parts, the attachment's bytes included.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let detail: Value = loop {
        let r = http.get(format!("http://127.0.0.1:{ucs_port}/v1/interactions/{id}/detail")).send().await.unwrap();
        if r.status() == 200 {
            let v: Value = r.json().await.unwrap();
            if v["contents"].as_array().is_some_and(|c| c.len() == 3) {
                break v;
            }
        }
        assert!(std::time::Instant::now() < deadline, "UCS never showed the contents of {id}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let contents = detail["contents"].as_array().unwrap();
    assert!(contents.iter().any(|c| c["role"] == "text_body" && c["text"].as_str().is_some_and(|t| t.contains("charged twice"))), "{detail}");
    let pdf = contents.iter().find(|c| c["role"] == "attachment").unwrap();
    assert_eq!(pdf["filename"], "invoice.pdf");
    let blob = http.get(format!("http://127.0.0.1:{ucs_port}/v1/blobs/{}", pdf["blob_ref"].as_str().unwrap())).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(&blob[..], b"%PDF-1.4\n");

    // Not a relay: a recipient of another domain is refused, and so is mail from a network
    // not listed (127.0.0.2 is loopback too, but not 127.0.0.1/32).
    let envelope = lettre::address::Envelope::new(Some("ada@example.com".parse().unwrap()), vec!["victim@elsewhere.example".parse().unwrap()]).unwrap();
    let relayed = smtp.send_raw(&envelope, b"From: ada@example.com\r\nSubject: relay\r\n\r\nx\r\n").await.unwrap_err();
    assert!(relayed.to_string().contains("relaying denied"), "{relayed}");
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut stranger = socket.connect(([127, 0, 0, 1], smtp_port).into()).await.unwrap();
    assert!(first_line(&mut stranger).await.starts_with("554 5.7.1"));
    // At most three connections at once: the fourth is told to come back later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut open = Vec::new();
    for n in 0..4 {
        let mut c = tokio::net::TcpStream::connect(("127.0.0.1", smtp_port)).await.unwrap();
        let greeting = first_line(&mut c).await;
        assert!(greeting.starts_with(if n < 3 { "220" } else { "421 4.7.0" }), "connection {n}: {greeting}");
        open.push(c);
    }
    drop(open);
    assert!(submitted(&env).len() == 2, "nothing more was submitted");

    // Over STARTTLS, the server's certificate checked against the test's CA.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ca = lettre::transport::smtp::client::Certificate::from_pem(&std::fs::read(&tls.ca_file).unwrap()).unwrap();
    let parameters = lettre::transport::smtp::client::TlsParameters::builder("localhost".into()).add_root_certificate(ca).build_rustls().unwrap();
    let over_tls: AsyncSmtpTransport<Tokio1Executor> = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(smtp_port)
        .tls(lettre::transport::smtp::client::Tls::Required(parameters))
        .timeout(Some(Duration::from_secs(30)))
        .build();
    let envelope = lettre::address::Envelope::new(Some("ada@example.com".parse().unwrap()), vec!["support@shop.example".parse().unwrap()]).unwrap();
    let reply = over_tls.send_raw(&envelope, b"From: ada@example.com\r\nTo: support@shop.example\r\nSubject: Privately\r\nMessage-ID: <tls-1@example.com>\r\n\r\nSent over TLS.\r\n").await.unwrap();
    let tls_id = email::intake::interaction_id_for("tls-1@example.com");
    assert!(reply.message().any(|l| l.contains(&tls_id)), "250 names the interaction");
    env.wait_for("the mail sent over TLS", Duration::from_secs(60), || submitted(&env).iter().any(|e| e.interaction_id == tls_id)).await;

    stop_server.cancel();
    server.await.unwrap().unwrap();
}
