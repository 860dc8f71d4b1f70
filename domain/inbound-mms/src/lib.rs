//! An inbound MMS checked before it becomes an interaction: limits on total size and part
//! count, and its SMIL presentation part parsed and validated (roxmltree) into the order its
//! parts are shown in, so the agent sees them as the sender composed them. Media is stored,
//! never decoded: only the SMIL part is read.
//!
//! A SMIL reference (`src`) names a part by `cid:<Content-ID>` or by its Content-Location
//! (a file name). Parts the SMIL does not mention follow the presented ones, in message order.
//! Any bytes give a presentation or a [`Refusal`] with a reason, never a panic (the fuzz target
//! in `fuzz/` holds us to it).

/// What the gateway told us of one part, in message order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub content_type: String,
    /// Without angle brackets.
    pub content_id: Option<String>,
    pub location: Option<String>,
    pub size: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_total_bytes: usize,
    pub max_parts: usize,
    pub max_smil_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_total_bytes: 5 * 1024 * 1024, max_parts: 20, max_smil_bytes: 64 * 1024 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the MMS is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("the MMS has {count} parts; the limit is {limit}")]
    TooManyParts { count: usize, limit: usize },
    #[error("the SMIL part is not valid: {0}")]
    BadSmil(String),
}

/// The parts in the order they are presented (indexes into the message's parts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presentation {
    pub order: Vec<usize>,
    /// The SMIL part's index, if there was one.
    pub smil: Option<usize>,
    /// Slides (`par` elements) in the SMIL.
    pub slides: usize,
}

pub fn is_smil(content_type: &str) -> bool {
    content_type.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/smil"))
}

/// Checks `parts` against `limits` and orders them by the SMIL part (`smil_bytes`: the content
/// of the first `application/smil` part, if any).
pub fn present(parts: &[Part], smil_bytes: Option<&[u8]>, limits: &Limits) -> Result<Presentation, Refusal> {
    if parts.len() > limits.max_parts {
        return Err(Refusal::TooManyParts { count: parts.len(), limit: limits.max_parts });
    }
    let size = parts.iter().fold(0usize, |sum, p| sum.saturating_add(p.size));
    if size > limits.max_total_bytes {
        return Err(Refusal::TooLarge { size, limit: limits.max_total_bytes });
    }
    let smil = parts.iter().position(|p| is_smil(&p.content_type));
    let (mut order, slides) = match (smil, smil_bytes) {
        (Some(_), Some(bytes)) => smil_order(bytes, parts, limits)?,
        (Some(_), None) => return Err(Refusal::BadSmil("the SMIL part's content is missing".into())),
        (None, _) => (Vec::new(), 0),
    };
    for (n, part) in parts.iter().enumerate() {
        if Some(n) != smil && !order.contains(&n) && !is_smil(&part.content_type) {
            order.push(n);
        }
    }
    Ok(Presentation { order, smil, slides })
}

/// Media elements of SMIL 2.0 (the MMS conformance profile uses the first four).
const MEDIA: [&str; 7] = ["img", "text", "audio", "video", "ref", "animation", "textstream"];

fn smil_order(bytes: &[u8], parts: &[Part], limits: &Limits) -> Result<(Vec<usize>, usize), Refusal> {
    let bad = |why: String| Refusal::BadSmil(why);
    if bytes.len() > limits.max_smil_bytes {
        return Err(bad(format!("{} bytes; the limit is {}", bytes.len(), limits.max_smil_bytes)));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| bad(format!("not UTF-8: {e}")))?;
    // A DOCTYPE is common in MMS SMIL; roxmltree guards entity expansion, and the node
    // limit bounds the work on hostile input.
    let options = roxmltree::ParsingOptions { allow_dtd: true, nodes_limit: 10_000 };
    let doc = roxmltree::Document::parse_with_options(text, options).map_err(|e| bad(format!("not XML: {e}")))?;
    let root = doc.root_element();
    if root.tag_name().name() != "smil" {
        return Err(bad(format!("the root element is <{}>, not <smil>", root.tag_name().name())));
    }
    let body = root.children().find(|n| n.is_element() && n.tag_name().name() == "body").ok_or_else(|| bad("no <body>".into()))?;
    let mut order = Vec::new();
    let mut slides = 0;
    for node in body.descendants().filter(roxmltree::Node::is_element) {
        let name = node.tag_name().name();
        if name == "par" {
            slides += 1;
            continue;
        }
        if !MEDIA.contains(&name) {
            continue;
        }
        let src = node.attribute("src").ok_or_else(|| bad(format!("<{name}> without src")))?;
        let index = resolve(src, parts).ok_or_else(|| bad(format!("<{name} src={src:?}> names a part the message does not have")))?;
        if !order.contains(&index) {
            order.push(index);
        }
    }
    Ok((order, slides))
}

fn resolve(src: &str, parts: &[Part]) -> Option<usize> {
    if let Some(cid) = src.strip_prefix("cid:") {
        let cid = cid.trim_matches(['<', '>']);
        return parts.iter().position(|p| p.content_id.as_deref() == Some(cid));
    }
    parts.iter().position(|p| p.location.as_deref() == Some(src)).or_else(|| parts.iter().position(|p| p.content_id.as_deref() == Some(src)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn part(content_type: &str, location: &str, size: usize) -> Part {
        Part { content_type: content_type.into(), content_id: None, location: Some(location.into()), size }
    }

    const SMIL: &str = r#"<?xml version="1.0"?>
<!DOCTYPE smil PUBLIC "-//W3C//DTD SMIL 2.0//EN" "http://www.w3.org/2001/SMIL20/SMIL20.dtd">
<smil xmlns="http://www.w3.org/2001/SMIL20/Language">
  <head><layout><root-layout width="320" height="240"/><region id="Image" top="0" height="75%"/><region id="Text" top="75%"/></layout></head>
  <body>
    <par dur="5s"><img src="cid:photo1" region="Image"/><text src="caption.txt" region="Text"/></par>
    <par dur="5s"><img src="photo2.jpg" region="Image"/></par>
  </body>
</smil>"#;

    fn message() -> Vec<Part> {
        vec![
            part("image/jpeg", "photo2.jpg", 2000),
            part("application/smil", "pres.smil", SMIL.len()),
            part("text/plain", "caption.txt", 20),
            Part { content_type: "image/jpeg".into(), content_id: Some("photo1".into()), location: None, size: 3000 },
            part("text/vcard", "card.vcf", 100),
        ]
    }

    #[test]
    fn parts_come_in_the_smil_order_then_the_rest() {
        let p = present(&message(), Some(SMIL.as_bytes()), &Limits::default()).unwrap();
        assert_eq!(p.order, [3, 2, 0, 4], "photo1, caption, photo2, then the unmentioned vCard");
        assert_eq!((p.smil, p.slides), (Some(1), 2));
    }

    #[test]
    fn without_smil_the_message_order_stands() {
        let parts: Vec<Part> = message().into_iter().filter(|p| !is_smil(&p.content_type)).collect();
        assert_eq!(present(&parts, None, &Limits::default()).unwrap().order, [0, 1, 2, 3]);
    }

    #[test]
    fn refusals_say_why() {
        let limits = Limits { max_total_bytes: 4000, ..Limits::default() };
        assert!(matches!(present(&message(), Some(SMIL.as_bytes()), &limits), Err(Refusal::TooLarge { .. })));
        let limits = Limits { max_parts: 3, ..Limits::default() };
        assert_eq!(present(&message(), Some(SMIL.as_bytes()), &limits).unwrap_err().to_string(), "the MMS has 5 parts; the limit is 3");
        for (smil, why) in [
            ("<smil><body><par><img src=\"cid:nope\"/></par></body></smil>", "names a part the message does not have"),
            ("<html><body/></html>", "not <smil>"),
            ("<smil><head/></smil>", "no <body>"),
            ("<smil><body><par><img/></par></body>", "not XML"),
            ("<smil><body><par><img/></par></body></smil>", "without src"),
        ] {
            let e = present(&message(), Some(smil.as_bytes()), &Limits::default()).unwrap_err().to_string();
            assert!(e.contains(why), "{smil}: {e}");
        }
        let laughs = r#"<!DOCTYPE smil [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;"><!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;"><!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">]><smil><body><text src="&f;"/></body></smil>"#;
        assert!(present(&message(), Some(laughs.as_bytes()), &Limits::default()).is_err(), "entity expansion is refused");
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_give_an_answer(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000)) {
            let _ = present(&message(), Some(&bytes), &Limits::default());
        }
    }
}
