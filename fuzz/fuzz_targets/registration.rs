//! libFuzzer entry for `pas::fuzzing::registration` (see src/fuzzing.rs for what it checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pas::fuzzing::registration(data));
