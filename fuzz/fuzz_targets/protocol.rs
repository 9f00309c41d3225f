//! The protocol core on arbitrary bytes cut at arbitrary points, as TCP may deliver them.
//!
//! The first byte says how many of the next bytes are chunk sizes; the rest is the stream. The
//! stream is fed to `protocol::respond` whole, and again in those chunks, the way the connection
//! layer feeds it (pending input kept, answered again when the output budget was reached).
//! Checked for every input: the same replies for every split; one reply per complete line, in
//! order, each a documented line; `consumed` never past the input; output within its budget
//! plus one line; pending input under the line limit.
#![no_main]

use jam::server::protocol::{self, Flow, RequestError, WallTime};
use libfuzzer_sys::fuzz_target;

const MAX_LINE: usize = 64;
const BUDGET: usize = 128;
const NOW: WallTime = WallTime { hour: 12, minute: 34, second: 56 };

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else { return };
    let (sizes, stream) = rest.split_at(rest.len().min(usize::from(n % 16)));
    let whole = feed(stream, &[]);
    let split = feed(stream, sizes);
    assert_eq!(whole, split, "replies differ when the stream is cut at {sizes:?}");
});

/// Feeds `stream` in chunks of `sizes` (then the rest whole); returns the replies and how it ended.
fn feed(stream: &[u8], sizes: &[u8]) -> (Vec<u8>, Flow) {
    let documented = documented();
    let mut pending = Vec::new();
    let mut replies = Vec::new();
    let mut rest = stream;
    let mut chunks: Vec<&[u8]> = Vec::new();
    for &size in sizes {
        let (chunk, after) = rest.split_at(rest.len().min(usize::from(size)));
        chunks.push(chunk);
        rest = after;
    }
    chunks.push(rest);
    for chunk in chunks {
        pending.extend_from_slice(chunk);
        loop {
            let mut out = Vec::new();
            let a = protocol::respond(&pending, NOW, MAX_LINE, BUDGET, &mut out);
            assert!(a.consumed <= pending.len());
            assert!(out.len() < BUDGET + 64, "output past its budget: {} bytes", out.len());
            let lines: Vec<&[u8]> = out.split_inclusive(|&b| b == b'\n').collect();
            for line in &lines {
                assert!(documented.iter().any(|d| d == line), "an undocumented reply {line:?}");
            }
            // One reply per complete line, QUIT alone unanswered.
            let quit = usize::from(a.flow == Flow::Quit);
            assert_eq!(lines.len() + quit, a.lines);
            replies.extend_from_slice(&out);
            pending.drain(..a.consumed);
            if a.flow != Flow::Continue {
                return (replies, a.flow);
            }
            if a.consumed == 0 {
                break;
            }
        }
        assert!(pending.len() < MAX_LINE, "{} bytes pending, over the line limit", pending.len());
    }
    (replies, Flow::Continue)
}

fn documented() -> Vec<Vec<u8>> {
    let errors = [
        RequestError::Unknown,
        RequestError::BareLf,
        RequestError::NotUtf8,
        RequestError::Control,
        RequestError::TooLong,
    ];
    let mut all: Vec<Vec<u8>> = errors.iter().map(|e| e.reply().to_vec()).collect();
    all.push(NOW.reply().to_vec());
    all
}
