//! The e-mail channel (the seed's E-mail Server): mail in by SMTP listener ([`smtp`]), IMAP
//! poll and web form, through one [`intake`]; replies, acknowledgements and auto-responses
//! out over SMTP with lettre ([`outbound`]).

pub mod intake;
pub mod parse;
pub mod ucs_client;
