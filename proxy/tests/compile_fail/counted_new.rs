// A forwardable request body is made only from an Admitted stream.
use proxy::forward::observe::Counted;

fn main() {
    let (_body, _count) = Counted::new(http_body_util::Empty::<bytes::Bytes>::new());
}
