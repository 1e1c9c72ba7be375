//! Compile-time behaviour of `#[task]`: what compiles, and the errors for each mistake.
//! Regenerate the `.stderr` snapshots with `TRYBUILD=overwrite cargo test --test ui`.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
