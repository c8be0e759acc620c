//! `crash`: triple-faults on purpose, so scenarios can check that a guest's shutdown stops that
//! guest alone (and that the `stop`/`restart` policy applies).

#![no_std]
#![no_main]

use guest_rt::{println, StartInfo};

guest_rt::guest!("crash", main);

fn main(_info: &'static StartInfo) -> ! {
    println!("crash: about to triple fault");
    guest_rt::idt::triple_fault()
}
