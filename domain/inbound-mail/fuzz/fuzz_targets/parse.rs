//! Every byte string is either a mail or a refusal with a reason; nothing panics, and no
//! header text we keep can carry a line break into a header we write.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = inbound_mail::Limits { max_bytes: 64 * 1024, max_parts: 50, max_depth: 8 };
    let envelope_from = data.first().is_some_and(|b| b % 2 == 0).then_some("sender@example.com");
    match inbound_mail::parse(data, envelope_from, &limits) {
        Ok(mail) => {
            assert!(!mail.message_id.is_empty());
            assert!(!mail.from_address.is_empty());
            for text in [&mail.subject, &mail.from_address, &mail.message_id] {
                assert!(!text.contains(['\r', '\n']), "line break kept in {text:?}");
            }
        }
        Err(refusal) => {
            assert!(!refusal.to_string().is_empty());
            let (code, _) = refusal.smtp_status();
            assert!((500..600).contains(&code));
        }
    }
    let cleaned = inbound_mail::clean_header_text(&String::from_utf8_lossy(data));
    assert!(!cleaned.contains(['\r', '\n']));
});
