//! The Twilio-compatible gateway: webhooks signed with `X-Twilio-Signature` (Base64 of the
//! HMAC-SHA1, keyed with the auth token, of the full URL followed by every POST field name
//! and value sorted by name), and sending through the REST API
//! (`POST /2010-04-01/Accounts/{sid}/Messages.json`, HTTP Basic with the account SID and
//! token). The signature check is a few lines over the RustCrypto `hmac`/`sha1` crates; the
//! tests sign with Twilio's own Python library, so the two are checked against each other.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::gateway::{FetchError, Fetched, Gateway, Inbound, Params, Receipt};

pub struct Twilio {
    http: reqwest::Client,
    /// For media: follows redirects only within `media_hosts`.
    media_http: reqwest::Client,
    media_hosts: MediaHosts,
    api_base: String,
    account_sid: String,
    auth_token: String,
    from_number: String,
}

impl Twilio {
    pub fn new(sms: &crate::SmsSettings) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let api_base = sms.api_base.trim_end_matches('/').to_owned();
        let media_hosts = if sms.media_hosts.is_empty() {
            let api = reqwest::Url::parse(&api_base).with_context(|| format!("[sms] api_base {api_base:?} is not a URL"))?;
            MediaHosts(vec![api.host_str().unwrap_or_default().to_owned()])
        } else {
            MediaHosts(sms.media_hosts.iter().map(|h| h.trim().to_ascii_lowercase()).collect())
        };
        let ca = match &sms.ca_file {
            Some(path) => {
                let pem = std::fs::read(path).with_context(|| format!("reading [sms] ca_file {}", path.display()))?;
                Some(reqwest::Certificate::from_pem(&pem).with_context(|| format!("[sms] ca_file {} is not a PEM certificate", path.display()))?)
            }
            None => None,
        };
        let builder = || {
            let builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30));
            match &ca {
                Some(ca) => builder.add_root_certificate(ca.clone()),
                None => builder,
            }
        };
        let allowed = media_hosts.clone();
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 5 {
                attempt.error("more than 5 redirects")
            } else if let Err(why) = allowed.check(attempt.url()) {
                attempt.error(format!("redirected off the gateway: {why}"))
            } else {
                attempt.follow()
            }
        });
        Ok(Self {
            http: builder().build().context("building the gateway's HTTP client")?,
            media_http: builder().redirect(redirects).build().context("building the gateway's HTTP client")?,
            media_hosts,
            api_base,
            account_sid: sms.account_sid.clone(),
            auth_token: sms.auth_token.clone(),
            from_number: sms.from_number.clone(),
        })
    }
}

/// The hosts media is fetched from: an MMS webhook names URLs, and a forged or compromised
/// one must not make us fetch (with the gateway's credentials) from anywhere else.
#[derive(Debug, Clone)]
struct MediaHosts(Vec<String>);

impl MediaHosts {
    fn check(&self, url: &reqwest::Url) -> Result<(), String> {
        if url.scheme() != "https" {
            return Err(format!("media URL {url} is not https"));
        }
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let listed = self.0.iter().any(|allowed| match allowed.strip_prefix("*.") {
            Some(domain) => host.strip_suffix(domain).is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
            None => host == *allowed,
        });
        if listed { Ok(()) } else { Err(format!("media URL {url} is not on the gateway's media hosts ([sms] media_hosts)")) }
    }
}

fn mac(token: &str, url: &str, params: &Params) -> Hmac<Sha1> {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(token.as_bytes()).unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// The signature Twilio puts on a webhook to `url` with `params`.
pub fn signature(token: &str, url: &str, params: &Params) -> String {
    base64::engine::general_purpose::STANDARD.encode(mac(token, url, params).finalize().into_bytes())
}

fn field<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn required<'a>(params: &'a Params, name: &str) -> Result<&'a str, String> {
    field(params, name).filter(|v| !v.is_empty()).ok_or_else(|| format!("the webhook has no {name}"))
}

impl Gateway for Twilio {
    fn name(&self) -> &'static str {
        "twilio"
    }

    fn verify(&self, url: &str, params: &Params, signature: Option<&str>) -> Result<(), String> {
        let given = signature.ok_or("no X-Twilio-Signature header")?;
        let given = base64::engine::general_purpose::STANDARD.decode(given).map_err(|_| "X-Twilio-Signature is not Base64".to_owned())?;
        // Constant-time comparison.
        mac(&self.auth_token, url, params).verify_slice(&given).map_err(|_| format!("X-Twilio-Signature does not match this request to {url}"))
    }

    fn inbound(&self, params: &Params) -> Result<Inbound, String> {
        let count: usize = field(params, "NumMedia").unwrap_or("0").parse().map_err(|_| "NumMedia is not a number".to_owned())?;
        let media = (0..count.min(50))
            .map(|n| Ok((required(params, &format!("MediaUrl{n}"))?.to_owned(), field(params, &format!("MediaContentType{n}")).unwrap_or("application/octet-stream").to_owned())))
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Inbound {
            gateway_message_id: required(params, "MessageSid")?.to_owned(),
            from: required(params, "From")?.to_owned(),
            to: field(params, "To").unwrap_or_default().to_owned(),
            body: field(params, "Body").unwrap_or_default().to_owned(),
            media,
        })
    }

    fn receipt(&self, params: &Params) -> Result<Receipt, String> {
        Ok(Receipt {
            gateway_message_id: required(params, "MessageSid")?.to_owned(),
            status: required(params, "MessageStatus")?.to_owned(),
            error_code: field(params, "ErrorCode").filter(|c| !c.is_empty()).map(str::to_owned),
        })
    }

    async fn send(&self, to: &str, body: &str, status_callback: &str) -> Result<String, String> {
        let url = format!("{}/2010-04-01/Accounts/{}/Messages.json", self.api_base, self.account_sid);
        let form = [("To", to), ("From", self.from_number.as_str()), ("Body", body), ("StatusCallback", status_callback)];
        let response = self
            .http
            .post(&url)
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .form(&form)
            .send()
            .await
            .map_err(|e| format!("Twilio API unreachable: {e}"))?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await.unwrap_or_default();
        if !status.is_success() {
            let message = answer["message"].as_str().unwrap_or("no message");
            return Err(format!("Twilio API refused it: {status} {message} (code {})", answer["code"]));
        }
        answer["sid"].as_str().map(str::to_owned).ok_or_else(|| "Twilio API answered without a sid".to_owned())
    }

    async fn fetch(&self, url: &str, max_bytes: usize) -> Result<Fetched, FetchError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| FetchError::Refused(format!("media URL {url:?} is not a URL: {e}")))?;
        self.media_hosts.check(&parsed).map_err(FetchError::Refused)?;
        // reqwest drops the Authorization header itself when a redirect changes the host.
        let mut response = self.media_http.get(parsed).basic_auth(&self.account_sid, Some(&self.auth_token)).send().await.map_err(|e| {
            if e.is_redirect() {
                FetchError::Refused(format!("media {url}: {}", std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string)))
            } else {
                FetchError::Unavailable(format!("media {url} unreachable: {e}"))
            }
        })?;
        if !response.status().is_success() {
            return Err(FetchError::Unavailable(format!("media {url}: {}", response.status())));
        }
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let content_type = header("content-type").unwrap_or_else(|| "application/octet-stream".into());
        let content_id = header("content-id").map(|c| c.trim_matches(['<', '>', ' ']).to_owned());
        let filename = header("content-disposition").and_then(|d| d.split(';').find_map(|p| p.trim().strip_prefix("filename=").map(|f| f.trim_matches('"').to_owned())));
        let location = header("content-location").or(filename);
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| FetchError::Unavailable(format!("media {url}: {e}")))? {
            if bytes.len() + chunk.len() > max_bytes {
                return Err(FetchError::Refused(format!("the MMS is over {max_bytes} bytes")));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Fetched { bytes, content_type, content_id, location })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    /// The example of Twilio's security documentation.
    #[test]
    fn the_documented_example_signs_as_documented() {
        let params = p(&[("CallSid", "CA1234567890ABCDE"), ("Caller", "+14158675310"), ("Digits", "1234"), ("From", "+14158675310"), ("To", "+18005551212")]);
        assert_eq!(signature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", &params), "GvWf1cFY/Q7PnoempGyD5oXAezc=");
    }

    #[test]
    fn a_changed_field_or_url_fails_verification() {
        let twilio = Twilio::new(&crate::SmsSettings { api_base: "http://127.0.0.1:9".into(), account_sid: "AC1".into(), auth_token: "secret".into(), ..Default::default() }).unwrap();
        let params = p(&[("MessageSid", "SM1"), ("From", "+447700900123"), ("Body", "hi")]);
        let good = signature("secret", "https://sms.example/v1/sms/twilio/inbound", &params);
        assert!(twilio.verify("https://sms.example/v1/sms/twilio/inbound", &params, Some(&good)).is_ok());
        assert!(twilio.verify("https://sms.example/other", &params, Some(&good)).is_err());
        let changed = p(&[("MessageSid", "SM1"), ("From", "+447700900123"), ("Body", "hi!")]);
        assert!(twilio.verify("https://sms.example/v1/sms/twilio/inbound", &changed, Some(&good)).is_err());
        assert!(twilio.verify("https://sms.example/v1/sms/twilio/inbound", &params, None).unwrap_err().contains("no X-Twilio-Signature"));
    }

    #[test]
    fn media_comes_only_over_https_from_the_listed_hosts() {
        let hosts = MediaHosts(vec!["api.twilio.com".into(), "*.twiliocdn.com".into()]);
        let check = |url: &str| hosts.check(&reqwest::Url::parse(url).unwrap());
        assert!(check("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1").is_ok());
        assert!(check("https://media.twiliocdn.com/x").is_ok());
        assert!(check("https://API.Twilio.com/x").is_ok());
        assert!(check("http://api.twilio.com/x").unwrap_err().contains("not https"));
        for off in ["https://evil.example/x", "https://twiliocdn.com/x", "https://eviltwiliocdn.com/x", "https://api.twilio.com.evil.example/x", "https://169.254.169.254/latest/meta-data"] {
            assert!(check(off).unwrap_err().contains("not on the gateway's media hosts"), "{off}");
        }
        let defaulted = Twilio::new(&crate::SmsSettings { api_base: "https://gw.example:8443/".into(), ..Default::default() }).unwrap();
        assert!(defaulted.media_hosts.check(&reqwest::Url::parse("https://gw.example:8443/m/1").unwrap()).is_ok());
        assert!(defaulted.media_hosts.check(&reqwest::Url::parse("https://other.example/m/1").unwrap()).is_err());
    }
}
