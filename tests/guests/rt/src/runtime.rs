//! The guest lifecycle: start-up after the boot stub, the exit port, and the panic handler.

use crate::start_info::StartInfo;

/// I/O port that ends the guest with a status: QEMU's isa-debug-exit device (QEMU then exits
/// with `(status << 1) | 1`), which Bulkhead treats as "this guest stops with this status".
pub const EXIT_PORT: u16 = 0xF4;

static GUEST_NAME: spin::Once<&'static str> = spin::Once::new();
static START_INFO: spin::Once<StartInfo> = spin::Once::new();

/// The running guest's name, for messages printed from handlers.
pub fn guest_name() -> &'static str {
    GUEST_NAME.get().copied().unwrap_or("guest")
}

/// Brings up the serial port, the IDT and the start info, then runs `main`. Called from the
/// `guest_main` that [`crate::guest!`] defines.
pub fn start(name: &'static str, start_info_paddr: u64, main: fn(&'static StartInfo) -> !) -> ! {
    GUEST_NAME.call_once(|| name);
    crate::serial::init();
    crate::idt::init();
    match StartInfo::read(start_info_paddr) {
        Ok(info) => main(START_INFO.call_once(|| info)),
        Err(err) => {
            crate::println!("FAIL {name}: {err}");
            exit(1)
        }
    }
}

/// Stops the guest with `code` (0 = every check passed) through the exit port, then halts in
/// case nothing listens on it.
pub fn exit(code: u8) -> ! {
    // SAFETY: port 0xF4 is the exit device; writing it is how a guest asks to stop.
    unsafe { crate::cpu::outb(EXIT_PORT, code) };
    crate::cpu::halt_forever()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    match info.location() {
        Some(location) => crate::println!(
            "FAIL {}: panic at {}:{}: {}",
            guest_name(),
            location.file(),
            location.line(),
            info.message()
        ),
        None => crate::println!(
            "FAIL {}: panic at unknown location: {}",
            guest_name(),
            info.message()
        ),
    }
    exit(1)
}

/// Declares the guest's entry point: `guest!("name", main)` where `main` is
/// `fn(&'static StartInfo) -> !`. The boot stub calls the generated `guest_main`.
#[macro_export]
macro_rules! guest {
    ($name:literal, $main:path) => {
        #[no_mangle]
        extern "C" fn guest_main(start_info_paddr: u64) -> ! {
            $crate::runtime::start($name, start_info_paddr, $main)
        }
    };
}
