//! Standard responses and categories, folded from `ucs.events`, so an agent's desk can offer
//! the responses that fit an interaction without asking the UCS service (the log has them).

use std::collections::BTreeMap;

use contract::ucs::{UcsEvent, UcsPayload};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Library {
    /// Category id to name.
    categories: BTreeMap<String, String>,
    responses: BTreeMap<String, StandardResponse>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StandardResponse {
    pub id: String,
    pub name: String,
    pub category_id: Option<String>,
    pub subject: Option<String>,
    pub body_text: String,
    pub body_html: Option<String>,
    /// Media it is written for; empty means any.
    pub media: Vec<String>,
}

/// A response as offered for one interaction: suggested when its category is the
/// interaction's, with the merge fields filled in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suggestion {
    #[serde(flatten)]
    pub response: StandardResponse,
    pub suggested: bool,
}

impl Library {
    pub fn apply(&mut self, event: &UcsEvent) {
        match &event.payload {
            UcsPayload::CategorySaved(c) => {
                self.categories.insert(c.category_id.clone(), c.name.clone());
            }
            UcsPayload::CategoryDeleted(c) => {
                self.categories.remove(&c.category_id);
            }
            UcsPayload::StandardResponseSaved(r) => {
                self.responses.insert(
                    r.response_id.clone(),
                    StandardResponse {
                        id: r.response_id.clone(),
                        name: r.name.clone(),
                        category_id: r.category_id.clone(),
                        subject: r.subject.clone(),
                        body_text: r.body_text.clone(),
                        body_html: r.body_html.clone(),
                        media: r.media.clone(),
                    },
                );
            }
            UcsPayload::StandardResponseDeleted(r) => {
                self.responses.remove(&r.response_id);
            }
            _ => {}
        }
    }

    /// A response by id or by name (names compared without regard to case), as a workflow's
    /// `respond` step names it.
    pub fn find(&self, id_or_name: &str) -> Option<&StandardResponse> {
        self.responses.get(id_or_name).or_else(|| self.responses.values().find(|r| r.name.eq_ignore_ascii_case(id_or_name)))
    }

    /// The responses usable on `media`, those of `category` first (matched by category id or
    /// name, as the classifier names categories), then by name. `{{field}}` placeholders are
    /// filled from `fields`; unknown ones are left as written so the agent sees them.
    pub fn suggestions(&self, media: &str, category: Option<&str>, fields: &BTreeMap<String, String>) -> Vec<Suggestion> {
        let in_category = |r: &StandardResponse| {
            let (Some(wanted), Some(id)) = (category, r.category_id.as_deref()) else { return false };
            id.eq_ignore_ascii_case(wanted) || self.categories.get(id).is_some_and(|name| name.eq_ignore_ascii_case(wanted))
        };
        let mut out: Vec<Suggestion> = self
            .responses
            .values()
            .filter(|r| r.media.is_empty() || r.media.iter().any(|m| m == media))
            .map(|r| Suggestion {
                suggested: in_category(r),
                response: StandardResponse {
                    subject: r.subject.as_deref().map(|s| fill(s, fields)),
                    body_text: fill(&r.body_text, fields),
                    body_html: r.body_html.as_deref().map(|s| fill_html(s, fields)),
                    ..r.clone()
                },
            })
            .collect();
        out.sort_by(|a, b| b.suggested.cmp(&a.suggested).then_with(|| a.response.name.cmp(&b.response.name)));
        out
    }
}

/// [`fill`] for an HTML template: every value is escaped for HTML text and attributes first,
/// so what a customer wrote (a subject, a name) cannot add markup, links or forms to a mail
/// sent in the company's name.
pub fn fill_html(template: &str, fields: &BTreeMap<String, String>) -> String {
    let escaped = fields.iter().map(|(name, value)| (name.clone(), html_escape::encode_safe(value).into_owned())).collect();
    fill(template, &escaped)
}

/// Replaces `{{name}}` (spaces inside the braces allowed) by `fields[name]`, as written: for
/// plain text. HTML takes [`fill_html`].
pub fn fill(template: &str, fields: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let name = after[..end].trim();
                match fields.get(name) {
                    Some(value) => out.push_str(value),
                    None => out.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::ucs::{CategorySaved, StandardResponseDeleted, StandardResponseSaved};

    fn event(payload: UcsPayload) -> UcsEvent {
        UcsEvent { event_id: "e".into(), key: "k".into(), occurred_at: 0, issued_by: "t".into(), payload }
    }

    fn response(id: &str, name: &str, category: Option<&str>, media: &[&str]) -> UcsPayload {
        UcsPayload::StandardResponseSaved(StandardResponseSaved {
            response_id: id.into(),
            name: name.into(),
            category_id: category.map(Into::into),
            subject: Some("Re: {{subject}}".into()),
            body_text: "Dear {{ contact_name }}, {{unknown}} regards, {{agent_name}}".into(),
            body_html: None,
            media: media.iter().map(|m| (*m).to_owned()).collect(),
        })
    }

    #[test]
    fn category_matches_come_first_and_fields_are_filled() {
        let mut library = Library::default();
        library.apply(&event(UcsPayload::CategorySaved(CategorySaved { category_id: "cat-7".into(), name: "Billing".into(), parent_id: None })));
        library.apply(&event(response("a", "Apology", None, &[])));
        library.apply(&event(response("b", "Refund", Some("cat-7"), &["email"])));
        library.apply(&event(response("c", "Chat hello", None, &["chat"])));
        library.apply(&event(response("d", "Zzz", Some("cat-7"), &[])));
        library.apply(&event(response("e", "Gone", None, &[])));
        library.apply(&event(UcsPayload::StandardResponseDeleted(StandardResponseDeleted { response_id: "e".into() })));
        let fields = BTreeMap::from([
            ("subject".to_owned(), "My bill".to_owned()),
            ("contact_name".to_owned(), "Ada".to_owned()),
            ("agent_name".to_owned(), "Bob".to_owned()),
        ]);
        let got = library.suggestions("email", Some("billing"), &fields);
        let order: Vec<(&str, bool)> = got.iter().map(|s| (s.response.id.as_str(), s.suggested)).collect();
        assert_eq!(order, [("b", true), ("d", true), ("a", false)]);
        assert_eq!(got[0].response.subject.as_deref(), Some("Re: My bill"));
        assert_eq!(got[0].response.body_text, "Dear Ada, {{unknown}} regards, Bob");
        let uncategorised = library.suggestions("chat", None, &fields);
        assert!(uncategorised.iter().all(|s| !s.suggested));
        assert_eq!(uncategorised.len(), 3);
    }

    #[test]
    fn html_templates_get_escaped_values_and_text_ones_the_values_as_written() {
        let fields = BTreeMap::from([("subject".to_owned(), r#"<a href="https://evil.example/?a=1&b='2'">pay here</a>"#.to_owned())]);
        assert_eq!(
            fill_html(r#"<p title="{{subject}}">Re: {{ subject }}</p>"#, &fields),
            "<p title=\"&lt;a href=&quot;https:&#x2F;&#x2F;evil.example&#x2F;?a=1&amp;b=&#x27;2&#x27;&quot;&gt;pay here&lt;&#x2F;a&gt;\">Re: &lt;a href=&quot;https:&#x2F;&#x2F;evil.example&#x2F;?a=1&amp;b=&#x27;2&#x27;&quot;&gt;pay here&lt;&#x2F;a&gt;</p>"
        );
        assert_eq!(fill("Re: {{subject}}", &fields), r#"Re: <a href="https://evil.example/?a=1&b='2'">pay here</a>"#);
        let mut library = Library::default();
        library.apply(&event(UcsPayload::StandardResponseSaved(StandardResponseSaved {
            response_id: "h".into(),
            name: "Html".into(),
            category_id: None,
            subject: None,
            body_text: "{{subject}}".into(),
            body_html: Some("<b>{{subject}}</b>".into()),
            media: vec![],
        })));
        let suggested = &library.suggestions("email", None, &fields)[0].response;
        assert!(suggested.body_html.as_deref().is_some_and(|h| h.starts_with("<b>&lt;a href=") && !h.contains("<a")));
        assert_eq!(suggested.body_text, fields["subject"]);
    }

    #[test]
    fn fill_leaves_broken_placeholders_alone() {
        let fields = BTreeMap::from([("a".to_owned(), "1".to_owned())]);
        assert_eq!(fill("{{a}}{{a", &fields), "1{{a");
        assert_eq!(fill("x}}{{ a }}y", &fields), "x}}1y");
        assert_eq!(fill("ünï {{a}} ✓", &fields), "ünï 1 ✓");
    }
}
