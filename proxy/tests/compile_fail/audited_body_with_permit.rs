// A response body owns its stream's close record, so it needs the Admitted.
use proxy::forward::observe::AuditedBody;
use proxy::policy::Permit;

fn respond(permit: Permit) {
    let _ = AuditedBody::new(http_body_util::Empty::<bytes::Bytes>::new(), permit);
}

fn main() {}
