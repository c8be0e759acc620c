//! The guests' network: a MAC for every net device (given, or derived from the guest's name and
//! port so it stays the same from boot to boot), no MAC twice, and switches that connect at
//! least two ports.

#![forbid(unsafe_code)]

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

use super::diag::{line_column, Sink};
use super::mac::MacAddr;
use super::plan::{SwitchPlan, SwitchPort};
use super::schema::RawGuest;
use super::suggest::nearest;

/// Every guest's MACs (in net order) and the switches.
pub(super) struct Network {
    pub macs: Vec<Vec<MacAddr>>,
    pub switches: Vec<SwitchPlan>,
}

pub(super) fn plan(sink: &mut Sink<'_>, guests: &[RawGuest]) -> Network {
    Network {
        macs: assign_macs(sink, guests),
        switches: switches(sink, guests),
    }
}

/// Checks that no MAC is given twice, then derives the missing ones, avoiding every address
/// already in use.
fn assign_macs(sink: &mut Sink<'_>, guests: &[RawGuest]) -> Vec<Vec<MacAddr>> {
    // MAC -> (who, net index, line).
    let mut given: BTreeMap<MacAddr, (String, usize, u32)> = BTreeMap::new();
    for (g, guest) in guests.iter().enumerate() {
        for (n, net) in guest.nets.iter().enumerate() {
            let Some(mac) = &net.mac else {
                continue;
            };
            if let Some((who, other_net, line)) = given.get(&mac.value) {
                sink.error_hint(
                    mac.span.clone(),
                    format!("mac {} is already used by {who} net{other_net} (line {line})", mac.value),
                    "every net device needs its own MAC; leave `mac` out to get one derived from the guest's name",
                );
            } else {
                let (line, _) = line_column(sink.source(), mac.span.start);
                given.insert(mac.value, (guest.label(g), n, line));
            }
        }
    }
    let mut used: BTreeSet<MacAddr> = given.keys().copied().collect();
    let mut out = Vec::with_capacity(guests.len());
    for guest in guests {
        let name = guest.name.as_ref().map_or("", |n| n.value.as_str());
        let mut macs = Vec::with_capacity(guest.nets.len());
        for (n, net) in guest.nets.iter().enumerate() {
            let mac = match &net.mac {
                Some(mac) => mac.value,
                None => {
                    let mut salt = 0u32;
                    let mut mac = MacAddr::derive(name, n, salt);
                    // 2^40 addresses for a handful of ports: a second try is already rare.
                    while used.contains(&mac) && salt < u32::MAX {
                        salt += 1;
                        mac = MacAddr::derive(name, n, salt);
                    }
                    used.insert(mac);
                    mac
                }
            };
            macs.push(mac);
        }
        out.push(macs);
    }
    out
}

/// Groups the net devices by switch, in order of first mention; a switch with one port is an
/// error (nothing could ever reach it, so it is almost certainly a misspelt switch name).
fn switches(sink: &mut Sink<'_>, guests: &[RawGuest]) -> Vec<SwitchPlan> {
    let mut order: Vec<String> = Vec::new();
    let mut ports: BTreeMap<String, Vec<(SwitchPort, Range<usize>)>> = BTreeMap::new();
    for (g, guest) in guests.iter().enumerate() {
        for (n, net) in guest.nets.iter().enumerate() {
            let Some(switch) = &net.switch else {
                continue;
            };
            let entry = ports.entry(switch.value.clone()).or_insert_with(|| {
                order.push(switch.value.clone());
                Vec::new()
            });
            entry.push((SwitchPort { guest: g, net: n }, switch.span.clone()));
        }
    }
    let names: Vec<&str> = order.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    for name in &order {
        let Some(list) = ports.get(name) else {
            continue;
        };
        if let [(port, span)] = list.as_slice() {
            let who = guests
                .get(port.guest)
                .map(|g| g.label(port.guest))
                .unwrap_or_default();
            let others: Vec<&str> = names.iter().copied().filter(|n| n != name).collect();
            let hint = match nearest(name, &others) {
                Some(near) => format!("did you mean switch \"{near}\"?"),
                None => format!(
                    "a switch connects two or more guests: give another guest a [[guest.net]] with switch = \"{name}\", or remove this one"
                ),
            };
            sink.error_hint(
                span.clone(),
                format!(
                    "switch \"{name}\" has only one port ({who} net{})",
                    port.net
                ),
                hint,
            );
            continue;
        }
        out.push(SwitchPlan {
            name: name.clone(),
            ports: list.iter().map(|(p, _)| *p).collect(),
        });
    }
    out
}
