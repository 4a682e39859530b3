// The head and first body bytes go out only with a body made from an
// Admitted stream.
use proxy::forward::{send_head, SendGuard};
use proxy::wire::{Frame, WireLimits};

async fn forward(send: &mut SendGuard, head: &[Frame], limits: &WireLimits) {
    let mut body = http_body_util::Full::new(bytes::Bytes::from_static(b"unaudited"));
    let _ = send_head(send, head, &mut body, limits, quinn::VarInt::from_u32(0)).await;
}

fn main() {}
