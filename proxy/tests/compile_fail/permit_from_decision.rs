// There is no way to turn a decision into a Permit outside proxy::policy:
// only authorize (which evaluates the policy) makes one.
use proxy::policy::{Decision, Permit};

fn allow(d: Decision) -> Permit {
    Permit::from_decision(d).unwrap()
}

fn main() {}
