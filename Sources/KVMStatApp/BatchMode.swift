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
    /// `--latency` in text: the latency report in place of the counts.
    var latencyReport = false
    var waiter: any Waiter = SignalWaiter()

    /// Ctrl-C during the second prints nothing and ends with 0; other signals end kvmstat by
    /// themselves, as upstream's default handlers do.
    func run(output: any TextOutput) throws(Failure) -> Ending {
        let request = ReadRequest(byGuest: byGuest, perGuest: format.labelsGuests, histograms: format.showsHistograms || latencyReport)
        _ = try stats.sample(request)
        var waiter = self.waiter
        if let signal = waiter.wait(seconds: 1) { return .on(signal) }
        let sample = try stats.sample(request)
        try output.write(latencyReport ? LatencyReport.render(sample) : format.batch(sample))
        return .success
    }
}
