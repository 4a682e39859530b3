// A decision alone does not open a tunnel stream: open_call takes an
// Admitted (the permit plus its durable open record), not a Permit.
use proxy::forward::open::{open_call, Via};
use proxy::policy::Permit;
use proxy::Limits;

async fn forward(
    conn: &quinn::Connection,
    parts: &http::request::Parts,
    limits: &Limits,
    permit: Permit,
) {
    let body = http_body_util::Empty::<bytes::Bytes>::new();
    let via = Via { peer: "demo", deadline: None };
    let _ = open_call(conn, parts, body, via, limits, permit).await;
}

fn main() {}
