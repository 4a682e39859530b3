// A raw TCP stream is opened only for an Admitted stream.
use proxy::forward::open::{open_tcp, Via};
use proxy::policy::Permit;
use proxy::Limits;

async fn forward(conn: &quinn::Connection, limits: &Limits, permit: Permit) {
    let via = Via { peer: "demo", deadline: None };
    let _ = open_tcp(conn, via, limits, permit).await;
}

fn main() {}
