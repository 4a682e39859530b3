// A Permit cannot be written down: its fields are private to proxy::policy.
use proxy::policy::Permit;

fn main() {
    let _ = Permit {
        decision: todo!(),
        caller: String::new(),
        tunnel: String::new(),
        service: String::new(),
        method: String::new(),
        path: String::new(),
        workload: None,
    };
}
