fn main() {
    std::process::exit(sgn::cli::main());
}
