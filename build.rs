//! `sqlx::migrate!` embeds `migrations/` at compile time, and cargo does not know it:
//! without this, an added or edited migration would not rebuild the binary.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
