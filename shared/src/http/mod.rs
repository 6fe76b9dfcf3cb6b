//! HTTP: the connection loop, what routes share, refusals, the pages,
//! `/healthz` and `/metrics`, and the tasks connections run in.

pub mod connections;
pub mod context;
pub mod direct;
pub mod observe;
pub mod pages;
pub mod refusal;
pub mod request;
pub mod server;
pub mod tasks;
pub mod tls;

pub use connections::Connections;
pub use context::{Conn, Context, conn};
pub use refusal::{Refusal, check_no_body, check_origin, check_since, error_response};
pub use server::{BindError, Handover, Transport, bind, serve};
pub use tasks::Tasks;
