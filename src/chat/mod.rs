//! The chat's vocabulary, apart from any wire format and any room: what a
//! client asks ([`ClientMsg`]), what the room tells clients ([`Event`]),
//! why something was refused ([`ErrorCode`]), which names are acceptable,
//! and the dialects a listener may speak ([`Dialect`]). The codecs
//! (`crate::codec::chat`), the room (`crate::service::chat`) and the
//! clients all speak it, and none of them imports another for it.

mod dialect;
mod message;
mod name;

pub use dialect::Dialect;
pub use message::{ClientMsg, ErrorCode, Event};
pub use name::{MAX_NAME_CHARS, NOTICE_NAME, NameError, validate_name};
