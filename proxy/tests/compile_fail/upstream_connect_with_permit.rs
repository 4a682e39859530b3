// Connecting to a TCP service needs the stream's Admitted, not a Permit.
use proxy::policy::Permit;
use proxy::upstream::Upstream;

async fn deliver(upstream: &Upstream, permit: &Permit) {
    let _ = upstream
        .connect_tcp(std::time::Duration::from_secs(1), permit)
        .await;
}

fn main() {}
