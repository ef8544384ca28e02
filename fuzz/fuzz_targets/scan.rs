#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sipstamp::fuzzing::scan_message(data));
