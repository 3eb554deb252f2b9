#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore
import KVMFormats
import KVMSources

/// `-l` / `-L FILE`: a record of deltas every DELAY seconds under a banner, upstream's rules:
/// the banner again every 20 records (not for CSV in a file), not for a CSV file that already
/// has content, and anew after SIGHUP reopens the file.
struct LogMode {
    let stats: Stats
    let format: any Format
    let sink: LogSink
    let delay: Double
    let skipZero: Bool
    var byGuest = false

    static let bannerEvery = 20

    mutating func run() {
        let request = ReadRequest(byGuest: byGuest, perGuest: format.labelsGuests)
        let first: Sample
        do { first = try stats.read(request) } catch { Console.fail(error.description) }
        let keys = first.sortedKeys
        reportWarnings()
        // logrotate's SIGHUP is taken between samples, however long one takes.
        if sink.isFile { Signals.takeLater(SIGHUP) }
        var records = 0
        var bannerShown = true
        writeBanner(keys: keys, of: first)
        // Samples keep to a fixed schedule (start + n × delay), so the time a sample takes
        // does not stretch the interval; after a stall the schedule starts again from now.
        var deadline = Signals.monotonicNow() + delay
        while true {
            if Signals.monotonicNow() > deadline + delay { deadline = Signals.monotonicNow() + delay }
            // Wait for the next sample; signals are handled as they come.
            while let signal = Signals.wait(seconds: deadline - Signals.monotonicNow()) {
                guard signal == SIGHUP && sink.isFile else {
                    // Ctrl-C ends cleanly; others end as upstream ends on them.
                    if signal == SIGINT { return }
                    Console.leave(bySignal: signal)
                }
                // logrotate: new file, new banner; the sample comes on schedule.
                do { try sink.reopen() } catch {
                    Console.failAsUpstream("Error: Could not open file: \(sink.path ?? "") (\(error))")
                }
                records = 0
                bannerShown = true
                writeBanner(keys: keys, of: first)
            }
            deadline += delay
            if records % Self.bannerEvery == 0 && !bannerShown
                && (!sink.isFile || format.repeatsBannerInFile) {
                writeBanner(keys: keys, of: first)
                bannerShown = true
            }
            let sample: Sample
            do { sample = try stats.read(request) } catch { Console.fail(error.description) }
            reportWarnings()
            // By guest, each record has the guests there are now.
            let rows = byGuest ? sample.sortedKeys : keys
            if !skipZero || rows.contains(where: { sample.values[$0]?.delta ?? 0 != 0 }) {
                sink.write(line: format.record(sample, keys: rows))
                records += 1
                bannerShown = false
            }
        }
    }

    private func writeBanner(keys: [EventID], of sample: Sample) {
        guard let banner = format.banner(keys: keys, of: sample) else { return }
        if sink.isFile && !format.repeatsBannerInFile && !sink.isEmpty { return }
        sink.write(line: banner)
    }

    private func reportWarnings() {
        for warning in stats.takeWarnings() { Console.warn(warning) }
    }
}
