//! Without the `history` feature no run is recorded: this stands in for the store's recorder,
//! so that the engine's calls into it compile to nothing (a recorder cannot exist).

pub(crate) mod record {
    use crate::flow::RunEvent;
    use crate::task::TaskRunReport;
    use std::sync::Arc;

    /// No recorder exists without the `history` feature.
    pub(crate) enum Recorder {}

    impl Recorder {
        pub(crate) fn event(&self, _: &RunEvent) {
            match *self {}
        }
        pub(crate) fn task_report(&self, _: &TaskRunReport, _: u8) {
            match *self {}
        }
        pub(crate) fn log(&self, _: &'static str, _: String) {
            match *self {}
        }
    }

    pub(crate) const LINE_START: u8 = 2;
    pub(crate) const LINE_END: u8 = 4;

    pub(crate) fn take_line() {}
    pub(crate) fn line_taken() -> bool {
        false
    }
    pub(crate) fn recording() -> bool {
        false
    }
    pub(crate) fn current() -> Option<Arc<Recorder>> {
        None
    }
    pub(crate) fn on_this_thread<T>(_: Option<Arc<Recorder>>, body: impl FnOnce() -> T) -> T {
        body()
    }
}
