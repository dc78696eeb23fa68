//! The node's one boundary between async request handling and blocking file work.
//!
//! Request handlers run on the runtime's few worker threads (two on a two-core
//! machine). A file operation that can block for milliseconds or seconds — an
//! fsync, creating or deleting a partition's files, rewriting the metadata file,
//! moving a log's start — must not run there, or every connection that worker
//! serves stalls behind it. Such work goes through [`run`], which moves it to
//! tokio's blocking pool and lets the worker go on serving.
//!
//! What stays on the workers: appends and reads of the page cache through mmap
//! (microseconds, and they hold no lock a blocking call holds). Fsyncs of appended
//! data happen only in [`weir_storage::Log::wait_durable`], which uses the same
//! pool, and in the periodic maintenance task, which runs on it too.

/// Runs blocking file work `f` on the blocking pool and returns its result.
///
/// A panic inside `f` is resumed in the caller, as if `f` had run inline.
pub async fn run<T, F>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Only a runtime shutting down cancels blocking tasks: nothing will
            // read the result, so this task ends with the runtime.
            Err(e) => panic!("blocking task cancelled: {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "current_thread")]
    async fn blocking_work_runs_off_the_worker_and_returns_its_value() {
        let worker = std::thread::current().id();
        let (value, ran_on) = super::run(|| (42, std::thread::current().id())).await;
        assert_eq!(value, 42);
        assert_ne!(ran_on, worker);
    }

    #[tokio::test(flavor = "current_thread")]
    #[should_panic(expected = "boom")]
    async fn a_panic_reaches_the_caller() {
        super::run(|| panic!("boom")).await
    }
}
