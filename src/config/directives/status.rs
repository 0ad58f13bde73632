//! ngx_http_stub_status_module: `stub_status` (nginx also takes it at
//! server level and ignores its argument).

use super::{spec, Arity, Handler, Location, Spec};

pub(super) const DIRECTIVES: &[Spec] = &[spec(
    "stub_status",
    &[Location],
    Arity::Between(0, 1),
    Handler::Structure,
)];
