#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| netlab_fuzz::checks::chat_websocket(data));
