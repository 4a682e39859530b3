// Only bodies made from an Admitted stream can be pumped into the tunnel.
use proxy::forward::{pump_body, SendGuard};
use proxy::wire::WireLimits;

async fn forward(send: &mut SendGuard, limits: &WireLimits) {
    let body = http_body_util::Full::new(bytes::Bytes::from_static(b"unaudited"));
    let _ = pump_body(body, send, limits, quinn::VarInt::from_u32(0)).await;
}

fn main() {}
