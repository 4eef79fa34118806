//! `dgzoo` command-line tool.
fn main() {
    println!("dgzoo {}", dgzoo::VERSION);
}
