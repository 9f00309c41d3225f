//! The command line: arguments split at NUL bytes, and one environment variable, never panic
//! the parser; what parses either is a command or is an error with a message.
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (env_part, args_part) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b""[..], data),
    };
    let args: Vec<OsString> = args_part.split(|&b| b == 0).map(|a| OsString::from_vec(a.to_vec())).collect();
    // `NAME=value` for whatever variable the parser asks for by that name.
    let text = String::from_utf8_lossy(env_part).into_owned();
    let (name, value) = text.split_once('=').unwrap_or(("", ""));
    let env = |asked: &str| (asked == name).then(|| value.to_string());
    if let Err(e) = jam::cli::parse(args, &env) {
        assert!(!e.to_string().is_empty());
    }
});
