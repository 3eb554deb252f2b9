#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CKVMSyscalls
import Synchronization

/// Signals as events, and a promise that any of them ends kvmstat promptly in every state.
///
/// SIGINT, SIGTERM, SIGHUP and SIGQUIT are blocked in every thread and taken by one watcher
/// thread, which passes each to the main thread through a pipe: the main thread waits on
/// that pipe in place of sleeping, so Ctrl-C and logrotate's SIGHUP are handled between
/// samples, never in the middle of a write. When the main thread does not take a signal
/// within `grace` (a catastrophic regex, a write to a full pipe, a slow set-up), the watcher
/// ends kvmstat itself through the handler given to `start` — unless the signal is one the
/// main thread has said it will take later (SIGHUP that rotates a log file). And when the main
/// thread took a signal that ends kvmstat but has not ended it `exitGrace` later (its cleanup
/// blocked on a stalled terminal, a full stderr pipe), the watcher ends it.
///
/// Exactly one of the two threads ends the process: each claims the ending first
/// (`claimEnding`); the main thread, finding it taken, waits for the watcher to finish.
///
/// A signal ignored when kvmstat starts stays ignored (the Unix rule, and Python's): `nohup`
/// ignores SIGHUP, a shell script's background job SIGINT and SIGQUIT, and whoever did so
/// wants kvmstat to outlive them. Linux queues a blocked signal even when it is ignored, so
/// the watcher drops those itself — unless the main thread `heed`s one (SIGHUP with `-L`
/// reopens the log: a command, never an ending, taken under nohup as upstream takes it).
public enum Signals {
    public static let handled: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT]

    /// How long the main thread may take to pick up a signal before it counts as stuck.
    public static let grace = 0.25
    /// How long the main thread may take to end after it took a signal that ends kvmstat.
    public static let exitGrace = 2.0

    private static let ending = Atomic<Bool>(false)

    private static let posted = Atomic<Int>(0)
    private static let taken = Atomic<Int>(0)
    /// Signals the main thread promises to take even when busy (a bit per signal number).
    private static let deferrable = Atomic<Int>(0)
    /// Signals that were ignored at start and are still to be dropped (a bit per number).
    private static let ignored = Atomic<Int>(0)
    nonisolated(unsafe) private static var pipeRead: Int32 = -1
    nonisolated(unsafe) private static var pipeWrite: Int32 = -1
    nonisolated(unsafe) private static var stuckHandler: (@Sendable (Int32, Bool) -> Void)?

    /// Blocks the handled signals in the calling thread and every thread it starts later, and
    /// starts the watcher. Call first thing, before any other thread exists. `stuck(signal,
    /// force)` ends the process when the main thread does not take a signal in time (it may
    /// return when `force` is false and the main thread has claimed the ending itself), or
    /// did not end in time after taking it (`force`). Without a pipe or a thread (a process
    /// or descriptor limit), the signals keep their default actions.
    public static func start(stuck: @escaping @Sendable (Int32, Bool) -> Void) {
        for signal in handled where ckvm_signal_is_ignored(signal) != 0 {
            ignored.bitwiseOr(1 << Int(signal), ordering: .relaxed)
        }
        var set = handledSet()
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { return }
        for end in ends {
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
            _ = fcntl(end, F_SETFL, O_NONBLOCK)
        }
        pipeRead = ends[0]
        pipeWrite = ends[1]
        stuckHandler = stuck
        pthread_sigmask(SIG_BLOCK, &set, nil)
        var thread = pthread_t()
        guard pthread_create(&thread, nil, { _ in Signals.watch() }, nil) == 0 else {
            pthread_sigmask(SIG_UNBLOCK, &set, nil)
            close(ends[0])
            close(ends[1])
            pipeRead = -1
            pipeWrite = -1
            return
        }
    }

    /// Claims the ending of the process for the calling thread; false when the other thread
    /// has claimed it (it is ending the process now).
    public static func claimEnding() -> Bool {
        ending.compareExchange(expected: false, desired: true, ordering: .sequentiallyConsistent).exchanged
    }

    /// For the main thread when the watcher has claimed the ending: wait for it.
    public static func waitForTheEnd() -> Never {
        while true { pause() }
    }

    /// Lets the main thread take `signal` whenever it gets to it, however busy it is.
    public static func takeLater(_ signal: Int32) {
        deferrable.bitwiseOr(1 << Int(signal), ordering: .relaxed)
    }

    /// Whether `signal` was ignored when kvmstat started (and is dropped).
    public static func isIgnored(_ signal: Int32) -> Bool {
        ignored.load(ordering: .relaxed) & (1 << Int(signal)) != 0
    }

    /// Passes `signal` on to the main thread even if it was ignored at start: for a signal
    /// that asks for something other than the end (SIGHUP: reopen the log).
    public static func heed(_ signal: Int32) {
        ignored.bitwiseAnd(~(1 << Int(signal)), ordering: .relaxed)
    }

    private static func watch() -> Never {
        var set = handledSet()
        // Set once a signal that ends kvmstat was taken (or the main thread claimed the end).
        var exitDeadline: Double?
        var ender: Int32 = 0
        while true {
            var signal: Int32 = 0
            if let deadline = exitDeadline {
                let remaining = max(0, deadline - monotonicNow())
                var ts = timespec(tv_sec: Int(remaining),
                                  tv_nsec: Int((remaining - remaining.rounded(.down)) * 1e9))
                signal = sigtimedwait(&set, nil, &ts)
                if signal <= 0 {
                    if monotonicNow() >= deadline { stuckHandler?(ender, true) }
                    continue
                }
            } else {
                guard sigwait(&set, &signal) == 0 else { continue }
            }
            if isIgnored(signal) { continue }
            var byte = UInt8(truncatingIfNeeded: signal)
            _ = write(pipeWrite, &byte, 1)
            let number = posted.add(1, ordering: .sequentiallyConsistent).newValue
            let deadline = monotonicNow() + grace
            while taken.load(ordering: .sequentiallyConsistent) < number && monotonicNow() < deadline {
                usleep(5_000)
            }
            if deferrable.load(ordering: .relaxed) & (1 << Int(signal)) != 0 { continue }
            if taken.load(ordering: .sequentiallyConsistent) < number {
                stuckHandler?(signal, false)  // returns when the main thread is ending already
            }
            if exitDeadline == nil {
                exitDeadline = monotonicNow() + exitGrace
                ender = signal
            }
        }
    }

    /// A signal the watcher passed on, if any, without waiting.
    public static func take() -> Int32? {
        guard pipeRead >= 0 else { return nil }
        var byte: UInt8 = 0
        guard read(pipeRead, &byte, 1) == 1 else { return nil }
        taken.add(1, ordering: .sequentiallyConsistent)
        return Int32(byte)
    }

    /// Sleeps up to `seconds`, returning early with a signal that arrived (or was pending),
    /// or nil when the time ran out.
    public static func wait(seconds: Double) -> Int32? {
        switch wait(seconds: seconds, orInput: nil) {
        case .signal(let signal): return signal
        default: return nil
        }
    }

    public enum WaitResult: Equatable {
        case signal(Int32)
        /// `input` is readable (or a signal of no interest to us, such as SIGWINCH,
        /// interrupted the wait).
        case input
        /// `input` has hung up or is invalid: nothing will ever come from it.
        case hangup
        case timeout
    }

    /// Waits up to `seconds` for a signal or for `input` to become readable.
    public static func wait(seconds: Double, orInput input: Int32?) -> WaitResult {
        let deadline = monotonicNow() + max(0, seconds)
        var polls = (pollfd(fd: pipeRead, events: Int16(POLLIN), revents: 0),
                     pollfd(fd: input ?? -1, events: Int16(POLLIN), revents: 0))
        var checked = false
        while true {
            // The pipe is read when poll said so, or once at first (a signal already pending).
            if !checked || polls.0.revents != 0, let signal = take() { return .signal(signal) }
            checked = true
            let remaining = deadline - monotonicNow()
            if remaining <= 0 { return .timeout }
            polls.0.revents = 0
            polls.1.revents = 0
            let n = withUnsafeMutablePointer(to: &polls) { pointer in
                pointer.withMemoryRebound(to: pollfd.self, capacity: 2) {
                    poll($0, input == nil ? 1 : 2, Int32(min(remaining * 1000, 1e9).rounded(.up)))
                }
            }
            if n < 0 && errno == EINTR && input != nil { return .input }
            if n > 0 && input != nil && polls.1.revents != 0 {
                let ended = Int16(POLLHUP | POLLERR | POLLNVAL)
                return polls.1.revents & Int16(POLLIN) == 0 && polls.1.revents & ended != 0 ? .hangup : .input
            }
        }
    }

    /// Seconds on the monotonic clock, for measuring intervals.
    public static func monotonicNow() -> Double { seconds(on: CLOCK_MONOTONIC) }

    /// Seconds of CPU the calling thread has used (user and system), for what a piece of
    /// work costs whatever else runs beside it.
    public static func threadCPUNow() -> Double { seconds(on: CLOCK_THREAD_CPUTIME_ID) }

    private static func seconds(on clock: clockid_t) -> Double {
        var ts = timespec()
        clock_gettime(clock, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    private static func handledSet() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in handled { sigaddset(&set, signal) }
        return set
    }

    /// Ends the process by `signal` as if it had no handler (the shell sees 128 + N), without
    /// a core dump for SIGQUIT and without the Swift runtime's crash report.
    public static func die(by signal: Int32) -> Never {
        var noCore = rlimit(rlim_cur: 0, rlim_max: 0)
        getrlimit(__rlimit_resource_t(RLIMIT_CORE.rawValue), &noCore)
        noCore.rlim_cur = 0
        setrlimit(__rlimit_resource_t(RLIMIT_CORE.rawValue), &noCore)
        // Not dumpable: no core even through a core_pattern pipe (systemd-coredump, apport).
        _ = ckvm_set_not_dumpable()
        var action = sigaction()
        action.__sigaction_handler.sa_handler = SIG_DFL
        sigemptyset(&action.sa_mask)
        sigaction(signal, &action, nil)
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, signal)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        // To this thread, the one that has it unblocked (never to the watcher's sigwait).
        pthread_kill(pthread_self(), signal)
        usleep(100_000)
        _exit(128 + signal)
    }
}
