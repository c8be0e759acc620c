//! The monitor console: the serial line the hypervisor shares with its guests, seen from the
//! keyboard side. Bytes typed on COM1 go to the guest that has the input focus or to the
//! hypervisor's shell; an escape key (Ctrl-A by default) moves the focus. Everything here is
//! pure logic (routing, line editing, command parsing, report formatting); the hardware and
//! guest glue lives in `hypervisor::monitor`.

#![forbid(unsafe_code)]

pub mod command;
pub mod focus;
pub mod line;
pub mod report;

pub use command::{parse, Command, CommandError};
pub use focus::{Focus, Routed, Router, ESCAPE_WAIT_MS};
pub use line::{Edit, LineEditor};
pub use report::{DeviceRow, GuestRow, MONITOR_PREFIX};
