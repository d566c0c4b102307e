//! Compile-fail tests: each program in `tests/ui/` misuses `#[task]` or `#[flow]` and must be
//! rejected with the error recorded next to it in the matching `.stderr` file: one error, at the
//! user's token, naming no internals. Programs in `tests/ui/pass/` must compile and run.
//!
//! Regenerate the expected output with `TRYBUILD=overwrite cargo test --test ui`, then read it.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
