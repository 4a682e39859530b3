// Admitted is made only by the admission path, once the open record is
// durable: it cannot be written down.
use proxy::admission::Admitted;

fn main() {
    let _ = Admitted {
        trail: todo!(),
        permit: todo!(),
        life: proxy::lifecycle::Lifecycle::new(),
        grpc: false,
        direction: proxy::audit::Direction::Ingress,
        held: None,
        _kept: None,
        clock: todo!(),
    };
}
