#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore
import KVMFormats
import KVMSources

/// `-1`: one one-second sample, printed once.
struct BatchMode {
    let stats: Stats
    let format: any Format
    var byGuest = false
    var waiter: any Waiter = SignalWaiter()

    /// Ctrl-C during the second prints nothing and ends with 0; other signals end kvmstat by
    /// themselves, as upstream's default handlers do.
    func run(output: any TextOutput) throws(Failure) -> Ending {
        let request = ReadRequest(byGuest: byGuest, perGuest: format.labelsGuests)
        defer { for warning in stats.takeWarnings() { Console.warn(warning) } }
        _ = try Failure.fromSource { () throws(SourceError) in try stats.read(request) }
        var waiter = self.waiter
        let signal = waiter.wait(seconds: 1)
        if let signal { return signal == SIGINT ? .success : .signal(signal) }
        let sample = try Failure.fromSource { () throws(SourceError) in try stats.read(request) }
        try output.write(format.batch(sample))
        return .success
    }
}
