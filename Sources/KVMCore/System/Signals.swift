#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Signals as events: kvmstat blocks SIGINT, SIGTERM and SIGHUP and waits for them with
/// sigtimedwait(2) in place of sleeping, so Ctrl-C and logrotate's SIGHUP are handled between
/// samples, never in the middle of a write.
public enum Signals {
    public static let handled: [Int32] = [SIGINT, SIGTERM, SIGHUP]

    /// Blocks the handled signals in the calling thread (and threads it starts later).
    public static func block() {
        var set = handledSet()
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// Sleeps up to `seconds`, returning early with the number of a handled signal that
    /// arrived (or was pending), or nil when the time ran out.
    public static func wait(seconds: Double) -> Int32? {
        var set = handledSet()
        let deadline = monotonicNow() + max(0, seconds)
        while true {
            let remaining = deadline - monotonicNow()
            if remaining <= 0 { return nil }
            var ts = timespec(tv_sec: Int(remaining), tv_nsec: Int((remaining - remaining.rounded(.down)) * 1e9))
            let signal = sigtimedwait(&set, nil, &ts)
            if signal > 0 { return signal }
            if errno == EAGAIN { return nil }
            // EINTR from another signal: keep waiting for the rest of the time.
        }
    }

    /// Seconds on the monotonic clock, for measuring intervals.
    public static func monotonicNow() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    private static func handledSet() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in handled { sigaddset(&set, signal) }
        return set
    }

    nonisolated(unsafe) private static var termination: sig_atomic_t = 0

    /// For the interactive screen, which waits in ncurses instead of sigtimedwait: the
    /// handled signals are unblocked and only set a flag that its loop checks between keys.
    public static func installTerminationFlag() {
        var set = handledSet()
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        for signal in handled {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { _ in Signals.termination = 1 }
            sigemptyset(&action.sa_mask)
            action.sa_flags = 0
            sigaction(signal, &action, nil)
        }
    }

    public static var terminationRequested: Bool { termination != 0 }

    /// Ends the process by `signal` as if it had no handler (the shell sees 128 + N).
    public static func die(by signal: Int32) -> Never {
        Glibc.signal(signal, SIG_DFL)
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, signal)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        raise(signal)
        exit(128 + signal)
    }
}
