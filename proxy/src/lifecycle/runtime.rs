//! The tokio runtime both binaries run on, sized by `--worker-threads`.

/// Builds the multi-threaded runtime with `workers` worker threads, or one
/// per CPU when `workers` is 0 (tokio's default). A sidecar that requests
/// a fraction of a CPU on a large node would otherwise start one worker
/// per node CPU; on 2 vCPUs one worker and two measured alike
/// (docs/performance.md).
pub fn build(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if workers > 0 {
        builder.worker_threads(workers);
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_worker_count_is_what_was_asked() {
        let rt = super::build(1).unwrap();
        assert_eq!(rt.metrics().num_workers(), 1);
        let rt = super::build(3).unwrap();
        assert_eq!(rt.metrics().num_workers(), 3);
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let rt = super::build(0).unwrap();
        assert_eq!(rt.metrics().num_workers(), cpus);
    }
}
