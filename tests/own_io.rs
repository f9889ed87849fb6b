//! The `own_io` example runs to its end: the sans-IO engines
//! (`HeartbeatSchedule`, `EventStream`) driven by a program's own sockets
//! (one blocking `TcpStream` per request, no connection of the crate's)
//! keep a device present and bring another user's join, against the
//! local presence server.
#![cfg(feature = "emulator")]

#[path = "../examples/own_io.rs"]
mod own_io;

#[test]
fn the_engines_run_on_a_programs_own_io() {
    if let Err(e) = own_io::main() {
        panic!("{e}");
    }
}
