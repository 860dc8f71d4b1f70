//! What the SMS channel needs of a gateway, so that another protocol (SMPP) can be added
//! beside [`crate::twilio`] without touching the rest.

use std::future::Future;

/// An SMS (or MMS) the gateway received for us.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    /// The gateway's id of the message: the same message delivered twice has the same one.
    pub gateway_message_id: String,
    pub from: String,
    pub to: String,
    pub body: String,
    /// Media parts of an MMS: (URL, content type).
    pub media: Vec<(String, String)>,
}

/// A delivery receipt: what became of something we sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    pub gateway_message_id: String,
    /// As the gateway says it (`queued`, `sent`, `delivered`, `undelivered`, `failed`, ...).
    pub status: String,
    pub error_code: Option<String>,
}

/// A media part fetched from the gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub content_type: String,
    pub content_id: Option<String>,
    /// Content-Location, or the file name of its Content-Disposition.
    pub location: Option<String>,
}

/// Why a media part was not fetched.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FetchError {
    /// Never to be fetched (a URL off the gateway's media hosts, too large): the MMS is
    /// refused with this reason.
    #[error("{0}")]
    Refused(String),
    /// The gateway is away or failed: worth another try.
    #[error("{0}")]
    Unavailable(String),
}

/// Form fields of a webhook, in the order received.
pub type Params = [(String, String)];

pub trait Gateway: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Whether the webhook at `url` (as the gateway called it) with `params` carries a valid
    /// `signature`; `Err` is the reason it does not.
    fn verify(&self, url: &str, params: &Params, signature: Option<&str>) -> Result<(), String>;
    fn inbound(&self, params: &Params) -> Result<Inbound, String>;
    fn receipt(&self, params: &Params) -> Result<Receipt, String>;
    /// Sends `body` to `to`; receipts for it are to be posted to `status_callback`. `Ok` is the
    /// gateway's message id, `Err` why it was not taken.
    fn send(&self, to: &str, body: &str, status_callback: &str) -> impl Future<Output = Result<String, String>> + Send;
    /// Fetches an MMS media part the gateway holds, refusing more than `max_bytes` and any
    /// URL that is not the gateway's.
    fn fetch(&self, url: &str, max_bytes: usize) -> impl Future<Output = Result<Fetched, FetchError>> + Send;
}
