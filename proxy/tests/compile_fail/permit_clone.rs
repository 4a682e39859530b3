// A Permit is for one stream: it cannot be copied for another.
use proxy::policy::Permit;

fn twice(p: Permit) -> (Permit, Permit) {
    (p.clone(), p)
}

fn main() {}
