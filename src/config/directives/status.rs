//! ngx_http_stub_status_module: `stub_status` (nginx also takes it at
//! server level and ignores its argument).
//!
//! In the course (docs/learn): chapter 7, "The order": the configuration,
//! read after the sans-IO HTTP layer.

use super::{spec, Arity, Handler, Location, Spec};

pub(super) const DIRECTIVES: &[Spec] = &[spec(
    "stub_status",
    &[Location],
    Arity::Between(0, 1),
    Handler::Structure,
)];
