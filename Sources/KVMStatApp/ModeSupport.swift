#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore
import KVMSources

/// Where batch mode's text goes: standard output in kvmstat, a buffer in a test.
protocol TextOutput: AnyObject {
    func write(_ text: String) throws(Failure)
}

/// Standard output; a closed pipe ends kvmstat quietly.
final class StandardOutput: TextOutput {
    func write(_ text: String) throws(Failure) { try Console.out(text) }
}

/// What a mode waits on between samples: the time to pass, or a signal to arrive (kvmstat's
/// signals come through the signal watcher's pipe); a test scripts it.
protocol Waiter {
    /// Waits up to `seconds`; the signal that came, or nil when the time is up.
    mutating func wait(seconds: Double) -> Int32?
}

struct SignalWaiter: Waiter {
    func wait(seconds: Double) -> Int32? { Signals.wait(seconds: seconds) }
}

/// The sampling schedule of log and listen modes: samples at start + n × delay, so the time
/// a sample takes does not stretch the interval; after a stall the schedule starts again
/// from now. Signals that come while waiting go to the mode, one at a time.
struct Schedule {
    let delay: Double
    private var waiter: any Waiter
    private var deadline: Double

    init(delay: Double, waiter: any Waiter = SignalWaiter()) {
        self.delay = delay
        self.waiter = waiter
        deadline = Signals.monotonicNow() + delay
    }

    /// Waits until the next sample is due, handing each signal that arrives meanwhile to
    /// `signal` (which throws to end the mode).
    mutating func waitForNextSample(signal: (Int32) throws(Failure) -> Void) throws(Failure) {
        if Signals.monotonicNow() > deadline + delay { deadline = Signals.monotonicNow() + delay }
        while let arrived = waiter.wait(seconds: deadline - Signals.monotonicNow()) {
            try signal(arrived)
        }
        deadline += delay
    }
}

extension Stats {
    /// One sample for a mode: a source's failure is kvmstat's one-line error, and the
    /// sources' warnings are said (on stderr) as they come.
    func sample(_ request: ReadRequest) throws(Failure) -> Sample {
        let sample = try Failure.fromSource { () throws(SourceError) in try read(request) }
        for warning in takeWarnings() { Console.warn(warning) }
        return sample
    }
}
