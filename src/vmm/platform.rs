//! The devices one guest's vCPUs share: its UART, I/O APIC, virtio-mmio bus, and the interrupt
//! messages they produce on the way to the local APICs.

use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::addr::{GuestPhysAddr, PAGE_SIZE};
use crate::devices::ioapic::{Delivery, IoApic};
use crate::devices::rtc::Rtc;
use crate::devices::switch::{PortId, Switch};
use crate::devices::uart::Uart;
use crate::devices::virtio::bus::VirtioBus;
use crate::devices::virtio::console::ConsoleInput;
use crate::guest_mem::GuestMemory;
use crate::layout::{COM1_GSI, IOAPIC_BASE};

/// The I/O APIC's id (the MADT the loader writes says 0).
const IOAPIC_ID: u8 = 0;

/// Devices and counters one guest shares between its vCPUs.
pub struct GuestDevices {
    /// COM1.
    pub uart: Uart,
    /// The CMOS clock at ports 0x70/0x71.
    pub rtc: Rtc,
    /// The I/O APIC that routes device lines to the local APICs.
    pub ioapic: IoApic,
    /// The guest's virtio-mmio devices.
    pub virtio: VirtioBus,
    /// Bytes typed for this guest's COM1 (filled by the monitor on another CPU).
    pub uart_input: Arc<ConsoleInput>,
    /// The virtio-console's input, if the guest has one (filled by the monitor).
    pub console_input: Option<Arc<ConsoleInput>>,
    /// Interrupt messages from the I/O APIC not yet handed to a local APIC.
    pub deliveries: Vec<Delivery>,
    /// Accesses to ports with nothing behind them.
    pub unassigned_io: u64,
    /// Accesses to guest-physical addresses with nothing behind them.
    pub unassigned_mmio: u64,
    /// The switch ports of the guest's network cards, for handing frames to their peers.
    pub switch_ports: Vec<(Arc<Switch>, PortId)>,
}

impl Default for GuestDevices {
    fn default() -> Self {
        Self {
            uart: Uart::new(),
            rtc: Rtc::new(0),
            ioapic: IoApic::new(IOAPIC_ID),
            virtio: VirtioBus::new(),
            uart_input: ConsoleInput::new(),
            console_input: None,
            deliveries: Vec::new(),
            unassigned_io: 0,
            unassigned_mmio: 0,
            switch_ports: Vec::new(),
        }
    }
}

impl GuestDevices {
    /// Devices whose clock starts at `unix_now`.
    pub fn new(unix_now: u64) -> Self {
        Self {
            rtc: Rtc::new(unix_now),
            ..Self::default()
        }
    }

    /// Back to power-on state for a guest restart: devices reset, disks keep their contents.
    pub fn reset(&mut self, mem: &dyn GuestMemory, unix_now: u64) {
        self.uart = Uart::new();
        self.rtc = Rtc::new(unix_now);
        self.ioapic = IoApic::new(IOAPIC_ID);
        self.virtio.reset_all(mem);
        self.deliveries.clear();
        // Input typed for the old run is not for the new one.
        let _ = self.uart_input.take(usize::MAX);
        if let Some(input) = &self.console_input {
            let _ = input.take(usize::MAX);
        }
    }

    /// Drives I/O APIC input `gsi` to `level`.
    pub fn set_line(&mut self, gsi: u32, level: bool) {
        if let Some(d) = self.ioapic.set_line(gsi, level) {
            self.deliveries.push(d);
        }
    }

    /// The guest's APIC ended level-triggered interrupt `vector`: lines still asserted fire again.
    pub fn ioapic_eoi(&mut self, vector: u8) {
        let again = self.ioapic.eoi(vector);
        self.deliveries.extend(again);
    }

    /// Updates COM1's interrupt line after the UART changed.
    pub fn update_uart_line(&mut self) {
        let level = self.uart.irq_pending();
        self.set_line(COM1_GSI, level);
    }

    /// Serves virtio work that arrived from outside the guest (frames from the switch, console
    /// input) and raises the lines of devices that completed something. Returns whether work is
    /// still waiting (the guest had no buffers for it yet), so the caller polls again soon.
    pub fn poll_virtio(&mut self, mem: &dyn GuestMemory) -> bool {
        self.poll_uart_input();
        let mut raised = Vec::new();
        self.virtio.poll(mem, |gsi| raised.push(gsi));
        self.update_virtio_lines(&raised);
        self.virtio.has_pending_work() || self.uart_input.is_pending()
    }

    /// Moves typed bytes into COM1's receive FIFO, as many as fit (the rest wait, so nothing
    /// typed is lost), and raises GSI 4 if the guest enabled the receive interrupt.
    pub fn poll_uart_input(&mut self) {
        if !self.uart_input.take_pending() {
            return;
        }
        let room = self.uart.rx_room();
        let bytes = self.uart_input.take(room);
        for &b in &bytes {
            self.uart.push_rx(b);
        }
        if !self.uart_input.is_empty() {
            // Some input did not fit: it waits for the guest to read the FIFO.
            self.uart_input.set_pending();
        }
        if !bytes.is_empty() {
            self.update_uart_line();
        }
    }

    fn update_virtio_lines(&mut self, gsis: &[u32]) {
        for &gsi in gsis {
            let level = self.virtio.line_level(gsi);
            self.set_line(gsi, level);
        }
    }

    /// A device read at `gpa`, or `None` if no device is there.
    pub fn mmio_read(&mut self, gpa: GuestPhysAddr, size: u8) -> Option<u64> {
        let ioapic_offset = gpa.as_u64().wrapping_sub(IOAPIC_BASE.as_u64());
        if ioapic_offset < PAGE_SIZE {
            return Some(u64::from(self.ioapic.mmio_read(ioapic_offset)));
        }
        self.virtio.read(gpa, size)
    }

    /// A device write at `gpa`; false if no device is there.
    pub fn mmio_write(
        &mut self,
        gpa: GuestPhysAddr,
        size: u8,
        value: u64,
        mem: &dyn GuestMemory,
    ) -> bool {
        let ioapic_offset = gpa.as_u64().wrapping_sub(IOAPIC_BASE.as_u64());
        if ioapic_offset < PAGE_SIZE {
            let fired = self.ioapic.mmio_write(ioapic_offset, value as u32);
            self.deliveries.extend(fired);
            return true;
        }
        let mut raised = Vec::new();
        let claimed = self
            .virtio
            .write(gpa, size, value, mem, |gsi| raised.push(gsi));
        if claimed {
            // InterruptACK lowers a line: look at the line of the slot written too.
            if let Some(gsi) = self.virtio.gsi_of(gpa) {
                raised.push(gsi);
            }
            self.update_virtio_lines(&raised);
        }
        claimed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IER_RX_AVAILABLE: u8 = 1;

    #[test]
    fn typed_bytes_wait_until_the_uart_fifo_has_room() {
        let mut dev = GuestDevices::default();
        dev.uart.write(1, IER_RX_AVAILABLE);
        let room = dev.uart.rx_room();
        for _ in 0..room - 4 {
            dev.uart.push_rx(b'.');
        }
        assert_eq!(dev.uart_input.push(b"abcdefgh"), 8);
        dev.poll_uart_input();
        assert_eq!(dev.uart.rx_room(), 0);
        assert!(dev.uart_input.is_pending(), "the rest waits");
        assert!(dev.uart.irq_pending());
        for _ in 0..room - 4 {
            assert_eq!(dev.uart.read(0), b'.');
        }
        dev.poll_uart_input();
        let got: Vec<u8> = (0..8).map(|_| dev.uart.read(0)).collect();
        assert_eq!(got, b"abcdefgh", "nothing lost, nothing repeated");
        assert!(!dev.uart_input.is_pending());
        assert!(!dev.uart.irq_pending());
    }
}
