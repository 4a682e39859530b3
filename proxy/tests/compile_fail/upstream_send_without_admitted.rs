// Delivering a request to a service needs the stream's Admitted.
use proxy::forward::TunnelBody;
use proxy::upstream::Upstream;

async fn deliver(upstream: &Upstream, req: http::Request<TunnelBody>) {
    let _ = upstream.send(req).await;
}

fn main() {}
