//! Staff identity shared by the desk (which logs people in) and the chat server (which lets
//! agents and supervisors join sessions): the users file and the signed session tokens. A
//! small crate of its own so that neither service depends on the other.

pub mod auth;
pub mod directory;
pub mod private_file;
pub mod service_keys;
pub mod shared;
pub mod throttle;
pub mod users;
