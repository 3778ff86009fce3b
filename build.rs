// The migrations are embedded (`embed_migrations!` in src/store/mod.rs): rebuild when a
// migration is added or changed.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
