//! "Did you mean ...?": the nearest valid word to a misspelt key or value, by edit distance,
//! plus the words people bring from other hypervisors' configurations.

#![forbid(unsafe_code)]

use alloc::vec::Vec;

/// Words longer than this are not compared (nobody misspells a 100-letter key, and the
/// comparison is quadratic).
const MAX_COMPARED_CHARS: usize = 64;

/// Names people write for our keys, from other tools and from habit: (their word, our key).
const ALIASES: [(&str, &str); 31] = [
    ("ram", "memory"),
    ("mem", "memory"),
    ("memory_size", "memory"),
    ("cpu", "cpus"),
    ("vcpus", "cpus"),
    ("cores", "cpus"),
    ("pcpus", "cpus"),
    ("image", "kernel"),
    ("bzimage", "kernel"),
    ("vmlinuz", "kernel"),
    ("args", "cmdline"),
    ("append", "cmdline"),
    ("bootargs", "cmdline"),
    ("command_line", "cmdline"),
    ("initramfs", "initrd"),
    ("disks", "disk"),
    ("drive", "disk"),
    ("nets", "net"),
    ("network", "net"),
    ("nic", "net"),
    ("guests", "guest"),
    ("vm", "guest"),
    ("reboot", "restart"),
    ("reset", "restart"),
    ("halt", "stop"),
    ("poweroff", "stop"),
    ("bzimage", "linux"),
    ("vmlinux", "elf"),
    ("pvh", "elf"),
    ("warning", "warn"),
    ("err", "error"),
];

/// The candidate nearest to `word`, if it is near enough to be a plausible typo (or a known
/// alias of it).
pub(super) fn nearest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let lower: Vec<char> = word.chars().map(|c| c.to_ascii_lowercase()).collect();
    if lower.len() > MAX_COMPARED_CHARS {
        return None;
    }
    for (alias, key) in ALIASES {
        if word.eq_ignore_ascii_case(alias) {
            if let Some(found) = candidates.iter().find(|c| **c == key) {
                return Some(found);
            }
        }
    }
    let limit = match lower.len() {
        0..=3 => 1,
        4..=6 => 2,
        _ => 3,
    };
    candidates
        .iter()
        .map(|c| (distance(&lower, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance counting insertions, deletions, substitutions and swaps of neighbours
/// (optimal string alignment), where `-` and `_` are interchangeable (so `on-crash` matches
/// `on_crash` exactly and `mca` is one swap from `mac`).
fn distance(word: &[char], candidate: &str) -> usize {
    let cand: Vec<char> = candidate.chars().collect();
    let same = |a: char, b: char| a == b || (matches!(a, '-' | '_') && matches!(b, '-' | '_'));
    let width = cand.len() + 1;
    // Three rows of the dynamic-programming table: two back, one back, current.
    let mut before: Vec<usize> = alloc::vec![0; width];
    let mut previous: Vec<usize> = (0..width).collect();
    let mut current: Vec<usize> = alloc::vec![0; width];
    for (i, &a) in word.iter().enumerate() {
        current[0] = i + 1;
        for (j, &b) in cand.iter().enumerate() {
            let substitute = previous[j] + usize::from(!same(a, b));
            let delete = previous[j + 1] + 1;
            let insert = current[j] + 1;
            let mut best = substitute.min(delete).min(insert);
            let is_swap = i > 0
                && j > 0
                && word.get(i - 1).is_some_and(|&p| same(p, b))
                && cand.get(j - 1).is_some_and(|&p| same(a, p));
            if is_swap {
                best = best.min(before[j - 1] + 1);
            }
            current[j + 1] = best;
        }
        core::mem::swap(&mut before, &mut previous);
        core::mem::swap(&mut previous, &mut current);
    }
    previous[cand.len()]
}
