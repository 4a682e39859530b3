// Bridging TCP takes the stream's Admitted; a Permit is not enough.
use proxy::forward::tcp::{bridge, Socket, TunnelStream};
use proxy::policy::Permit;
use proxy::wire::WireLimits;

async fn forward(
    tcp: tokio::net::TcpStream,
    stream: TunnelStream,
    limits: &WireLimits,
    mut permit: Permit,
) {
    let _ = bridge(tcp, stream, limits, &mut permit, Socket::Caller).await;
}

fn main() {}
