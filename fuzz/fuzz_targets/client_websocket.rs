#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| netlab_fuzz::checks::client_websocket(data));
