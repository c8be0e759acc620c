//! virtio-net (device ID 1, virtio 1.2 §5.1) attached to a port of a [`Switch`].
//!
//! No offloads: frames carry the 12-byte `virtio_net_hdr` (VERSION_1 layout) which is ignored
//! on transmit and zero (num_buffers = 1) on receive. Transmitted frames go into the switch on
//! this CPU; frames for this port wait in its inbox until this guest's CPU drains them into the
//! receive queue ([`VirtioDevice::poll`], or when the driver adds receive buffers).
//!
//! [`Switch`]: crate::devices::switch::Switch

#![forbid(unsafe_code)]

use alloc::vec;

use super::{copy_config, DeviceCtx, DeviceError, DeviceStats, VirtioDevice, DEVICE_ID_NET};
use crate::devices::switch::{MacAddr, SwitchPort, MAX_FRAME_LEN, MIN_FRAME_LEN};

/// The mtu configuration field is valid (§5.1.3).
pub const F_MTU: u64 = 1 << 3;
/// The mac configuration field is valid.
pub const F_MAC: u64 = 1 << 5;
/// The status configuration field is valid.
pub const F_STATUS: u64 = 1 << 16;
/// Link up, in the status configuration field.
pub const S_LINK_UP: u16 = 1;
/// Size of `struct virtio_net_hdr` with VERSION_1 (num_buffers included, §5.1.6).
pub const NET_HDR_LEN: usize = 12;
/// Offset of num_buffers in the header.
const NUM_BUFFERS_OFFSET: usize = 10;
/// Payload MTU offered to the driver; frames stay within the switch's maximum.
const MTU: u16 = 1500;
/// Queue indices of the first (only) queue pair.
pub const RX_QUEUE: u16 = 0;
/// Transmit queue index.
pub const TX_QUEUE: u16 = 1;
/// Largest queue the driver may set up.
const QUEUE_SIZE: u16 = 256;

/// A network card on a switch port.
pub struct Net {
    port: SwitchPort,
    mac: MacAddr,
    stats: DeviceStats,
}

impl Net {
    /// A card with address `mac` on `port`.
    pub fn new(port: SwitchPort, mac: MacAddr) -> Self {
        Self {
            port,
            mac,
            stats: DeviceStats::default(),
        }
    }

    /// The switch port.
    pub fn port(&self) -> &SwitchPort {
        &self.port
    }

    fn transmit(&mut self, ctx: &mut DeviceCtx<'_>) -> Result<(), DeviceError> {
        while let Some(chain) = ctx.pop(TX_QUEUE)? {
            self.stats.requests += 1;
            let total = chain.readable_len();
            let frame_len = total.saturating_sub(NET_HDR_LEN as u64);
            if total < NET_HDR_LEN as u64
                || !(MIN_FRAME_LEN as u64..=MAX_FRAME_LEN as u64).contains(&frame_len)
            {
                self.stats.errors += 1;
            } else {
                let mut reader = chain.reader(ctx.mem);
                // The length was checked above, so neither can come up short.
                let _ = reader.skip(NET_HDR_LEN as u64);
                let mut frame = vec![0u8; frame_len as usize];
                reader.read(&mut frame)?;
                self.stats.bytes_from_guest += frame_len;
                self.port.send(frame);
            }
            ctx.add_used(TX_QUEUE, chain, 0)?;
        }
        Ok(())
    }

    fn receive(&mut self, ctx: &mut DeviceCtx<'_>) -> Result<(), DeviceError> {
        while let Some(frame) = self.port.recv() {
            let Some(chain) = ctx.pop(RX_QUEUE)? else {
                // No buffer yet: the driver's next receive notification drains the rest.
                self.port.unrecv(frame);
                break;
            };
            let mut writer = chain.writer(ctx.mem);
            let used = if writer.remaining() < (NET_HDR_LEN + frame.len()) as u64 {
                self.stats.dropped += 1;
                0
            } else {
                let mut header = [0u8; NET_HDR_LEN];
                header[NUM_BUFFERS_OFFSET..].copy_from_slice(&1u16.to_le_bytes());
                writer.write(&header)?;
                writer.write(&frame)?;
                self.stats.requests += 1;
                self.stats.bytes_to_guest += frame.len() as u64;
                (NET_HDR_LEN + frame.len()) as u32
            };
            ctx.add_used(RX_QUEUE, chain, used)?;
        }
        Ok(())
    }
}

impl VirtioDevice for Net {
    fn name(&self) -> &'static str {
        "virtio-net"
    }

    fn device_id(&self) -> u32 {
        DEVICE_ID_NET
    }

    fn features(&self) -> u64 {
        F_MAC | F_STATUS | F_MTU
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // struct virtio_net_config (§5.1.4): mac, status, max_virtqueue_pairs (no MQ), mtu.
        let mut image = [0u8; 12];
        image[0..6].copy_from_slice(&self.mac);
        image[6..8].copy_from_slice(&S_LINK_UP.to_le_bytes());
        image[10..12].copy_from_slice(&MTU.to_le_bytes());
        copy_config(&image, offset, data);
    }

    fn notify(&mut self, queue: u16, ctx: &mut DeviceCtx<'_>) -> Result<(), DeviceError> {
        match queue {
            TX_QUEUE => self.transmit(ctx),
            RX_QUEUE => self.receive(ctx),
            _ => Ok(()),
        }
    }

    fn has_pending_work(&self) -> bool {
        self.port.has_pending()
    }

    fn poll(&mut self, ctx: &mut DeviceCtx<'_>) -> Result<(), DeviceError> {
        if self.port.take_pending() {
            self.receive(ctx)?;
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.port.clear_inbox();
    }

    fn stats(&self) -> DeviceStats {
        let port = self.port.stats();
        DeviceStats {
            dropped: self.stats.dropped + port.rx_dropped,
            ..self.stats
        }
    }
}
