//! A learning Ethernet switch connecting the virtio-net ports of guests that name the same
//! switch in their manifest.
//!
//! Guests run on different physical CPUs, so the switch is the meeting point: the sending CPU
//! copies a frame into the bounded inbox of each destination port (dropping and counting when
//! full) and kicks the destination's CPU. Once the sender has let go of its own devices, it
//! runs [`Switch::deliver_pending`]: each destination's deliverer moves the inbox into that
//! guest's receive queue right away (on the sender's CPU, with the receiver's device lock), so a
//! receiver that polls its ring with interrupts off sees frames without having to exit first.
//! Whatever is left (no deliverer, or no buffers yet) the destination's CPU drains after its
//! next exit. Ports of different switches share nothing, so no frame can cross between
//! switches.

#![forbid(unsafe_code)]

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use spin::Mutex;

/// An Ethernet MAC address.
pub type MacAddr = [u8; 6];

/// Frames an inbox holds by default before new ones are dropped.
pub const DEFAULT_INBOX_FRAMES: usize = 256;
/// Learned addresses at most; beyond this, unknown senders are not learned (their replies
/// are flooded instead), so a guest inventing addresses cannot grow hypervisor memory.
pub const MAX_LEARNED_MACS: usize = 4096;
/// Shortest frame forwarded: destination, source and EtherType.
pub const MIN_FRAME_LEN: usize = 14;
/// Longest frame forwarded: 1500 bytes of payload, the Ethernet header and a VLAN tag.
pub const MAX_FRAME_LEN: usize = 1518;

/// Index of a port on its switch.
pub type PortId = usize;

/// Counters of one port, from the guest's point of view.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Frames the guest sent into the switch.
    pub tx_frames: u64,
    /// Bytes the guest sent.
    pub tx_bytes: u64,
    /// Frames the guest sent that were too short or too long.
    pub tx_invalid: u64,
    /// Frames delivered into this port's inbox.
    pub rx_frames: u64,
    /// Bytes delivered into this port's inbox.
    pub rx_bytes: u64,
    /// Frames for this port dropped because its inbox was full.
    pub rx_dropped: u64,
}

struct PortState {
    inbox: VecDeque<Vec<u8>>,
    stats: PortStats,
    pending: Arc<AtomicBool>,
    waker: Option<Box<dyn Fn() + Send + Sync>>,
    deliverer: Option<Deliverer>,
}

/// Moves a port's waiting frames into its guest's receive queue (see [`Switch::deliver_pending`]).
pub type Deliverer = Arc<dyn Fn() + Send + Sync>;

struct SwitchState {
    ports: Vec<PortState>,
    macs: BTreeMap<MacAddr, PortId>,
}

/// One switch.
pub struct Switch {
    name: String,
    inbox_frames: usize,
    state: Mutex<SwitchState>,
    /// Frames were queued since [`Switch::deliver_pending`] last looked: senders call it after
    /// every exit that may have transmitted, and most of those sent nothing.
    queued: AtomicBool,
}

impl Switch {
    /// A switch with no ports whose inboxes hold `inbox_frames` frames each.
    pub fn new(name: &str, inbox_frames: usize) -> Arc<Self> {
        Arc::new(Self {
            name: String::from(name),
            inbox_frames,
            queued: AtomicBool::new(false),
            state: Mutex::new(SwitchState {
                ports: Vec::new(),
                macs: BTreeMap::new(),
            }),
        })
    }

    /// The switch's name from the manifest.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds a port (one per guest network card).
    pub fn add_port(self: &Arc<Self>) -> SwitchPort {
        let pending = Arc::new(AtomicBool::new(false));
        let mut state = self.state.lock();
        let id = state.ports.len();
        state.ports.push(PortState {
            inbox: VecDeque::new(),
            stats: PortStats::default(),
            pending: pending.clone(),
            waker: None,
            deliverer: None,
        });
        SwitchPort {
            switch: self.clone(),
            id,
            pending,
        }
    }

    /// Counters of port `id`.
    pub fn port_stats(&self, id: PortId) -> Option<PortStats> {
        self.state.lock().ports.get(id).map(|p| p.stats)
    }

    /// Sets what moves port `id`'s inbox into its guest's receive queue from another CPU.
    /// It is called without the switch locked, so it may take the port's frames.
    pub fn set_deliverer(&self, id: PortId, deliverer: Deliverer) {
        if let Some(port) = self.state.lock().ports.get_mut(id) {
            port.deliverer = Some(deliverer);
        }
    }

    /// Runs the deliverer of every port but `from` that has frames waiting, if frames were
    /// queued since the last call (frames a receiver had no buffers for are its own CPU's to
    /// retry). Cheap when nothing was sent. The caller must not hold any guest's device lock
    /// (a deliverer takes its own guest's).
    pub fn deliver_pending(&self, from: PortId) {
        if !self.queued.swap(false, Ordering::AcqRel) {
            return;
        }
        let due: Vec<Deliverer> = {
            let state = self.state.lock();
            state
                .ports
                .iter()
                .enumerate()
                .filter(|(id, p)| *id != from && p.pending.load(Ordering::Acquire))
                .filter_map(|(_, p)| p.deliverer.clone())
                .collect()
        };
        for deliver in due {
            deliver();
        }
    }

    /// Number of ports.
    pub fn port_count(&self) -> usize {
        self.state.lock().ports.len()
    }

    /// Forwards `frame` from port `from`: learns the source, then delivers to the learned port
    /// of the destination, or to every other port for group and unknown addresses.
    fn forward(&self, from: PortId, frame: Vec<u8>) {
        let mut state = self.state.lock();
        let state = &mut *state;
        let Some(src_port) = state.ports.get_mut(from) else {
            return;
        };
        let (Some(dst), Some(src)) = (mac_at(&frame, 0), mac_at(&frame, 6)) else {
            src_port.stats.tx_invalid += 1;
            return;
        };
        if frame.len() < MIN_FRAME_LEN || frame.len() > MAX_FRAME_LEN {
            src_port.stats.tx_invalid += 1;
            return;
        }
        src_port.stats.tx_frames += 1;
        src_port.stats.tx_bytes += frame.len() as u64;
        // Group addresses are never a frame's source; do not learn them.
        if !is_group(&src) && (state.macs.len() < MAX_LEARNED_MACS || state.macs.contains_key(&src))
        {
            state.macs.insert(src, from);
        }
        let target = if is_group(&dst) {
            None
        } else {
            state.macs.get(&dst).copied()
        };
        // Set under the lock, before the frame is queued: deliver_pending clears it and then
        // takes the lock, so it sees every frame queued before or with this flag.
        self.queued.store(true, Ordering::Release);
        match target {
            // Learned on the sender's own port: the destination is already behind it.
            Some(to) if to == from => {}
            Some(to) => Self::deliver(&mut state.ports, to, frame, self.inbox_frames),
            None => {
                let count = state.ports.len();
                let Some(last) = (0..count).rev().find(|&p| p != from) else {
                    return;
                };
                // Copies for all but the last receiver, which gets the sender's buffer.
                for to in (0..last).filter(|&p| p != from) {
                    Self::deliver(&mut state.ports, to, frame.clone(), self.inbox_frames);
                }
                Self::deliver(&mut state.ports, last, frame, self.inbox_frames);
            }
        }
    }

    fn deliver(ports: &mut [PortState], to: PortId, frame: Vec<u8>, capacity: usize) {
        let Some(port) = ports.get_mut(to) else {
            return;
        };
        if port.inbox.len() >= capacity {
            port.stats.rx_dropped += 1;
            return;
        }
        port.stats.rx_frames += 1;
        port.stats.rx_bytes += frame.len() as u64;
        port.inbox.push_back(frame);
        // Wake the port's CPU only on the first frame since it last looked.
        if !port.pending.swap(true, Ordering::AcqRel) {
            if let Some(wake) = &port.waker {
                wake();
            }
        }
    }
}

fn mac_at(frame: &[u8], offset: usize) -> Option<MacAddr> {
    frame.get(offset..offset + 6)?.try_into().ok()
}

/// Multicast and broadcast addresses have the I/G bit (bit 0 of the first byte) set.
fn is_group(mac: &MacAddr) -> bool {
    mac[0] & 1 != 0
}

/// One guest's connection to a switch. Cheap to check for pending frames from any CPU.
pub struct SwitchPort {
    switch: Arc<Switch>,
    id: PortId,
    pending: Arc<AtomicBool>,
}

impl SwitchPort {
    /// This port's index on its switch.
    pub fn id(&self) -> PortId {
        self.id
    }

    /// The switch this port belongs to.
    pub fn switch(&self) -> &Arc<Switch> {
        &self.switch
    }

    /// Sets what to call when frames arrive for an idle port (e.g. send an IPI to the guest's
    /// CPU). Called with the switch locked: it must not touch the switch.
    pub fn set_waker(&self, waker: Box<dyn Fn() + Send + Sync>) {
        if let Some(port) = self.switch.state.lock().ports.get_mut(self.id) {
            port.waker = Some(waker);
        }
    }

    /// Sends one Ethernet frame (without virtio header) into the switch.
    pub fn send(&self, frame: Vec<u8>) {
        self.switch.forward(self.id, frame);
    }

    /// Whether frames arrived since the last [`Self::take_pending`].
    pub fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Clears the pending flag and reports whether it was set; frames arriving afterwards set
    /// it again.
    pub fn take_pending(&self) -> bool {
        self.pending.swap(false, Ordering::AcqRel)
    }

    /// The oldest frame waiting for this port.
    pub fn recv(&self) -> Option<Vec<u8>> {
        self.switch
            .state
            .lock()
            .ports
            .get_mut(self.id)?
            .inbox
            .pop_front()
    }

    /// Puts a frame back at the head of the inbox (the guest had no buffer for it yet).
    pub fn unrecv(&self, frame: Vec<u8>) {
        if let Some(port) = self.switch.state.lock().ports.get_mut(self.id) {
            port.inbox.push_front(frame);
        }
        // Still pending: the next poll tries again (a busy-polling driver may add receive
        // buffers without notifying, so nothing else would).
        self.pending.store(true, Ordering::Release);
    }

    /// Frames waiting.
    pub fn inbox_len(&self) -> usize {
        self.switch
            .state
            .lock()
            .ports
            .get(self.id)
            .map_or(0, |p| p.inbox.len())
    }

    /// Drops every waiting frame (the guest reset its network card).
    pub fn clear_inbox(&self) {
        if let Some(port) = self.switch.state.lock().ports.get_mut(self.id) {
            port.inbox.clear();
        }
        self.pending.store(false, Ordering::Release);
    }

    /// This port's counters.
    pub fn stats(&self) -> PortStats {
        self.switch.port_stats(self.id).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn frame(dst: MacAddr, src: MacAddr, fill: u8) -> Vec<u8> {
        let mut f = vec![fill; 60];
        f[..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f
    }

    const A: MacAddr = [2, 0, 0, 0, 0, 1];
    const B: MacAddr = [2, 0, 0, 0, 0, 2];
    const BCAST: MacAddr = [0xff; 6];

    #[test]
    fn learns_then_forwards_only_to_the_owner() {
        let sw = Switch::new("lan", 4);
        let (pa, pb, pc) = (sw.add_port(), sw.add_port(), sw.add_port());
        // Unknown destination: flooded to both others.
        pa.send(frame(B, A, 1));
        assert_eq!((pb.inbox_len(), pc.inbox_len(), pa.inbox_len()), (1, 1, 0));
        // B answers A: A is learned, so only A gets it.
        pb.send(frame(A, B, 2));
        assert_eq!((pa.inbox_len(), pc.inbox_len()), (1, 1));
        assert!(pa.take_pending());
        assert_eq!(pa.recv().map(|f| f[20]), Some(2));
        // Now A to B goes to B alone.
        pa.send(frame(B, A, 3));
        assert_eq!((pb.inbox_len(), pc.inbox_len()), (2, 1));
    }

    #[test]
    fn floods_group_addresses_and_drops_when_full() {
        let sw = Switch::new("lan", 2);
        let (pa, pb) = (sw.add_port(), sw.add_port());
        for _ in 0..3 {
            pa.send(frame(BCAST, A, 0));
        }
        assert_eq!(pb.inbox_len(), 2);
        assert_eq!(pb.stats().rx_dropped, 1);
        assert_eq!(pa.stats().tx_frames, 3);
        pa.send(vec![0; 10]);
        pa.send(vec![0; MAX_FRAME_LEN + 1]);
        assert_eq!(pa.stats().tx_invalid, 2);
    }

    #[test]
    fn deliver_pending_runs_only_the_deliverers_of_ports_with_frames() {
        use core::sync::atomic::AtomicUsize;
        let sw = Switch::new("lan", 8);
        let (pa, pb, pc) = (sw.add_port(), sw.add_port(), sw.add_port());
        let runs: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
        for (id, r) in runs.iter().enumerate() {
            let r = r.clone();
            sw.set_deliverer(
                id,
                Arc::new(move || {
                    r.fetch_add(1, Ordering::Relaxed);
                }),
            );
        }
        // B learns its address; a frame from A to B leaves C (and the sender) alone.
        pb.send(frame(BCAST, B, 0));
        assert!(pa.take_pending() && pc.take_pending());
        pa.send(frame(B, A, 1));
        sw.deliver_pending(pa.id());
        let counts: Vec<usize> = runs.iter().map(|r| r.load(Ordering::Relaxed)).collect();
        assert_eq!(counts, [0, 1, 0]);
        // A deliverer that takes the frames clears the flag: nothing runs twice.
        assert!(pb.take_pending());
        sw.deliver_pending(pa.id());
        assert_eq!(runs[1].load(Ordering::Relaxed), 1);
    }

    #[test]
    fn waker_runs_once_per_idle_period() {
        use core::sync::atomic::AtomicUsize;
        let sw = Switch::new("lan", 8);
        let (pa, pb) = (sw.add_port(), sw.add_port());
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        pb.set_waker(Box::new(move || {
            c.fetch_add(1, Ordering::Relaxed);
        }));
        pa.send(frame(BCAST, A, 0));
        pa.send(frame(BCAST, A, 0));
        assert_eq!(count.load(Ordering::Relaxed), 1);
        assert!(pb.take_pending());
        pa.send(frame(BCAST, A, 0));
        assert_eq!(count.load(Ordering::Relaxed), 2);
    }
}
