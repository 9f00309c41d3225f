//! The tools: the commands a person runs against a time server, jam or any other.
//!
//! Each uses the server's protocol (to read a reply) and, where it stops on a signal, its
//! shutdown; none is used by the server.

pub mod bench;
pub mod capture;
pub mod check;
pub mod client;
pub mod grade;
pub mod lab;
pub mod show;
pub mod talk;
