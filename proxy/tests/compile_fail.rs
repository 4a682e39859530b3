//! The promise "no byte is forwarded without a decision and a durable open
//! record" is kept by the compiler: each program under `compile_fail/`
//! tries to forward, or to make the proof forwarding needs, without going
//! through `proxy::admission`, and must fail to compile with the error its
//! `.stderr` file names.

#[test]
fn forwarding_without_admission_does_not_compile() {
    let cases = std::fs::read_dir("tests/compile_fail")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "rs"))
                .count()
        })
        .unwrap_or(0);
    assert!(
        cases >= 10,
        "expected the compile-fail cases, found {cases}"
    );
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/compile_fail/*.rs");
}
