//! Every other parser of outside input: `jam wire`'s impairments file, the appliance's `ip=`,
//! a server address, a span of time, the reply parser of query/probe/bench, and `jam talk`'s
//! escapes, which must read back what `escape` writes.
#![no_main]

use jam::server::protocol::{escape, parse_time_reply, unescape};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The reply parser takes bytes: a reply it accepts is exactly what the server would send.
    if let Some(t) = parse_time_reply(data) {
        assert!(t.hour < 24 && t.minute < 60 && t.second <= 60);
        assert_eq!(&t.reply()[..12], data);
    }
    assert_eq!(unescape(&escape(data)).unwrap(), data);
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = jam::machines::wire::parse_impairments(text);
    if let Some(Ok(ip)) = jam::machines::init::parse_ip(text) {
        let mask = u32::from(ip.netmask);
        assert_eq!(mask.leading_ones() + mask.trailing_zeros(), 32, "a netmask with holes: {}", ip.netmask);
    }
    if let Ok(target) = jam::tools::client::Target::parse(text) {
        // What it prints, it parses back to the same.
        assert_eq!(jam::tools::client::Target::parse(&target.to_string()).unwrap(), target);
    }
    let _ = jam::settings::duration(text);
    let _ = jam::settings::listen_addr(text);
    if let Ok(bytes) = unescape(text) {
        assert_eq!(unescape(&escape(&bytes)).unwrap(), bytes);
    }
});
