//! libFuzzer entry for `pas::fuzzing::definition` (see src/fuzzing.rs for what it checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pas::fuzzing::definition(data));
