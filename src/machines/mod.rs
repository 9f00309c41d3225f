//! The machines: what the labs' computers are made of, beside the server they run.
//!
//! [`wire`] is the namespace lab's switch; [`init`] is PID 1 of the appliance VM, which runs the
//! server as its one service.

pub mod init;
pub mod wire;
