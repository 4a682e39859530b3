// The halves of a confirmed TCP tunnel stream come only from open_tcp or
// the accepting side, for an admitted stream: they cannot be assembled.
use proxy::forward::tcp::TunnelStream;
use proxy::forward::{FrameReader, SendGuard};

fn assemble(reader: FrameReader, send: SendGuard) -> TunnelStream {
    TunnelStream { reader, send }
}

fn main() {}
