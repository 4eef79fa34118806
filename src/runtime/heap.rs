//! The C heap under the runtimes. ONNX Runtime, LiteRT and OpenVINO allocate through the C
//! library's malloc, and glibc keeps what they free: a model load (ONNX Runtime parses the
//! whole protobuf, copies and re-lays its initialisers, then frees the parse) and the
//! activations of concurrent runs leave tens of MiB that no later allocation may reuse,
//! spread over up to 8 arenas per core. Measured on the AI server with the six test models
//! (2 cores): capping the arenas at one per core saved 40 MiB of resident memory, trimming
//! after each load 10 to 15 MiB more. Other C libraries (musl) return memory on their own:
//! there both calls do nothing.

/// Give the pages glibc holds free back to the system (`malloc_trim`). Cheap next to a model
/// load (a few ms); called after each session is created.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and only walks glibc's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Cap glibc's malloc arenas at `n` (default: 8 per core). A process-wide policy, so it is the
/// program's to set, not the library's: `dgzoo server` and `dgzoo hub` set one per core at
/// start, before their threads exist.
pub fn limit_arenas(n: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes two integers; M_ARENA_MAX only bounds arenas created from now on.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, n.clamp(1, i32::MAX as usize) as i32);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = n;
}
