//! Fuzzes the decoding of job payloads as a worker fetches them: any bytes must decode to a job
//! or to an error, never a panic, and a decoded job must survive re-encoding unchanged.
//! Run with `cargo fuzz run envelope` (see fuzz/README.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|payload: &[u8]| {
    dtask::__private::fuzz_envelope(payload);
});
