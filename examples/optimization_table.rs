//! Prints the before/after optimization table of every model in `ir/`:
//!
//! ```text
//! cargo run --release --example optimization_table > docs/OPTIMIZATION.md
//! ```

use sgn::compile::optimization_doc;
use sgn::rewrite::RewriteOptions;
use std::path::Path;

fn main() -> sgn::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("ir");
    print!("{}", optimization_doc(&dir, &RewriteOptions::default())?);
    Ok(())
}
