fn main() {
    eprintln!("xtask: being written");
}
