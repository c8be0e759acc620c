//! Which physical CPU runs which guest. Listed CPUs are given first, in manifest order; then
//! each count-form guest takes the lowest free CPUs from cpu1 up, so adding a count-form guest
//! never moves a listed one. cpu0 keeps the hypervisor's own work unless a guest lists it.

#![forbid(unsafe_code)]

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::diag::{line_column, Sink};
use super::schema::{RawCpus, RawGuest};

/// The first CPU the count form may take: cpu0 is the boot CPU.
const FIRST_COUNTED_CPU: u32 = 1;

/// The CPUs of each guest (`None` where its `cpus` was unusable or could not be met).
pub(super) fn assign(
    sink: &mut Sink<'_>,
    guests: &[RawGuest],
    cpu_count: u32,
) -> Vec<Option<Vec<u32>>> {
    let mut result: Vec<Option<Vec<u32>>> = Vec::with_capacity(guests.len());
    // CPU number -> (guest index, line of the listing).
    let mut owner: BTreeMap<u32, (usize, u32)> = BTreeMap::new();
    for (index, guest) in guests.iter().enumerate() {
        let Some(RawCpus::List(list)) = guest.cpus.as_ref().map(|c| &c.value) else {
            result.push(None);
            continue;
        };
        let mut mine: Vec<u32> = Vec::with_capacity(list.len());
        let mut is_ok = true;
        for cpu in list {
            let n = cpu.value;
            if n >= cpu_count {
                sink.error_hint(
                    cpu.span.clone(),
                    format!("cpu{n} does not exist"),
                    machine_cpus(cpu_count),
                );
                is_ok = false;
            } else if mine.contains(&n) {
                sink.error(
                    cpu.span.clone(),
                    format!("cpu{n} is listed twice in {}", guest.label(index)),
                );
                is_ok = false;
            } else if let Some(&(other, line)) = owner.get(&n) {
                let other = guests
                    .get(other)
                    .map(|g| g.label(other))
                    .unwrap_or_default();
                sink.error_hint(
                    cpu.span.clone(),
                    format!("cpu{n} is already given to {other} (line {line})"),
                    "each CPU runs one guest: list another CPU, or write a count like cpus = 1 to take any free one",
                );
                is_ok = false;
            } else {
                let (line, _) = line_column(sink.source(), cpu.span.start);
                owner.insert(n, (index, line));
                mine.push(n);
            }
        }
        result.push(is_ok.then_some(mine));
    }
    for (index, guest) in guests.iter().enumerate() {
        let Some(cpus) = guest.cpus.as_ref() else {
            continue;
        };
        let RawCpus::Count(count) = cpus.value else {
            continue;
        };
        let free: Vec<u32> = (FIRST_COUNTED_CPU..cpu_count)
            .filter(|n| !owner.contains_key(n))
            .collect();
        let wanted = usize::try_from(count).unwrap_or(usize::MAX);
        match free.get(..wanted) {
            Some(taken) => {
                for &n in taken {
                    owner.insert(n, (index, 0));
                }
                if let Some(slot) = result.get_mut(index) {
                    *slot = Some(taken.to_vec());
                }
            }
            None => {
                let free_list = if free.is_empty() {
                    String::from("none is free")
                } else {
                    format!(
                        "only {} free: {}",
                        plural(free.len(), "is", "are"),
                        cpu_names(&free)
                    )
                };
                let taken = owner
                    .iter()
                    .map(|(n, (g, _))| {
                        format!(
                            "cpu{n} ({})",
                            guests
                                .get(*g)
                                .map(|other| other.label(*g))
                                .unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>();
                let mut hint = format!(
                    "{}; cpu0 stays with the hypervisor unless a guest lists it, as in cpus = [0]",
                    machine_cpus(cpu_count)
                );
                if !taken.is_empty() {
                    hint.push_str(&format!("; taken: {}", taken.join(", ")));
                }
                sink.error_hint(
                    cpus.span.clone(),
                    format!(
                        "{} asks for {count} {} but {free_list}",
                        guest.label(index),
                        if count == 1 { "CPU" } else { "CPUs" }
                    ),
                    hint,
                );
            }
        }
    }
    result
}

/// "this machine has 4 CPUs: cpu0 to cpu3".
fn machine_cpus(cpu_count: u32) -> String {
    match cpu_count {
        0 => String::from("this machine reports no CPUs"),
        1 => String::from("this machine has 1 CPU: cpu0"),
        n => format!("this machine has {n} CPUs: cpu0 to cpu{}", n - 1),
    }
}

/// "1 is" / "2 are".
fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn cpu_names(cpus: &[u32]) -> String {
    cpus.iter()
        .map(|n| format!("cpu{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
