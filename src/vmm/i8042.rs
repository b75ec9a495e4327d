//! An 8042 keyboard controller with nothing plugged into it (IBM PC/AT keyboard controller
//! command set, as Linux's `drivers/input/serio/i8042.c` drives it), for two reasons:
//! the guest resets the machine through it (command FEh), and Linux probes it at every boot.
//!
//! vm-superio's `I8042Device` handles the reset but reads 0 everywhere, so the output buffer
//! never fills: Linux's "read the command byte" (20h) then polls the status port 10,000 times
//! before giving up ("Can't read CTR while initializing i8042"). Each poll is a VM exit: in the
//! nested rig that was about 3 s of every L2 boot. This controller answers the controller
//! commands Linux sends (20h/60h CTR, A7h-A9h aux port, AAh self-test, ABh keyboard interface
//! test, ADh/AEh, D0h/D1h output port, D3h aux loop). There is no aux (mouse) port, and the
//! controller says so the way Linux's `i8042_check_aux` can hear at once: the D3h loop byte
//! comes back without the AUXDATA status bit (the loop failed), and the A9h interface test
//! then reports the aux clock line stuck low, so Linux gives up on the aux port. (A loop that
//! worked would send Linux into its aux IRQ test, a 250 ms wait for an IRQ 12 that no mouse
//! raises: a quarter of a second of every boot.) A controller command's answer replaces
//! whatever was still in the output buffer, as the 8042's one-byte buffer does.
//!
//! Bytes written to the keyboard itself (data port, no command pending) are dropped: no
//! keyboard answers, and Linux's atkbd gives up after its own timeouts (no polling).

use std::collections::VecDeque;

use vm_superio::Trigger;

/// Status register bits (port 64h, read).
mod status {
    /// Output buffer full: a byte waits in port 60h.
    pub const OBF: u8 = 1 << 0;
    /// System flag: the controller passed its self-test (set after power-on here).
    pub const SYS: u8 = 1 << 2;
    /// The last write went to the command port (64h) rather than the data port.
    pub const CMD: u8 = 1 << 3;
    /// Keyboard not inhibited (the keylock switch).
    pub const UNLOCKED: u8 = 1 << 4;
    /// The byte in the output buffer came from the aux port.
    pub const AUXDATA: u8 = 1 << 5;
}

/// Controller commands (port 64h, write).
mod cmd {
    pub const READ_CTR: u8 = 0x20;
    pub const WRITE_CTR: u8 = 0x60;
    pub const AUX_DISABLE: u8 = 0xa7;
    pub const AUX_ENABLE: u8 = 0xa8;
    pub const AUX_TEST: u8 = 0xa9;
    pub const SELF_TEST: u8 = 0xaa;
    pub const KBD_TEST: u8 = 0xab;
    pub const KBD_DISABLE: u8 = 0xad;
    pub const KBD_ENABLE: u8 = 0xae;
    pub const READ_OUTPUT_PORT: u8 = 0xd0;
    pub const WRITE_OUTPUT_PORT: u8 = 0xd1;
    pub const WRITE_KBD_OUTPUT: u8 = 0xd2;
    pub const AUX_LOOP: u8 = 0xd3;
    pub const AUX_SEND: u8 = 0xd4;
    /// Pulse output line 0 (the CPU reset line) low.
    pub const RESET_CPU: u8 = 0xfe;
}

/// Controller configuration byte ("CTR") bits.
mod ctr {
    pub const KBD_INT: u8 = 1 << 0;
    pub const SYS_FLAG: u8 = 1 << 2;
    pub const KBD_DISABLED: u8 = 1 << 4;
    pub const AUX_DISABLED: u8 = 1 << 5;
    pub const XLATE: u8 = 1 << 6;
}

/// Self-test passed (answer to AAh).
const SELF_TEST_OK: u8 = 0x55;
/// Interface test passed (answer to ABh).
const INTERFACE_OK: u8 = 0x00;
/// Interface test: clock line stuck low (answer to A9h: there is no aux port).
const INTERFACE_CLOCK_LOW: u8 = 0x01;
/// Output port bit 0: the CPU reset line (0 = hold the CPU in reset).
const OUTPUT_PORT_RESET_RELEASED: u8 = 1 << 0;
/// Output port after power-on: reset released, A20 enabled.
const OUTPUT_PORT_DEFAULT: u8 = 0x03;
/// Bytes the output buffer keeps at most.
const OUTPUT_DEPTH: usize = 16;
/// Offsets from port 60h, as the bus passes them.
pub const DATA_OFFSET: u8 = 0;
pub const COMMAND_OFFSET: u8 = 4;

/// The controller; `T` is signalled when the guest resets the machine.
pub struct I8042<T: Trigger> {
    reset: T,
    ctr: u8,
    output_port: u8,
    /// Bytes for the guest to read at port 60h, oldest first, and whether each came from
    /// the aux port.
    output: VecDeque<(u8, bool)>,
    /// A command that takes a parameter byte through port 60h.
    pending: Option<u8>,
    last_was_command: bool,
}

impl<T: Trigger> I8042<T> {
    pub fn new(reset: T) -> Self {
        Self {
            reset,
            ctr: ctr::KBD_INT | ctr::SYS_FLAG | ctr::XLATE,
            output_port: OUTPUT_PORT_DEFAULT,
            output: VecDeque::new(),
            pending: None,
            last_was_command: false,
        }
    }

    fn status(&self) -> u8 {
        let mut s = status::SYS | status::UNLOCKED;
        if let Some(&(_, aux)) = self.output.front() {
            s |= status::OBF;
            if aux {
                s |= status::AUXDATA;
            }
        }
        if self.last_was_command {
            s |= status::CMD;
        }
        s
    }

    /// A read of port 60h (`DATA_OFFSET`) or 64h (`COMMAND_OFFSET`).
    pub fn read(&mut self, offset: u8) -> u8 {
        match offset {
            COMMAND_OFFSET => self.status(),
            // An empty output buffer reads as its last byte on real parts; 0 is as good.
            _ => self.output.pop_front().map_or(0, |(b, _)| b),
        }
    }

    /// A write of port 60h or 64h. Errors are the reset trigger's.
    pub fn write(&mut self, offset: u8, value: u8) -> Result<(), T::E> {
        if offset == COMMAND_OFFSET {
            self.last_was_command = true;
            self.pending = None;
            return self.command(value);
        }
        self.last_was_command = false;
        match self.pending.take() {
            Some(cmd::WRITE_CTR) => self.ctr = value,
            Some(cmd::WRITE_OUTPUT_PORT) => {
                self.output_port = value;
                if value & OUTPUT_PORT_RESET_RELEASED == 0 {
                    return self.reset.trigger();
                }
            }
            // Echoed as if the keyboard had sent it.
            Some(cmd::WRITE_KBD_OUTPUT) => self.push(value, false),
            // No aux port behind the loop: the byte comes back without AUXDATA.
            Some(cmd::AUX_LOOP) => self.push(value, false),
            // To the aux device or the keyboard: nobody is there to answer.
            Some(_) | None => {}
        }
        Ok(())
    }

    /// Put a controller's answer in the output buffer, in place of anything unread.
    fn answer(&mut self, value: u8) {
        self.output.clear();
        self.push(value, false);
    }

    /// Real parts hold one byte; a few are kept here, the oldest dropped when a guest keeps
    /// asking without reading.
    fn push(&mut self, value: u8, aux: bool) {
        if self.output.len() >= OUTPUT_DEPTH {
            self.output.pop_front();
        }
        self.output.push_back((value, aux));
    }

    fn command(&mut self, value: u8) -> Result<(), T::E> {
        match value {
            cmd::READ_CTR => self.answer(self.ctr),
            cmd::WRITE_CTR
            | cmd::WRITE_OUTPUT_PORT
            | cmd::WRITE_KBD_OUTPUT
            | cmd::AUX_LOOP
            | cmd::AUX_SEND => self.pending = Some(value),
            cmd::AUX_DISABLE => self.ctr |= ctr::AUX_DISABLED,
            cmd::AUX_ENABLE => self.ctr &= !ctr::AUX_DISABLED,
            cmd::AUX_TEST => self.answer(INTERFACE_CLOCK_LOW),
            cmd::SELF_TEST => self.answer(SELF_TEST_OK),
            cmd::KBD_TEST => self.answer(INTERFACE_OK),
            cmd::KBD_DISABLE => self.ctr |= ctr::KBD_DISABLED,
            cmd::KBD_ENABLE => self.ctr &= !ctr::KBD_DISABLED,
            cmd::READ_OUTPUT_PORT => self.answer(self.output_port),
            cmd::RESET_CPU => return self.reset.trigger(),
            _ => log::debug!("i8042: command {value:#04x} ignored"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    #[derive(Clone, Default)]
    struct Count(Rc<Cell<u32>>);
    impl Trigger for Count {
        type E = std::convert::Infallible;
        fn trigger(&self) -> Result<(), Self::E> {
            self.0.set(self.0.get() + 1);
            Ok(())
        }
    }

    /// Linux's `__i8042_command`: write the command, the parameters, then poll the status for
    /// OBF before each result byte (up to 10,000 polls). Returns the results and the polls.
    fn linux_command(
        dev: &mut I8042<Count>,
        command: u8,
        params: &[u8],
        results: usize,
    ) -> (Vec<u8>, u32) {
        let mut polls = 0;
        dev.write(COMMAND_OFFSET, command).unwrap();
        for p in params {
            dev.write(DATA_OFFSET, *p).unwrap();
        }
        let mut out = Vec::new();
        for _ in 0..results {
            loop {
                polls += 1;
                assert!(
                    polls <= 10_000,
                    "Linux would time out on command {command:#x}"
                );
                if dev.read(COMMAND_OFFSET) & status::OBF != 0 {
                    break;
                }
            }
            out.push(dev.read(DATA_OFFSET));
        }
        (out, polls)
    }

    #[test]
    fn command_byte_reads_back_at_once_and_takes_writes() {
        let mut d = I8042::new(Count::default());
        assert_eq!(
            d.read(COMMAND_OFFSET) & status::OBF,
            0,
            "empty after power-on"
        );
        let (ctr, polls) = linux_command(&mut d, cmd::READ_CTR, &[], 1);
        assert_eq!(polls, 1, "the answer is there on the first poll");
        assert_eq!(ctr[0] & ctr::KBD_INT, ctr::KBD_INT);
        linux_command(&mut d, cmd::WRITE_CTR, &[0x47], 0);
        assert_eq!(linux_command(&mut d, cmd::READ_CTR, &[], 1).0, vec![0x47]);
        d.write(COMMAND_OFFSET, cmd::AUX_DISABLE).unwrap();
        assert_eq!(
            linux_command(&mut d, cmd::READ_CTR, &[], 1).0,
            vec![0x47 | ctr::AUX_DISABLED]
        );
        assert_eq!(
            d.read(COMMAND_OFFSET) & status::OBF,
            0,
            "the buffer drained"
        );
    }

    #[test]
    fn tests_pass_and_no_aux_port_is_reported() {
        let mut d = I8042::new(Count::default());
        assert_eq!(
            linux_command(&mut d, cmd::SELF_TEST, &[], 1).0,
            vec![SELF_TEST_OK]
        );
        assert_eq!(
            linux_command(&mut d, cmd::KBD_TEST, &[], 1).0,
            vec![INTERFACE_OK]
        );
        // i8042_check_aux: the loop byte comes back at once but without AUXDATA, so Linux's
        // __i8042_command returns -1 for the loop and leaves the byte unread (no 250 ms aux
        // IRQ test follows)...
        d.write(COMMAND_OFFSET, cmd::AUX_LOOP).unwrap();
        d.write(DATA_OFFSET, 0x5a).unwrap();
        let s = d.read(COMMAND_OFFSET);
        assert_eq!(s & (status::OBF | status::AUXDATA), status::OBF);
        // ...then the interface test (what Linux runs when the loop fails): its answer, a
        // stuck clock line, replaces the unread loop byte, and Linux returns "no aux port".
        assert_eq!(
            linux_command(&mut d, cmd::AUX_TEST, &[], 1).0,
            vec![INTERFACE_CLOCK_LOW]
        );
        assert_eq!(d.read(COMMAND_OFFSET) & status::OBF, 0, "nothing left over");
        assert_eq!(
            linux_command(&mut d, cmd::READ_CTR, &[], 1).1,
            1,
            "nothing stale left"
        );
    }

    #[test]
    fn reset_by_command_and_by_output_port() {
        let count = Count::default();
        let mut d = I8042::new(count.clone());
        // Linux's reboot (kb_wait, then FEh): the input buffer is never full.
        assert_eq!(d.read(COMMAND_OFFSET) & 0x02, 0);
        d.write(COMMAND_OFFSET, cmd::RESET_CPU).unwrap();
        assert_eq!(count.0.get(), 1);
        assert_eq!(
            linux_command(&mut d, cmd::READ_OUTPUT_PORT, &[], 1).0,
            vec![OUTPUT_PORT_DEFAULT]
        );
        linux_command(&mut d, cmd::WRITE_OUTPUT_PORT, &[OUTPUT_PORT_DEFAULT], 0);
        assert_eq!(count.0.get(), 1, "reset line still released");
        linux_command(&mut d, cmd::WRITE_OUTPUT_PORT, &[0x02], 0);
        assert_eq!(count.0.get(), 2, "reset line pulled");
    }

    #[test]
    fn keyboard_bytes_and_unknown_commands_change_nothing() {
        let count = Count::default();
        let mut d = I8042::new(count.clone());
        let before = linux_command(&mut d, cmd::READ_CTR, &[], 1).0;
        d.write(DATA_OFFSET, 0xf2).unwrap(); // atkbd's GET ID: no keyboard answers
        d.write(COMMAND_OFFSET, 0x42).unwrap();
        d.write(COMMAND_OFFSET, cmd::AUX_SEND).unwrap();
        d.write(DATA_OFFSET, 0xff).unwrap();
        assert_eq!(d.read(COMMAND_OFFSET) & status::OBF, 0);
        assert_eq!(linux_command(&mut d, cmd::READ_CTR, &[], 1).0, before);
        assert_eq!(count.0.get(), 0);
        for _ in 0..100 {
            d.write(COMMAND_OFFSET, cmd::SELF_TEST).unwrap();
        }
        assert_eq!(d.output.len(), 1, "each answer replaces the unread one");
        for _ in 0..100 {
            d.write(COMMAND_OFFSET, cmd::WRITE_KBD_OUTPUT).unwrap();
            d.write(DATA_OFFSET, 0x1c).unwrap();
        }
        assert_eq!(
            d.output.len(),
            OUTPUT_DEPTH,
            "a guest that never reads cannot grow it"
        );
        d.output.clear();
        // A command interrupted by another does not take the next data byte.
        d.write(COMMAND_OFFSET, cmd::WRITE_CTR).unwrap();
        d.write(COMMAND_OFFSET, cmd::KBD_ENABLE).unwrap();
        d.write(DATA_OFFSET, 0x00).unwrap();
        assert_eq!(linux_command(&mut d, cmd::READ_CTR, &[], 1).0, before);
    }
}
