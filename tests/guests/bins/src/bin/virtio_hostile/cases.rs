//! The hostile cases. Each sets the device up (or half up), does one thing the virtio spec
//! forbids, and reports what the device did; `main` judges it, checks the canaries, and resets
//! the device to see it work again.

use guest_virtio::window::reg;

use crate::dev::{
    write_desc, Dev, DevError, Observation, DESC_BYTES, DESC_INDIRECT, DESC_NEXT, DESC_WRITE,
    F_INDIRECT_DESC, NEEDS_RESET, SECTOR_BYTES,
};

/// What a case needs to know about the guest.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Env {
    /// First address past the highest RAM.
    pub ram_end: u64,
    pub queue_size: u16,
    pub case_ms: u64,
}

/// What happened in a case.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Attempt {
    pub obs: Observation,
    /// Whether a successful completion means the device used memory it must not (every
    /// case but those whose buffers are all valid).
    pub is_ok_harmful: bool,
    /// A case-specific condition that failed, if any.
    pub problem: Option<&'static str>,
    /// Something worth printing (how the device refused, or why the case could not run).
    pub note: Option<&'static str>,
}

impl Attempt {
    fn strict(obs: Observation) -> Self {
        Self {
            obs,
            is_ok_harmful: true,
            problem: None,
            note: None,
        }
    }
}

pub(crate) type CaseFn = fn(&mut Dev, &Env) -> Result<Attempt, DevError>;

/// Every case, in the order run.
pub(crate) const CASES: [(&str, CaseFn); 13] = [
    ("desc-outside-ram", desc_outside_ram),
    ("desc-in-mmio", desc_in_mmio),
    ("desc-64g", desc_64g),
    ("desc-len-4g", desc_len_4g),
    ("chain-loop", chain_loop),
    ("chain-next-out-of-range", chain_next_out_of_range),
    ("chain-longer-than-queue", chain_longer_than_queue),
    ("indirect-in-indirect", indirect_in_indirect),
    ("avail-jump", avail_jump),
    ("ring-outside-ram", ring_outside_ram),
    ("queue-size-not-pow2", queue_size_not_pow2),
    ("notify-disabled-queue", notify_disabled_queue),
    ("garbage-registers", garbage_registers),
];

const SIXTY_FOUR_GIB: u64 = 64 << 30;
/// Entries of the over-long indirect chain: more than any queue, than QEMU's 1024 limit and
/// than Bulkhead's indirect-table limit.
const LONG_CHAIN: u64 = 1030;

/// A request whose data descriptor points at `addr` for `len` bytes.
fn with_data(dev: &mut Dev, env: &Env, addr: u64, len: u32) -> Result<Attempt, DevError> {
    dev.init(env.queue_size)?;
    let table = dev.mem.desc;
    dev.write_request_frame(table);
    dev.data_desc(table, addr, len);
    dev.publish(0);
    dev.notify();
    Ok(Attempt::strict(dev.observe(env.case_ms)))
}

fn desc_outside_ram(dev: &mut Dev, env: &Env) -> Result<Attempt, DevError> {
    with_data(dev, env, env.ram_end, SECTOR_BYTES)
}

/// Into the device's own register window (its configuration space).
fn desc_in_mmio(dev: &mut Dev, env: &Env) -> Result<Attempt, DevError> {
    let addr = dev.w.base() + reg::CONFIG;
    with_data(dev, env, addr, SECTOR_BYTES)
}

fn desc_64g(dev: &mut Dev, env: &Env) -> Result<Attempt, DevError> {
    with_data(dev, env, SIXTY_FOUR_GIB, SECTOR_BYTES)
}

/// A buffer in RAM claiming 4 GiB - 1 bytes: past the guard page and past RAM's end.
fn desc_len_4g(dev: &mut Dev, env: &Env) -> Result<Attempt, DevError> {
    let addr = dev.mem.data;
    with_data(dev, env, addr, u32::MAX)
}

/// The last descriptor chains back to an earlier one (blk: status → data, so the device-
/// writable order stays right and only the loop is wrong).
fn chain_loop(dev: &mut Dev, env: &Env) -> Result<Attempt, DevError> {
    dev.init(env.queue_size)?;
    let table = dev.mem.desc;
    dev.write_request_frame(table);
    if dev.is_blk {
        dev.valid_data_desc(table);
        write_desc(table, 2, dev.mem.header + 16, 1, DESC_WRITE | DESC_NEXT, 1);
    } else {
        write_desc(table, 0, dev.mem.header, 36, DESC_NEXT, 1);
        write_desc(table, 1, dev.mem.header + 36, 36, DESC_NEXT, 0);
    }
    dev.publish(0);
    dev.notify();
    Ok(Attempt::strict(dev.observe(env.case_ms)))
}

/// The data descriptor's `next` names a descriptor beyond the table.
fn chain_next_out_of_range(dev: &mut Dev, env: &Env) -> Result<Attempt, DevError> {
    dev.init(env.queue_size)?;
    let table = dev.mem.desc;
    dev.write_request_frame(table);
    let beyond = env.queue_size.saturating_add(3);
    let index = dev.data_index();
    let flags = if dev.is_blk {
        DESC_WRITE | DESC_NEXT
    } else {
        DESC_NEXT
    };
    write_desc(table, index, dev.mem.data, SECTOR_BYTES, flags, beyond);
    dev.publish(0);
    dev.notify();
    Ok(Attempt::strict(dev.observe(env.case_ms)))
}

fn no_indirect(dev: &Dev) -> Option<Attempt> {
    (dev.features & F_INDIRECT_DESC == 0).then_some(Attempt {
        obs: Observation::Nothing,
        is_ok_harmful: false,
        problem: None,
        note: Some("VIRTIO_RING_F_INDIRECT_DESC not offered: nothing to test"),
    })
}

/// An indirect table of [`LONG_CHAIN`] chained descriptors, far more than the queue holds.
/// Every buffer is valid, so completing it is allowed; refusing it is too.
fn chain_longer_than_queue(dev: &mut Dev, env: &Env) -> Result<Attempt, DevError> {
    dev.init(env.queue_size)?;
    if let Some(skip) = no_indirect(dev) {
        return Ok(skip);
    }
    let (table, tables) = (dev.mem.desc, dev.mem.tables);
    let entries = LONG_CHAIN.min(dev.mem.tables_bytes / DESC_BYTES);
    dev.write_request_frame(table);
    if dev.is_blk {
        let sectors = (entries - 2).min(dev.mem.data_bytes / u64::from(SECTOR_BYTES));
        write_desc(tables, 0, dev.mem.header, 16, DESC_NEXT, 1);
        for i in 1..=sectors {
            let addr = dev.mem.data + (i - 1) * u64::from(SECTOR_BYTES);
            write_desc(
                tables,
                i,
                addr,
                SECTOR_BYTES,
                DESC_WRITE | DESC_NEXT,
                (i + 1) as u16,
            );
        }
        write_desc(tables, sectors + 1, dev.mem.header + 16, 1, DESC_WRITE, 0);
        write_desc(
            table,
            0,
            tables,
            ((sectors + 2) * DESC_BYTES) as u32,
            DESC_INDIRECT,
            0,
        );
    } else {
        for i in 0..entries {
            let flags = if i + 1 < entries { DESC_NEXT } else { 0 };
            write_desc(tables, i, dev.mem.header, 1, flags, (i + 1) as u16);
        }
        write_desc(
            table,
            0,
            tables,
            (entries * DESC_BYTES) as u32,
            DESC_INDIRECT,
            0,
        );
    }
    dev.publish(0);
    dev.notify();
    Ok(Attempt {
        is_ok_harmful: false,
        ..Attempt::strict(dev.observe(env.case_ms))
    })
}

/// An indirect descriptor whose table holds another indirect descriptor (§2.7.5.3.1 forbids
/// it) pointing at a valid request.
fn indirect_in_indirect(dev: &mut Dev, env: &Env) -> Result<Attempt, DevError> {
    dev.init(env.queue_size)?;
    if let Some(skip) = no_indirect(dev) {
        return Ok(skip);
    }
    let (table, outer) = (dev.mem.desc, dev.mem.tables);
    let inner = outer + 4096;
    dev.write_request_frame(inner);
    dev.valid_data_desc(inner);
    let inner_len = if dev.is_blk { 3 } else { 1 } * DESC_BYTES as u32;
    write_desc(outer, 0, inner, inner_len, DESC_INDIRECT, 0);
    write_desc(table, 0, outer, DESC_BYTES as u32, DESC_INDIRECT, 0);
    dev.publish(0);
    dev.notify();
    Ok(Attempt::strict(dev.observe(env.case_ms)))
}

/// A valid request, but the available index moves by more than the queue size.
fn avail_jump(dev: &mut Dev, env: &Env) -> Result<Attempt, DevError> {
    dev.init(env.queue_size)?;
    let table = dev.mem.desc;
    dev.write_request_frame(table);
    dev.valid_data_desc(table);
    dev.set_avail_idx(env.queue_size + 1);
    dev.notify();
    Ok(Attempt::strict(dev.observe(env.case_ms)))
}

/// The descriptor table lies past RAM's end.
fn ring_outside_ram(dev: &mut Dev, env: &Env) -> Result<Attempt, DevError> {
    dev.negotiate()?;
    let (avail, used) = (dev.mem.avail, dev.mem.used);
    dev.program_queue(env.queue_size, env.ram_end, avail, used);
    dev.enable_queue();
    dev.driver_ok();
    let is_refused = dev.queue_ready() == 0;
    dev.publish(0);
    dev.notify();
    let obs = dev.observe(env.case_ms);
    Ok(Attempt {
        note: is_refused.then_some("QueueReady stayed 0"),
        ..Attempt::strict(obs)
    })
}

/// QueueNum 3: split virtqueues must be a power of two (§2.7).
fn queue_size_not_pow2(dev: &mut Dev, env: &Env) -> Result<Attempt, DevError> {
    const ODD_SIZE: u16 = 3;
    dev.negotiate()?;
    let (desc, avail, used) = (dev.mem.desc, dev.mem.avail, dev.mem.used);
    dev.program_queue(ODD_SIZE, desc, avail, used);
    dev.enable_queue();
    dev.driver_ok();
    if dev.status() & NEEDS_RESET != 0 {
        return Ok(Attempt::strict(Observation::NeedsReset));
    }
    let is_refused = dev.queue_ready() == 0;
    dev.write_request_frame(desc);
    dev.valid_data_desc(desc);
    dev.publish(0);
    dev.notify();
    let obs = dev.observe(env.case_ms);
    Ok(Attempt {
        note: Some(if is_refused {
            "QueueReady stayed 0"
        } else {
            "the device took the size"
        }),
        ..Attempt::strict(obs)
    })
}

/// A valid request in a queue that was programmed but never enabled, and notifications of
/// queues that do not exist.
fn notify_disabled_queue(dev: &mut Dev, env: &Env) -> Result<Attempt, DevError> {
    dev.negotiate()?;
    let (desc, avail, used) = (dev.mem.desc, dev.mem.avail, dev.mem.used);
    dev.program_queue(env.queue_size, desc, avail, used);
    dev.driver_ok();
    dev.write_request_frame(desc);
    dev.valid_data_desc(desc);
    dev.publish(0);
    dev.notify();
    for queue in [7, 0xFFFF, u32::MAX] {
        dev.w.write(reg::QUEUE_NOTIFY, queue);
    }
    Ok(Attempt::strict(dev.observe(env.case_ms)))
}

/// Garbage into every register and configuration word of a live device, then reads of all
/// of them; the identification registers must not change.
fn garbage_registers(dev: &mut Dev, env: &Env) -> Result<Attempt, DevError> {
    const GARBAGE: [u32; 4] = [u32::MAX, 0xDEAD_BEEF, 0x8000_0001, 0x0000_FFFF];
    const WINDOW_END: u64 = 0x200;
    dev.init(env.queue_size)?;
    let ident = |d: &Dev| (d.w.read(reg::MAGIC), d.w.version(), d.w.device_id());
    let before = ident(dev);
    for value in GARBAGE {
        for offset in (0..WINDOW_END).step_by(4) {
            dev.w.write(offset, value);
        }
    }
    // Narrow writes too: the registers are 32-bit only (§4.2.2.2) and must shrug them off.
    for offset in (0..WINDOW_END).step_by(2) {
        // SAFETY: inside the device's window (Window::new's contract).
        unsafe { guest_rt::mmio::write16(dev.w.base() + offset, 0xA5A5) };
    }
    for offset in (0..WINDOW_END).step_by(4) {
        core::hint::black_box(dev.w.read(offset));
    }
    let obs = dev.observe(env.case_ms);
    Ok(Attempt {
        obs,
        is_ok_harmful: false,
        problem: (ident(dev) != before).then_some("magic, version or device ID changed"),
        note: None,
    })
}
