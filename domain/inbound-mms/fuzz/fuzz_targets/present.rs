//! Any SMIL bytes, with any part sizes, give a presentation or a refusal with a reason; a
//! presentation orders every non-SMIL part exactly once.
#![no_main]

use inbound_mms::{Limits, Part, present};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let sizes = data.first().map_or(0, |b| usize::from(*b) * 1000);
    let parts = vec![
        Part { content_type: "application/smil".into(), content_id: Some("smil".into()), location: Some("pres.smil".into()), size: data.len() },
        Part { content_type: "image/jpeg".into(), content_id: Some("photo1".into()), location: Some("photo1.jpg".into()), size: sizes },
        Part { content_type: "text/plain".into(), content_id: None, location: Some("caption.txt".into()), size: 20 },
        Part { content_type: "audio/amr".into(), content_id: Some("<voice>".into()), location: None, size: 500 },
    ];
    let limits = Limits { max_total_bytes: 200_000, max_parts: 10, max_smil_bytes: 16 * 1024 };
    match present(&parts, Some(data), &limits) {
        Ok(p) => {
            let mut seen = p.order.clone();
            seen.sort_unstable();
            assert_eq!(seen, [1, 2, 3], "every media part once: {:?}", p.order);
        }
        Err(refusal) => assert!(!refusal.to_string().is_empty()),
    }
});
